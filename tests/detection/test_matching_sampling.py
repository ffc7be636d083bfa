"""IoU matcher thresholds, low-quality matches, SSD matching and balanced sampling ratios."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.ops import matching, sampling

IOU = np.array([[0.8, 0.5, 0.2, 0.1, 0.0], [0.1, 0.6, 0.25, 0.65, 0.0]], np.float32)


def test_match_thresholds_and_low_quality():
    plain = matching.match_boxes(IOU, 0.7, 0.3).numpy()
    np.testing.assert_array_equal(plain, [0, matching.IGNORE, matching.NEGATIVE, matching.IGNORE, -1])
    # gt 1's best anchor (a3, IoU 0.65 < 0.7) becomes positive.
    low = matching.match_boxes(IOU, 0.7, 0.3, allow_low_quality_matches=True).numpy()
    np.testing.assert_array_equal(low, [0, -2, -1, 1, -1])
    # Padding rows never match.
    masked = matching.match_boxes(IOU, 0.7, 0.3, True, valid=[True, False]).numpy()
    np.testing.assert_array_equal(masked, [0, -2, -1, -1, -1])
    # RoI-head thresholds 0.5/0.5: no ignore band.
    head = matching.match_boxes(IOU, 0.5, 0.5).numpy()
    np.testing.assert_array_equal(head, [0, 1, -1, 1, -1])
    with pytest.raises(ValueError, match="negative_threshold"):
        matching.match_boxes(IOU, 0.3, 0.7)


def test_low_quality_ties_and_no_overlap():
    iou = np.array([[0.4, 0.4, 0.1], [0.0, 0.0, 0.0]], np.float32)
    out = matching.match_boxes(iou, 0.7, 0.3, True).numpy()
    np.testing.assert_array_equal(out, [0, 0, -1])  # both tied anchors; gt 1 overlaps nothing, claims nothing
    empty = matching.match_boxes(np.zeros((0, 4), np.float32), 0.7, 0.3, True).numpy()
    np.testing.assert_array_equal(empty, [-1, -1, -1, -1])


def test_ssd_match_forces_best_default_box():
    iou = np.array([[0.4, 0.1, 0.0], [0.45, 0.2, 0.6]], np.float32)
    np.testing.assert_array_equal(matching.ssd_match(iou).numpy(), [0, -1, 1])
    shared = np.array([[0.4, 0.1], [0.3, 0.2]], np.float32)  # both gts' best box is a0; gt 0 overlaps more
    np.testing.assert_array_equal(matching.ssd_match(shared).numpy(), [0, -1])
    batched = matching.ssd_match(np.stack([iou, iou * 0]), valid=[[True, True], [False, False]]).numpy()
    np.testing.assert_array_equal(batched, [[0, -1, 1], [-1, -1, -1]])


def test_gather_matched_and_labels():
    matches = tf.constant([[1, -1, 0, -2]])
    gt_boxes = tf.constant([[[0.0, 0, 1, 1], [2.0, 2, 3, 3]]])
    np.testing.assert_array_equal(
        matching.gather_matched(matches, gt_boxes).numpy(), [[[2, 2, 3, 3], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]]
    )
    np.testing.assert_array_equal(matching.matched_labels(matches, tf.constant([[3, 2]])).numpy(), [[2, 0, 3, -1]])
    np.testing.assert_array_equal(matching.matched_labels(matches).numpy(), [[1, 0, 1, -1]])


def _counts(masks):
    return [int(tf.reduce_sum(tf.cast(m, tf.int32))) for m in masks]


@pytest.mark.parametrize(
    "num_pos,num_neg,expected",
    [(500, 1000, (128, 128)), (10, 1000, (10, 246)), (300, 5, (128, 5)), (0, 40, (0, 40))],
)
def test_rpn_sampling_256_at_half(num_pos, num_neg, expected):
    labels = tf.constant([1] * num_pos + [0] * num_neg + [-1] * 50)
    pos, neg = sampling.sample_rpn_anchors(labels, seed=3)
    assert tuple(_counts([pos, neg])) == expected
    assert not np.any(pos.numpy() & neg.numpy())
    assert not np.any((pos.numpy() | neg.numpy()) & (labels.numpy() < 0))  # ignored never sampled
    assert np.all(labels.numpy()[pos.numpy()] > 0) and np.all(labels.numpy()[neg.numpy()] == 0)


def test_roi_sampling_512_at_quarter_with_class_labels():
    labels = tf.constant([1, 2, 3] * 400 + [0] * 2000)
    pos, neg = sampling.sample_rois(labels, seed=0)
    assert _counts([pos, neg]) == [128, 384]
    short = tf.constant([2] * 50 + [0] * 2000)
    assert _counts(sampling.sample_rois(short, seed=0)) == [50, 462]  # filled with negatives


def test_sampling_is_seeded_uniform_and_per_row():
    labels = tf.constant([1] * 20 + [0] * 80)
    a = sampling.sample_balanced(labels, 20, 0.5, seed=7)
    b = sampling.sample_balanced(labels, 20, 0.5, seed=tf.constant([7, 0], tf.int64))
    c = sampling.sample_balanced(labels, 20, 0.5, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    # Batched rows sample independently; each positive is picked about half of the time.
    rows = tf.tile(labels[None], [400, 1])
    pos, neg = sampling.sample_balanced(rows, 20, 0.5, seed=1)
    assert np.all(pos.numpy().sum(1) == 10) and np.all(neg.numpy().sum(1) == 10)
    freq = pos.numpy()[:, :20].mean(0)
    assert np.all(np.abs(freq - 0.5) < 0.12), freq
    ragged = tf.constant([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, -1]])
    pos, neg = sampling.sample_balanced(ragged, 4, 0.5, seed=0)
    np.testing.assert_array_equal(pos.numpy().sum(1), [2, 1])
    np.testing.assert_array_equal(neg.numpy().sum(1), [2, 3])


def test_sampled_indices_fixed_size():
    pos = tf.constant([False, True, False, True, False])
    neg = tf.constant([True, False, False, False, False])
    idx, valid = sampling.sampled_indices(pos, neg, 4)
    np.testing.assert_array_equal(idx, [1, 3, 0, 0])
    np.testing.assert_array_equal(valid, [True, True, True, False])
    with pytest.raises(ValueError, match="cannot take"):
        sampling.sampled_indices(pos, neg, 6)
