"""Detection losses: smooth L1 / Huber, the RPN, Fast R-CNN, Mask R-CNN and SSD multi-task losses.

Smooth L1 (Fast R-CNN, Girshick 2015, Eq. 3) with a transition point `beta`:

    smooth_L1(x) = 0.5 x^2 / beta   if |x| < beta
                   |x| - 0.5 beta   otherwise

`beta=1` is Fast R-CNN's; torchvision's RPN uses `beta=1/9`; `beta=0` is L1.
Huber with `delta` equals `delta * smooth_L1` with `beta=delta`.

Label conventions (see `kerasnets.ops.matching.matched_labels`): class ids
1..K for objects, 0 for background, -1 for ignored entries. All losses take
batched (`[B, N, ...]`) or unbatched (`[N, ...]`) tensors and normalise over
the whole batch, as the reference implementations concatenate images.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.saving import register


def smooth_l1(x, beta: float = 1.0):
    """Elementwise smooth L1 of `x` (the regression error) with transition point `beta` >= 0."""
    if beta < 0:
        raise ValueError(f"smooth L1 beta must be >= 0, got {beta}")
    x = tf.abs(tf.convert_to_tensor(x))
    if beta == 0:
        return x
    return tf.where(x < beta, 0.5 * tf.square(x) / beta, x - 0.5 * beta)


def huber(x, delta: float = 1.0):
    """Elementwise Huber loss: `0.5 x^2` if `|x| <= delta`, else `delta (|x| - 0.5 delta)`."""
    if delta <= 0:
        raise ValueError(f"Huber delta must be > 0, got {delta}")
    x = tf.abs(tf.convert_to_tensor(x))
    return tf.where(x <= delta, 0.5 * tf.square(x), delta * (x - 0.5 * delta))


def _count(mask):
    return tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)


def rpn_loss(objectness_logits, box_deltas, target_deltas, positive_mask, negative_mask, beta: float = 1.0 / 9.0):
    """RPN loss over the sampled anchors (Faster R-CNN Eq. 1).

        L = 1/N_cls sum_i BCE(p_i, p*_i) + lambda/N_reg sum_i p*_i smooth_L1(t_i - t*_i)

    Both sums run over the sampled anchors (`positive_mask | negative_mask`,
    256 per image) and, as in torchvision and Detectron, both are divided by
    the number of sampled anchors; with the paper's `lambda=10` and
    `N_reg ~ 2400` anchor positions the box weight `lambda/N_reg ~ 1/240` is
    close to this `1/256`.

    Args:
        objectness_logits: `[..., A]` logits.
        box_deltas: `[..., A, 4]` predicted deltas (RPN weights (1, 1, 1, 1)).
        target_deltas: `[..., A, 4]` encoded matched ground truth.
        positive_mask, negative_mask: `[..., A]` sampled anchors.
        beta: smooth L1 transition (torchvision: 1/9).

    Returns:
        `{"objectness": ..., "box": ...}` scalars.
    """
    positive = tf.cast(positive_mask, tf.bool)
    sampled = positive | tf.cast(negative_mask, tf.bool)
    n = _count(sampled)
    logits = tf.cast(objectness_logits, tf.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(positive, tf.float32), logits=logits)
    objectness = tf.reduce_sum(tf.where(sampled, bce, 0.0)) / n
    err = tf.reduce_sum(smooth_l1(tf.cast(box_deltas, tf.float32) - tf.cast(target_deltas, tf.float32), beta), -1)
    box = tf.reduce_sum(tf.where(positive, err, 0.0)) / n
    return {"objectness": objectness, "box": box}


def fast_rcnn_loss(class_logits, box_deltas, labels, target_deltas, sampled_mask=None, beta: float = 1.0):
    """Fast R-CNN multi-task loss (Eq. 1): `L_cls(p, u) + [u >= 1] L_loc(t^u, v)`.

    Args:
        class_logits: `[..., R, K + 1]` logits (index 0 = background).
        box_deltas: `[..., R, C, 4]` class-specific deltas with `C = K + 1`
            (background slot unused) or `C = K`.
        labels: `[..., R]` class ids (0 background, -1 ignored).
        target_deltas: `[..., R, 4]` encoded matched boxes (weights 10, 10, 5, 5).
        sampled_mask: `[..., R]` which RoIs count (default: labels >= 0).
        beta: smooth L1 transition (Fast R-CNN: 1).

    Returns `{"classification", "box"}`: softmax CE averaged over the sampled
    RoIs, and smooth L1 on the true class's deltas summed over foreground RoIs
    divided by the number of sampled RoIs (torchvision's normalisation).
    """
    labels = tf.convert_to_tensor(labels)
    sampled = labels >= 0 if sampled_mask is None else tf.cast(sampled_mask, tf.bool) & (labels >= 0)
    n = _count(sampled)
    num_logits = class_logits.shape[-1]
    num_box_classes = box_deltas.shape[-2]
    if num_box_classes not in (num_logits, num_logits - 1):
        raise ValueError(
            f"box_deltas has {num_box_classes} classes; expected K + 1 = {num_logits} or K = {num_logits - 1}"
        )
    safe = tf.maximum(labels, 0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=tf.cast(class_logits, tf.float32))
    classification = tf.reduce_sum(tf.where(sampled, ce, 0.0)) / n
    index = safe if num_box_classes == num_logits else tf.maximum(safe - 1, 0)
    batch_dims = labels.shape.rank
    pred = tf.gather(tf.cast(box_deltas, tf.float32), index[..., None], axis=batch_dims, batch_dims=batch_dims)
    err = tf.reduce_sum(smooth_l1(pred[..., 0, :] - tf.cast(target_deltas, tf.float32), beta), -1)
    box = tf.reduce_sum(tf.where(sampled & (labels > 0), err, 0.0)) / n
    return {"classification": classification, "box": box}


def mask_rcnn_loss(mask_logits, labels, mask_targets, positive_mask=None):
    """Mask R-CNN mask loss: per-pixel sigmoid BCE on the ground-truth class's mask, mean over positive RoIs.

    Args:
        mask_logits: `[..., R, M, M, K]` (channels last, one mask per class).
        labels: `[..., R]` class ids 1..K (0 / -1: no mask loss).
        mask_targets: `[..., R, M, M]` binary targets (`kerasnets.ops.masks.mask_targets`).
        positive_mask: `[..., R]` extra restriction (default: labels > 0).

    Returns the average BCE over all pixels of the positive RoIs (0 without positives).
    """
    labels = tf.convert_to_tensor(labels)
    positive = labels > 0
    if positive_mask is not None:
        positive &= tf.cast(positive_mask, tf.bool)
    channel = tf.maximum(labels - 1, 0)
    logits = tf.gather(tf.cast(mask_logits, tf.float32), channel, axis=-1, batch_dims=labels.shape.rank)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(mask_targets, tf.float32), logits=logits)
    pixels = tf.cast(tf.reduce_prod(tf.shape(bce)[-2:]), tf.float32)
    per_roi = tf.reduce_sum(bce, axis=[-2, -1]) / pixels
    return tf.reduce_sum(tf.where(positive, per_roi, 0.0)) / _count(positive)


def hard_negative_mining(negative_loss, positive_mask, negative_mask=None, neg_pos_ratio: float = 3.0):
    """SSD hard negative mining: per image keep the `neg_pos_ratio * #positives` negatives with the highest loss.

    Args:
        negative_loss: `[B, A]` confidence loss of each default box (as background).
        positive_mask: `[B, A]` matched default boxes.
        negative_mask: `[B, A]` candidates (default: all non-positive boxes).
        neg_pos_ratio: at most this many negatives per positive (3 in the paper).

    Returns the `[B, A]` bool mask of kept negatives.
    """
    positive = tf.cast(positive_mask, tf.bool)
    candidates = ~positive if negative_mask is None else tf.cast(negative_mask, tf.bool) & ~positive
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True)
    num_neg = tf.cast(tf.floor(tf.cast(num_pos, tf.float32) * neg_pos_ratio), tf.int32)
    key = tf.where(candidates, tf.cast(negative_loss, tf.float32), -float("inf"))
    order = tf.argsort(key, axis=-1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=-1, stable=True)
    return candidates & (rank < num_neg)


def ssd_loss(class_logits, box_deltas, labels, target_deltas, neg_pos_ratio: float = 3.0, alpha: float = 1.0,
             beta: float = 1.0):
    """SSD objective (Liu et al. 2016, Eq. 1): `L = (L_conf + alpha L_loc) / N`, `N` = matched boxes.

    `L_loc` is smooth L1 over positives (deltas with weights 10, 10, 5, 5);
    `L_conf` is softmax cross-entropy over the positives and the hard
    negatives (3 per positive, highest background loss first). `N` is the
    number of positives in the batch; with no positive the loss is 0 (the
    division uses `max(N, 1)`, as torchvision does).

    Args:
        class_logits: `[B, A, K + 1]` (index 0 = background).
        box_deltas, target_deltas: `[B, A, 4]`.
        labels: `[B, A]` class ids (0 background, -1 never used).

    Returns `{"classification", "box", "num_positives"}`; the total is
    `classification + alpha * box`.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:  # one image
        class_logits, box_deltas, labels, target_deltas = (
            t[None] for t in (class_logits, box_deltas, labels, target_deltas)
        )
    positive = labels > 0
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(labels, 0), logits=tf.cast(class_logits, tf.float32)
    )
    hard_negative = hard_negative_mining(ce, positive, tf.equal(labels, 0), neg_pos_ratio)
    n = _count(positive)
    classification = tf.reduce_sum(tf.where(positive | hard_negative, ce, 0.0)) / n
    err = tf.reduce_sum(smooth_l1(tf.cast(box_deltas, tf.float32) - tf.cast(target_deltas, tf.float32), beta), -1)
    box = alpha * tf.reduce_sum(tf.where(positive, err, 0.0)) / n
    return {
        "classification": classification,
        "box": box,
        "num_positives": tf.reduce_sum(tf.cast(positive, tf.float32)),
    }


