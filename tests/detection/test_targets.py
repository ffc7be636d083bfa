"""Target assignment (RPN, SSD, sampled RoIs) and keypoint heatmap targets on hand cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import detection as det
from kerasnets.ops import boxes as box_ops
from kerasnets.ops import keypoints as kp_ops
from kerasnets.ops import targets

ANCHORS = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40], [0, 0, 6, 6], [-5, 0, 5, 10]], np.float32)
GT = np.array([[[0, 0, 10, 10], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)  # image 1: no objects


def test_rpn_targets_labels_and_deltas():
    labels, deltas, matches = targets.rpn_targets(ANCHORS, GT, [1, 0])
    # IoUs with the gt: 1, 81/119=0.68 (ignored), 0, 0.36 (ignored), 0.33 (ignored)
    np.testing.assert_array_equal(labels[0], [1, -1, 0, -1, -1])
    np.testing.assert_array_equal(labels[1], [0, 0, 0, 0, 0])  # padding rows never match
    np.testing.assert_allclose(deltas[0, 0], [0, 0, 0, 0], atol=1e-6)
    assert np.all(deltas.numpy()[0, 1:] == 0) and np.all(deltas.numpy()[1] == 0)
    # Paper's rule: anchors crossing the image border are ignored.
    labels_b, _, _ = targets.rpn_targets(ANCHORS, GT, [1, 0], image_size=(40, 40), allowed_border=0)
    np.testing.assert_array_equal(labels_b[1], [0, 0, 0, 0, -1])
    with pytest.raises(ValueError, match="image_size"):
        targets.rpn_targets(ANCHORS, GT, [1, 0], allowed_border=0)


def test_ssd_targets_class_labels():
    gt = np.array([[[1, 1, 11, 11], [29, 31, 41, 40]]], np.float32)
    labels, deltas, _ = targets.ssd_targets(ANCHORS, gt, [[2, 3]], [2])
    np.testing.assert_array_equal(labels[0], [2, 2, 3, 0, 0])
    decoded = box_ops.decode_boxes(deltas[0, :3], ANCHORS[:3]).numpy()
    np.testing.assert_allclose(decoded, gt[0][[0, 0, 1]], atol=1e-4)


def test_roi_targets_sampling_and_regression():
    rng = np.random.default_rng(0)
    gt = np.array([[[10, 10, 50, 50], [60, 20, 90, 70], [0, 0, 0, 0]]] * 2, np.float32)
    jitter = rng.uniform(-6, 6, (2, 40, 4)).astype(np.float32)
    near = np.concatenate([gt[:, :1].repeat(20, 1), gt[:, 1:2].repeat(20, 1)], 1) + jitter
    xy = rng.uniform(0, 80, (2, 60, 2))
    far = np.concatenate([xy, xy + rng.uniform(5, 30, (2, 60, 2))], -1).astype(np.float32)
    proposals = np.concatenate([near, far], 1)
    out = targets.roi_targets(proposals, gt, [[1, 2, 0], [1, 2, 0]], [2, 1], seed=0, num_samples=64)
    labels, valid = out["labels"].numpy(), out["valid"].numpy()
    assert labels.shape == (2, 64) and np.all(valid)
    assert np.sum(labels[0] > 0) == 16 and np.sum(labels[0] == 0) == 48  # 25 % of 64
    # image 1 has one object: class-2 proposals are background there
    assert set(np.unique(labels[1][labels[1] > 0])) == {1}
    iou = box_ops.pairwise_iou(out["rois"], gt).numpy()
    for b, n in enumerate([2, 1]):
        best = iou[b][:, :n].max(1)
        assert np.all(best[labels[b] > 0] >= 0.5) and np.all(best[labels[b] == 0] < 0.5)
    pos = labels > 0
    decoded = box_ops.decode_boxes(out["target_deltas"], out["rois"]).numpy()
    matched = np.take_along_axis(gt, np.maximum(out["matches"].numpy(), 0)[..., None], 1)
    np.testing.assert_allclose(decoded[pos], matched[pos], atol=1e-3)
    assert np.all(box_ops.box_area(out["rois"]).numpy()[valid] > 0)  # padding gt rows are never sampled
    # Few proposals: padding slots are marked invalid, label -1.
    # Fast R-CNN's background band [0.1, 0.5): proposals overlapping nothing are not sampled.
    banded = targets.roi_targets(proposals, gt, [[1, 2, 0]] * 2, [2, 1], seed=0, num_samples=64, background_min=0.1)
    band_iou = box_ops.pairwise_iou(banded["rois"], gt).numpy()[0][:, :2].max(1)
    negatives = banded["labels"].numpy()[0] == 0
    assert negatives.any() and np.all(band_iou[negatives] >= 0.1) and np.all(band_iou[negatives] < 0.5)
    # 3 foreground proposals + 2 gt boxes, no background: 25 % of 6 -> 1 RoI; all 5 with fraction 1.
    few = targets.roi_targets(proposals[:, :3], gt, [[1, 2, 0]] * 2, [2, 2], seed=1, num_samples=6)
    np.testing.assert_array_equal(few["valid"].numpy().sum(1), [1, 1])
    few = targets.roi_targets(proposals[:, :3], gt, [[1, 2, 0]] * 2, [2, 2], seed=1, num_samples=6,
                              positive_fraction=1.0)
    np.testing.assert_array_equal(few["valid"].numpy().sum(1), [5, 5])
    assert np.all(few["labels"].numpy()[~few["valid"].numpy()] == -1)


def test_keypoint_targets_hand_cases():
    rois = np.array([[10, 20, 66, 76]], np.float32)  # 56 x 56: one pixel per cell
    kps = np.array([[[10, 20, 2], [65.5, 20.2, 2], [66, 76, 1], [70, 30, 2], [30, 30, 0]]], np.float32)
    index, valid = kp_ops.keypoint_targets(kps, rois)
    np.testing.assert_array_equal(valid[0], [True, True, True, False, False])
    np.testing.assert_array_equal(index[0, :3], [0, 55, 55 * 56 + 55])
    # Round trip: a one-hot heatmap at the target decodes to the cell centre (within half a cell).
    logits = np.full((1, 56, 56, 5), -10.0, np.float32)
    for k in range(3):
        logits[0, index[0, k] // 56, index[0, k] % 56, k] = 10.0
    decoded = kp_ops.decode_keypoint_heatmaps(logits, rois).numpy()[0]
    np.testing.assert_allclose(decoded[:3, :2], [[10.5, 20.5], [65.5, 20.5], [65.5, 75.5]])
    assert np.all(decoded[:3, 2] > 0.99)


def test_keypoint_loss_uniform_logits_and_validity():
    logits = np.zeros((2, 4, 4, 3), np.float32)
    index = np.zeros((2, 3), np.int32)
    valid = np.array([[True, False, True], [False, False, False]])
    np.testing.assert_allclose(det.keypoint_rcnn_loss(logits, index, valid), math.log(16), rtol=1e-6)
    logits[0, 0, 0, 0] = 100.0  # confident and right for keypoint 0; keypoint 2 stays uniform
    np.testing.assert_allclose(det.keypoint_rcnn_loss(logits, index, valid), math.log(16) / 2, rtol=1e-5)
    assert float(det.keypoint_rcnn_loss(logits, index, np.zeros_like(valid))) == 0.0


def test_every_shapes_object_gets_a_positive_anchor_and_default_box():
    from kerasnets.data import detection, shapes
    from kerasnets.ops import anchors as anchor_ops

    padded = detection.pad_examples(shapes.generate_shapes(8, seed=5, image_size=64, max_objects=4), 4)
    fpn, _ = anchor_ops.multilevel_anchors([(16, 16), (8, 8), (4, 4)], [4, 8, 16], [8, 16, 32])
    _, _, matches = targets.rpn_targets(fpn, padded["boxes"], padded["num_objects"])
    ssd = anchor_ops.ssd_default_boxes([8, 4, 2, 1], 64, [(2,)] * 4)
    labels, _, ssd_matches = targets.ssd_targets(ssd, padded["boxes"], padded["classes"], padded["num_objects"])
    for b, n in enumerate(padded["num_objects"]):
        assert set(range(n)) <= set(matches.numpy()[b]), "an object has no positive RPN anchor"
        assert set(range(n)) <= set(ssd_matches.numpy()[b]), "an object has no matched default box"
        assert set(labels.numpy()[b][labels.numpy()[b] > 0]) <= set(padded["classes"][b, :n])


@pytest.mark.slow
def test_training_targets_compile_with_xla():
    from kerasnets.ops import anchors as anchor_ops
    from kerasnets.ops import proposals as proposal_ops

    anchors, counts = anchor_ops.multilevel_anchors([(16, 16), (8, 8)], [4, 8], [8, 16])
    gt = tf.constant([[[10, 10, 30, 30], [0, 0, 0, 0]]], tf.float32)
    classes, num = tf.constant([[2, 0]]), tf.constant([1])

    def step(logits, deltas):
        labels, rpn_deltas, _ = targets.rpn_targets(anchors, gt, num)
        props = proposal_ops.generate_proposals(logits, deltas, anchors, (64, 64), counts, 100, 50)
        rois = targets.roi_targets(props["boxes"], gt, classes, num, tf.constant([1, 2]), num_samples=32,
                                   proposal_valid=props["valid"])
        return labels, rpn_deltas, rois["labels"], rois["rois"]

    logits = tf.random.stateless_normal([1, len(anchors)], [1, 2])
    deltas = tf.zeros([1, len(anchors), 4])
    compiled = tf.function(step, jit_compile=True)(logits, deltas)
    eager = step(logits, deltas)
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
