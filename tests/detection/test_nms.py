"""NMS against a NumPy greedy reference: eager, in tf.function, under XLA and after SavedModel save/load."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.ops import anchors as anchor_ops
from kerasnets.ops import nms as nms_ops


def _np_iou(box, others):
    tl = np.maximum(box[:2], others[:, :2])
    br = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(others) - inter)


def greedy_nms(boxes, scores, iou_threshold, max_out, score_threshold=-np.inf):
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    keep = []
    while order and len(keep) < max_out:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if _np_iou(boxes[i], boxes[[j]])[0] <= iou_threshold]
    return keep


def _random_boxes(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (n, 2))], 1).astype(np.float32)
    return boxes, rng.permutation(n).astype(np.float32) / n  # distinct scores


@pytest.mark.parametrize("implementation", ["per_image", pytest.param("padded", marks=pytest.mark.slow)])
def test_nms_equals_greedy_reference_eager_and_in_tf_function(implementation):
    boxes, scores = _random_boxes(200, 0)
    expected = greedy_nms(boxes, scores, 0.5, 30, score_threshold=0.1)
    idx, num = nms_ops.nms(boxes, scores, 30, 0.5, 0.1, implementation)
    assert int(num) == len(expected)
    np.testing.assert_array_equal(idx.numpy()[: len(expected)], expected)
    assert np.all(idx.numpy()[len(expected):] == 0)
    graph_idx, graph_num = tf.function(lambda b, s: nms_ops.nms(b, s, 30, 0.5, 0.1, implementation))(boxes, scores)
    np.testing.assert_array_equal(graph_idx, idx)
    # Batched input, fewer boxes than max_output_size.
    small, small_scores = _random_boxes(8, 1)
    bidx, bnum = nms_ops.nms(np.stack([boxes[:8], small]), np.stack([scores[:8], small_scores]), 20, 0.3,
                             implementation=implementation)
    for b, (bx, sc) in enumerate([(boxes[:8], scores[:8]), (small, small_scores)]):
        ref = greedy_nms(bx, sc, 0.3, 20)
        assert int(bnum[b]) == len(ref)
        np.testing.assert_array_equal(bidx.numpy()[b, : len(ref)], ref)


def test_batched_nms_is_per_class():
    boxes, scores = _random_boxes(120, 2)
    classes = np.random.default_rng(3).integers(1, 4, 120)
    idx, num = nms_ops.batched_nms(boxes, scores, classes, 120, 0.5)
    ref = []
    for c in (1, 2, 3):
        sel = np.flatnonzero(classes == c)
        ref += [sel[i] for i in greedy_nms(boxes[sel], scores[sel], 0.5, 120)]
    ref = sorted(ref, key=lambda i: -scores[i])
    np.testing.assert_array_equal(idx.numpy()[: int(num)], ref)


def test_multiclass_nms_hand_case():
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]]], np.float32)
    # class 1 scores: box0 0.9, box1 0.8 (suppressed by box0), box2 0.02 (under the floor)
    # class 2 scores: box1 0.7 (other class: not suppressed by box0)
    scores = np.array([[[0.9, 0.0], [0.8, 0.7], [0.02, 0.0]]], np.float32)
    out = nms_ops.multiclass_nms(boxes, scores, max_detections=5, iou_threshold=0.5, score_threshold=0.05)
    assert int(out["num_detections"][0]) == 2
    np.testing.assert_array_equal(out["classes"][0], [1, 2, 0, 0, 0])
    np.testing.assert_allclose(out["scores"][0], [0.9, 0.7, 0, 0, 0])
    np.testing.assert_array_equal(out["indices"][0, :2], [0, 1])
    np.testing.assert_allclose(out["boxes"][0, :2], boxes[0, :2])
    # Class-specific boxes [B, N, K, 4]: each class uses its own box.
    specific = np.stack([boxes, boxes + 100], axis=2)
    out = nms_ops.multiclass_nms(specific, scores, 5, 0.5, 0.05)
    np.testing.assert_allclose(out["boxes"][0, 1], boxes[0, 1] + 100)


def test_ssd_postprocess_floor_and_top_k():
    default = anchor_ops.ssd_default_boxes([4, 2], 64, [(2,), (2,)], scales=[0.2, 0.5, 0.8])
    a = len(default)
    logits = np.full((1, a, 3), -5.0, np.float32)
    logits[0, :, 0] = 5.0  # background everywhere
    logits[0, 3] = [0.0, 6.0, 0.0]  # one confident class-1 detection
    out = nms_ops.ssd_postprocess(logits, np.zeros((1, a, 4), np.float32), default, (64, 64), max_detections=200)
    assert out["boxes"].shape == (1, 200, 4)
    n = int(out["num_detections"][0])
    assert n >= 1 and int(out["classes"][0, 0]) == 1
    np.testing.assert_allclose(out["boxes"][0, 0], np.clip(default[3], 0, 64), atol=1e-4)
    assert np.all(out["scores"][0, :n] > 0.01)


@pytest.mark.slow
def test_nms_compiles_with_xla():
    boxes, scores = _random_boxes(64, 4)
    two = np.stack([scores, (scores + 0.5 / 64) * 0.9], -1)[None]  # no score ties between classes
    fn = tf.function(lambda b, s: nms_ops.multiclass_nms(b, s, 10, 0.5, 0.05), jit_compile=True)
    out = fn(boxes[None], two)
    eager = nms_ops.multiclass_nms(boxes[None], two, 10, 0.5, 0.05)
    np.testing.assert_array_equal(out["indices"], eager["indices"])
    np.testing.assert_array_equal(out["classes"], eager["classes"])


@pytest.mark.slow
def test_nms_survives_saved_model_round_trip(tmp_path):
    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.float32),
                                      tf.TensorSpec([None, None, 2], tf.float32)])
        def detect(self, boxes, scores):
            return nms_ops.multiclass_nms(boxes, scores, 15, 0.5, 0.05)

    tf.saved_model.save(Detector(), str(tmp_path / "nms"))
    loaded = tf.saved_model.load(str(tmp_path / "nms"))
    boxes, scores = _random_boxes(100, 5)
    both = np.stack([scores, 1 - scores], -1)[None]
    out = loaded.detect(tf.constant(boxes[None]), tf.constant(both))
    ref = nms_ops.multiclass_nms(boxes[None], both, 15, 0.5, 0.05)
    for key in ("indices", "classes", "num_detections"):
        np.testing.assert_array_equal(out[key], ref[key])


def test_rcnn_postprocess_class_specific_boxes():
    rois = np.array([[[10, 10, 30, 30], [12, 10, 32, 30], [0, 0, 0, 0]]], np.float32)
    logits = np.array([[[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [0.0, 9.0, 0.0]]], np.float32)
    deltas = np.zeros((1, 3, 3, 4), np.float32)
    deltas[0, 0, 1] = [1.0, 0, 0, 0]  # class-1 box of RoI 0: shifted right by 0.1 * width = 2 px
    out = nms_ops.rcnn_postprocess(logits, deltas, rois, (40, 40), roi_valid=[[True, True, False]])
    # RoI 1's class-1 box equals RoI 0's decoded box -> suppressed; padding RoI 2 never detected
    assert int(out["num_detections"][0]) == 1
    np.testing.assert_allclose(out["boxes"][0, 0], [12, 10, 32, 30], atol=1e-4)
    assert int(out["classes"][0, 0]) == 1 and int(out["indices"][0, 0]) == 0
    p = np.exp(5.0) / (np.exp(5.0) + 2)
    np.testing.assert_allclose(out["scores"][0, 0], p, rtol=1e-5)
    agnostic = nms_ops.rcnn_postprocess(logits, deltas[:, :, 1], rois, (40, 40), roi_valid=[[True, True, False]])
    np.testing.assert_allclose(agnostic["boxes"][0, 0], out["boxes"][0, 0])


def test_no_boxes_gives_no_detections():
    out = nms_ops.multiclass_nms(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0, 3), np.float32), 5)
    np.testing.assert_array_equal(out["num_detections"], [0, 0])
    assert out["boxes"].shape == (2, 5, 4) and np.all(out["classes"].numpy() == 0)
    idx, num = nms_ops.nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 3)
    assert int(num) == 0 and idx.shape == (3,)


@pytest.mark.parametrize("implementation", nms_ops.IMPLEMENTATIONS)
def test_zero_threshold_suppresses_any_overlap(implementation):
    # IoU 0.163 (issue 18 item 9): suppression is IoU > threshold, so at 0.0 only the first box stays,
    # as TF's kernel and torchvision give; at 0.17 both stay; 1.0 keeps even identical boxes.
    boxes = np.array([[17, 42, 23.25, 52.5], [19.75, 43.5, 33.75, 49.5]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert _np_iou(boxes[0], boxes[1:])[0] == pytest.approx(0.163, abs=5e-4)
    for threshold, kept in [(0.0, [0]), (0.16, [0]), (0.17, [0, 1])]:
        idx, num = nms_ops.nms(boxes, scores, 2, threshold, implementation=implementation)
        assert idx.numpy()[: int(num)].tolist() == kept, threshold
    same = np.stack([boxes[0], boxes[0]])
    idx, num = nms_ops.nms(same, scores, 2, 1.0, implementation=implementation)
    assert int(num) == 2
    # Touching boxes (IoU exactly 0) never suppress each other, even at 0.0.
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10]], np.float32)
    assert int(nms_ops.nms(touching, scores, 2, 0.0, implementation=implementation)[1]) == 2


@pytest.mark.parametrize("implementation", nms_ops.IMPLEMENTATIONS)
def test_implementations_agree_with_the_reference_on_random_cases(implementation):
    # Integer boxes on a small grid: many exact IoU ties (0.5 exactly, touching boxes), negative
    # coordinates and a batch of images, at the edge thresholds 0 and 1 too.
    rng = np.random.default_rng(7)
    images, n = 4, 40
    xy = rng.integers(-30, 30, (images, n, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 20, (images, n, 2))], -1).astype(np.float32)
    scores = np.stack([rng.permutation(n) for _ in range(images)]).astype(np.float32) / n
    fn = tf.function(lambda b, s, t: nms_ops.nms(b, s, n, t, implementation=implementation))
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        idx, num = fn(boxes, scores, threshold)
        for b in range(images):
            ref = greedy_nms(boxes[b], scores[b], threshold, n)
            assert idx.numpy()[b, : int(num[b])].tolist() == [int(i) for i in ref], (threshold, b)