@register
class SmoothL1Loss(keras.losses.Loss):
    """Smooth L1 summed over the last axis (box coordinates), for `model.compile`.

    Args:
        beta: transition point (1 for Fast R-CNN, 1/9 for torchvision's RPN, 0 = L1).
    """

    def __init__(self, beta: float = 1.0, reduction="sum_over_batch_size", name="smooth_l1"):
        super().__init__(reduction=reduction, name=name)
        if beta < 0:
            raise ValueError(f"smooth L1 beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def call(self, y_true, y_pred):
        return tf.reduce_sum(smooth_l1(tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32), self.beta), -1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


def keypoint_rcnn_loss(keypoint_logits, target_index, valid):
    """Mask R-CNN keypoint loss: softmax CE over the `m x m` positions of each visible keypoint's heatmap.

    Args:
        keypoint_logits: `[..., R, m, m, K]` (channels last, one heatmap per keypoint).
        target_index: `[..., R, K]` flat target cell `y * m + x`
            (`kerasnets.ops.keypoints.keypoint_targets`).
        valid: `[..., R, K]` which keypoints count (visible, inside a positive RoI).

    Returns the mean over valid keypoints (0 if none).
    """
    logits = tf.cast(keypoint_logits, tf.float32)
    m = logits.shape[-2]
    moved = tf.experimental.numpy.moveaxis(logits, -1, -3)  # [..., R, K, m, m]
    flat = tf.reshape(moved, tf.concat([tf.shape(moved)[:-2], [m * m]], 0))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(target_index, tf.int32), logits=flat)
    valid = tf.cast(valid, tf.bool)
    return tf.reduce_sum(tf.where(valid, ce, 0.0)) / _count(valid)
