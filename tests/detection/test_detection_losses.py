"""Smooth L1 / Huber, RPN, Fast R-CNN, Mask R-CNN and SSD loss terms on hand-computed cases."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import detection as det


def test_smooth_l1_and_huber_hand_values():
    np.testing.assert_allclose(det.smooth_l1([0.5, 2.0, -3.0], beta=1.0), [0.125, 1.5, 2.5])
    np.testing.assert_allclose(det.smooth_l1([0.05, -1.0], beta=1 / 9), [0.5 * 0.0025 * 9, 1 - 1 / 18], rtol=1e-6)
    np.testing.assert_allclose(det.smooth_l1([0.3, -2.0], beta=0.0), [0.3, 2.0])
    x = np.linspace(-3, 3, 61).astype(np.float32)
    for delta in (1.0, 1 / 9, 0.5):
        np.testing.assert_allclose(det.huber(x, delta), delta * det.smooth_l1(x, delta).numpy(), rtol=1e-5,
                                   atol=1e-7)
    np.testing.assert_allclose(np.mean(det.huber(x, 1.0)), keras.losses.Huber(1.0)(np.zeros_like(x), x), rtol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        det.smooth_l1(x, -1.0)


def test_smooth_l1_loss_class_sums_coordinates_and_serializes():
    loss = det.SmoothL1Loss(beta=1.0)
    y_true = np.zeros((2, 4), np.float32)
    y_pred = np.array([[0.5, 2.0, 0, 0], [0, 0, 0, -3.0]], np.float32)
    np.testing.assert_allclose(loss(y_true, y_pred), (0.125 + 1.5 + 2.5) / 2, rtol=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, det.SmoothL1Loss) and clone.beta == 1.0


def test_rpn_loss_hand_case():
    logits = tf.constant([2.0, -1.0, 0.0, 3.0])
    pos = tf.constant([True, False, False, False])
    neg = tf.constant([False, True, True, False])  # anchor 3 not sampled
    pred = tf.constant([[0.1, 0, 0, 0], [5, 5, 5, 5], [0, 0, 0, 0], [9, 9, 9, 9]], tf.float32)
    target = tf.zeros([4, 4])
    out = det.rpn_loss(logits, pred, target, pos, neg, beta=1 / 9)
    bce = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)) + math.log(2.0)
    np.testing.assert_allclose(out["objectness"], bce / 3, rtol=1e-6)
    np.testing.assert_allclose(out["box"], 0.5 * 0.01 * 9 / 3, rtol=1e-5)  # |0.1| < 1/9: quadratic branch
    # Batched: normalised by all sampled anchors of the batch.
    batched = det.rpn_loss(tf.stack([logits] * 2), tf.stack([pred] * 2), tf.stack([target] * 2),
                           tf.stack([pos] * 2), tf.stack([neg] * 2))
    np.testing.assert_allclose(batched["objectness"], out["objectness"], rtol=1e-6)


def test_fast_rcnn_loss_hand_case():
    logits = tf.constant([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    labels = tf.constant([2, 0, -1])  # third RoI ignored
    deltas = np.zeros((3, 3, 4), np.float32)
    deltas[0, 2] = [1.0, 0, 0, 0]  # true-class deltas of the foreground RoI
    deltas[0, 1] = [7.0, 7, 7, 7]  # other class: must not count
    deltas[1] = 9.0  # background RoI: no box loss
    out = det.fast_rcnn_loss(logits, deltas, labels, tf.zeros([3, 4]))
    ce0 = math.log(math.e + math.e**2 + 1) - 0.0
    np.testing.assert_allclose(out["classification"], (ce0 + math.log(3)) / 2, rtol=1e-6)
    np.testing.assert_allclose(out["box"], 0.5 / 2, rtol=1e-6)
    # K class slots (no background slot): class 2 -> slot 1.
    out_k = det.fast_rcnn_loss(logits, deltas[:, 1:], labels, tf.zeros([3, 4]))
    np.testing.assert_allclose(out_k["box"], 0.5 / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="classes"):
        det.fast_rcnn_loss(logits, np.zeros((3, 5, 4), np.float32), labels, tf.zeros([3, 4]))


def test_mask_loss_uses_ground_truth_class_channel():
    logits = np.zeros((2, 2, 2, 2), np.float32)
    logits[..., 0] = 50.0  # class-1 channel: would give a huge loss against zero targets
    targets = np.zeros((2, 2, 2), np.float32)
    labels = tf.constant([2, 0])  # RoI 1 is background: no mask loss
    np.testing.assert_allclose(det.mask_rcnn_loss(logits, labels, targets), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(det.mask_rcnn_loss(logits, tf.constant([1, 0]), targets), 50.0, rtol=1e-4)


def test_hard_negative_mining_keeps_three_to_one():
    loss = tf.constant([[0.0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    pos = tf.constant([[True, True] + [False] * 10])
    kept = det.hard_negative_mining(loss, pos).numpy()[0]
    np.testing.assert_array_equal(np.flatnonzero(kept), [6, 7, 8, 9, 10, 11])  # 6 = 3 x 2 highest losses
    few = det.hard_negative_mining(tf.constant([[1.0, 1, 1, 0.5, 0.2]]), tf.constant([[True] * 3 + [False] * 2]))
    np.testing.assert_array_equal(few.numpy()[0], [False, False, False, True, True])  # fewer than 9 available
    per_image = det.hard_negative_mining(
        tf.random.uniform([2, 50]), tf.constant([[True] + [False] * 49, [False] * 50])
    ).numpy()
    np.testing.assert_array_equal(per_image.sum(1), [3, 0])


def _np_ssd_loss(logits, deltas, labels, targets, ratio=3):
    lse = np.log(np.exp(logits).sum(-1))
    ce = lse - np.take_along_axis(logits, np.maximum(labels, 0)[..., None], -1)[..., 0]
    total_cls = 0.0
    for b in range(len(labels)):
        pos = labels[b] > 0
        neg_loss = np.where(pos, -np.inf, ce[b])
        hard = np.argsort(-neg_loss, kind="stable")[: ratio * pos.sum()]
        total_cls += ce[b][pos].sum() + ce[b][hard].sum()
    err = np.abs(deltas - targets)
    sl1 = np.where(err < 1, 0.5 * err**2, err - 0.5).sum(-1)
    n = max((labels > 0).sum(), 1)
    return total_cls / n, sl1[labels > 0].sum() / n


def test_ssd_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 40, 4)).astype(np.float32)
    deltas = rng.normal(size=(2, 40, 4)).astype(np.float32)
    targets = rng.normal(size=(2, 40, 4)).astype(np.float32)
    labels = np.zeros((2, 40), np.int32)
    labels[0, [3, 9]] = [1, 3]
    labels[1, [0, 5, 7]] = [2, 2, 1]
    out = det.ssd_loss(logits, deltas, labels, targets)
    cls, box = _np_ssd_loss(logits, deltas, labels, targets)
    np.testing.assert_allclose(out["classification"], cls, rtol=1e-5)
    np.testing.assert_allclose(out["box"], box, rtol=1e-5)
    assert float(out["num_positives"]) == 5
    none = det.ssd_loss(logits, deltas, np.zeros_like(labels), targets)
    assert float(none["classification"]) == 0.0 and float(none["box"]) == 0.0
