"""Box arithmetic, the box coder (round trip and clamp) and anchor / default-box layouts on hand cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.ops import anchors as anchor_ops
from kerasnets.ops import boxes as box_ops


def test_pairwise_iou_hand_cases():
    a = tf.constant([[0.0, 0, 10, 10]])
    b = tf.constant([[5.0, 5, 15, 15], [10, 10, 20, 20], [0, 0, 10, 10], [2, 2, 4, 4], [3, 3, 3, 3]])
    iou = box_ops.pairwise_iou(a, b).numpy()
    np.testing.assert_allclose(iou, [[25 / 175, 0.0, 1.0, 4 / 100, 0.0]], rtol=1e-6)
    # Batched: leading dimensions broadcast.
    batched = box_ops.pairwise_iou(tf.stack([a, a]), tf.stack([b, b]))
    assert batched.shape == (2, 1, 5)
    # Two empty boxes: IoU 0, not NaN.
    assert box_ops.pairwise_iou([[1.0, 1, 1, 1]], [[1.0, 1, 1, 1]]).numpy()[0, 0] == 0.0


def test_formats_area_and_clip():
    xyxy = np.array([[2.0, 4, 12, 24], [0, 0, 1, 3]], np.float32)
    np.testing.assert_allclose(box_ops.xyxy_to_cxcywh(xyxy), [[7, 14, 10, 20], [0.5, 1.5, 1, 3]])
    np.testing.assert_allclose(box_ops.cxcywh_to_xyxy(box_ops.xyxy_to_cxcywh(xyxy)), xyxy)
    np.testing.assert_allclose(box_ops.xyxy_to_xywh(xyxy), [[2, 4, 10, 20], [0, 0, 1, 3]])
    np.testing.assert_allclose(box_ops.xywh_to_xyxy(box_ops.xyxy_to_xywh(xyxy)), xyxy)
    np.testing.assert_allclose(box_ops.xyxy_to_yxyx(xyxy)[0], [4, 2, 24, 12])
    np.testing.assert_allclose(box_ops.box_area(xyxy), [200, 3])
    np.testing.assert_allclose(box_ops.box_area([[5.0, 5, 2, 8]]), [0.0])  # degenerate
    clipped = box_ops.clip_boxes([[-5.0, 3, 50, 70]], (60, 40)).numpy()
    np.testing.assert_allclose(clipped, [[0, 3, 40, 60]])
    with pytest.raises(ValueError, match="4 coordinates"):
        box_ops.box_area(np.zeros((2, 5), np.float32))


def test_encode_hand_values():
    # anchor centre (5, 5) size 10x10; target centre (7, 14) size 10x20.
    deltas = box_ops.encode_boxes([[2.0, 4, 12, 24]], [[0.0, 0, 10, 10]], (10, 10, 5, 5)).numpy()
    np.testing.assert_allclose(deltas, [[10 * 2 / 10, 10 * 9 / 10, 0.0, 5 * math.log(2)]], rtol=1e-6)
    rpn = box_ops.encode_boxes([[2.0, 4, 12, 24]], [[0.0, 0, 10, 10]], (1, 1, 1, 1)).numpy()
    np.testing.assert_allclose(rpn, [[0.2, 0.9, 0.0, math.log(2)]], rtol=1e-6)


@pytest.mark.parametrize("weights", [(10, 10, 5, 5), (1, 1, 1, 1)])
def test_encode_decode_round_trip(weights):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (64, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(4, 100, (64, 2))], 1).astype(np.float32)
    xy = rng.uniform(0, 200, (64, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 100, (64, 2))], 1).astype(np.float32)
    deltas = box_ops.encode_boxes(boxes, anchors, weights)
    np.testing.assert_allclose(box_ops.decode_boxes(deltas, anchors, weights), boxes, atol=1e-3)


def test_decode_clamps_scale_at_log_1000_over_16():
    anchor = [[0.0, 0, 10, 20]]
    huge = [[0.0, 0, 100.0, 100.0]]  # t_w / w_w = 20 >> log(1000/16)
    out = box_ops.decode_boxes(huge, anchor, (10, 10, 5, 5)).numpy()[0]
    np.testing.assert_allclose(out[2] - out[0], 10 * 1000 / 16, rtol=1e-5)
    np.testing.assert_allclose(out[3] - out[1], 20 * 1000 / 16, rtol=1e-5)
    assert np.all(np.isfinite(box_ops.decode_boxes([[0.0, 0, 1e4, 1e4]], anchor).numpy()))
    unclamped = box_ops.decode_boxes([[0.0, 0, 25.0, 0]], anchor, (10, 10, 5, 5), scale_clip=None).numpy()[0]
    np.testing.assert_allclose(unclamped[2] - unclamped[0], 10 * math.exp(5.0), rtol=1e-5)
    # Below the clamp nothing changes; negative log-ratios are not clamped.
    small = box_ops.decode_boxes([[0.0, 0, -10.0, 5.0]], anchor, (10, 10, 5, 5)).numpy()[0]
    np.testing.assert_allclose([small[2] - small[0], small[3] - small[1]], [10 * math.exp(-2), 20 * math.e],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        box_ops.encode_boxes(anchor, anchor, (1, 1, 0, 1))


def test_base_anchors_match_torchvision_layout():
    # size 32, ratios h/w (0.5, 1, 2): w = 32/sqrt(r), h = 32*sqrt(r), halves rounded.
    base = anchor_ops.base_anchors((32,), (0.5, 1.0, 2.0))
    np.testing.assert_array_equal(base, [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    base = anchor_ops.base_anchors((128, 256), (1.0, 2.0))
    # ratio outer, size inner
    np.testing.assert_array_equal(base[:, 2] - base[:, 0], [128, 256, 90, 182])
    assert anchor_ops.num_anchors_per_location((128, 256, 512), (0.5, 1, 2)) == 9


def test_grid_anchor_counts_and_centres():
    anchors = anchor_ops.anchors_for_feature_map((2, 3), 16, (128, 256, 512), (0.5, 1.0, 2.0))
    assert anchors.shape == (2 * 3 * 9, 4)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    grid = centres.reshape(2, 3, 9, 2)
    # Row-major positions (y, x), all 9 anchors of a position share its centre (x * 16, y * 16).
    for y in range(2):
        for x in range(3):
            np.testing.assert_allclose(grid[y, x], np.tile([[x * 16, y * 16]], (9, 1)))
    shifted = anchor_ops.anchors_for_feature_map((2, 3), 16, (32,), (1.0,), offset=0.5)
    np.testing.assert_allclose(shifted[0], [8 - 16, 8 - 16, 8 + 16, 8 + 16])
    anchors, counts = anchor_ops.multilevel_anchors([(8, 8), (4, 4), (2, 2)], [4, 8, 16], [32, 64, 128])
    assert counts == [8 * 8 * 3, 4 * 4 * 3, 2 * 2 * 3] and anchors.shape == (sum(counts), 4)
    with pytest.raises(ValueError, match="one entry per level"):
        anchor_ops.multilevel_anchors([(8, 8)], [4, 8], [32, 64])


def test_ssd_scales_and_default_boxes():
    scales = anchor_ops.ssd_scales(6, 0.2, 0.9)
    np.testing.assert_allclose(scales, [0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.04])
    # SSD300: 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4 = 8732 default boxes.
    boxes = anchor_ops.ssd_default_boxes(
        [38, 19, 10, 5, 3, 1], 300, [(2,), (2, 3), (2, 3), (2, 3), (2,), (2,)], steps=[8, 16, 32, 64, 100, 300]
    )
    assert boxes.shape == (8732, 4)
    np.testing.assert_allclose((boxes[0, :2] + boxes[0, 2:]) / 2, [4, 4])  # first centre: 0.5 * step
    # One 1x1 map on a 100 px image with scales (0.2, 0.8): s=0.2, s'=0.4, then ratio 2 and 1/2.
    one = anchor_ops.ssd_default_boxes([1], 100, [(2,)], scales=[0.2, 0.8])
    r = math.sqrt(2)
    expected = [[40, 40, 60, 60], [30, 30, 70, 70],
                [50 - 10 * r, 50 - 10 / r, 50 + 10 * r, 50 + 10 / r],
                [50 - 10 / r, 50 - 10 * r, 50 + 10 / r, 50 + 10 * r]]
    np.testing.assert_allclose(one, expected, rtol=1e-5)
    assert anchor_ops.num_default_boxes_per_location((2, 3)) == 6
    clipped = anchor_ops.ssd_default_boxes([1], 100, [(2,)], scales=[0.9, 1.2], clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 100
    with pytest.raises(ValueError, match="m \\+ 1"):
        anchor_ops.ssd_default_boxes([2, 1], 100, scales=[0.2, 0.5])
