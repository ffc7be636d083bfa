"""Assigning anchors (or proposals, or default boxes) to ground-truth boxes by IoU.

`match_boxes` is the Faster R-CNN rule (Ren et al. 2015, Sec. 3.1.2): an
anchor is positive if its best IoU with a ground-truth box is >= the positive
threshold (0.7 for the RPN, 0.5 for the RoI head), negative if < the negative
threshold (0.3 for the RPN, 0.5 for the head), otherwise ignored. With
`allow_low_quality_matches` every ground-truth box also claims the anchor(s)
with which it has its highest IoU, even below the positive threshold ("the
anchor/anchors with the highest IoU overlap with a ground-truth box"), so no
object is left without a positive anchor. Ties are kept, as in Detectron and
torchvision; ground-truth boxes that overlap no anchor at all claim nothing.

`ssd_match` is SSD's rule (Liu et al. 2016, Sec. 2.2): first each ground-truth
box is matched to the default box with the best jaccard overlap, then default
boxes are matched to any ground truth with overlap >= 0.5.

Everything works on padded ground truth (`valid` masks the real rows), on a
single image `[G, A]` or a batch `[B, G, A]`, eagerly and inside `tf.function`.
Results are int32 indices into the ground-truth axis, or `NEGATIVE` (-1) /
`IGNORE` (-2).
"""

from __future__ import annotations

import tensorflow as tf

NEGATIVE = -1
IGNORE = -2


def _prepare(iou, valid):
    iou = tf.convert_to_tensor(iou)
    if iou.shape.rank is not None and iou.shape.rank < 2:
        raise ValueError(f"iou must be [..., num_gt, num_anchors], got shape {iou.shape}")
    if not iou.dtype.is_floating:
        iou = tf.cast(iou, tf.float32)
    if valid is None:
        valid = tf.ones(tf.shape(iou)[:-1], tf.bool)
    valid = tf.cast(valid, tf.bool)
    # One always-invalid extra row makes "no ground truth at all" an ordinary case.
    shape = tf.shape(iou)
    pad = tf.fill(tf.concat([shape[:-2], [1], shape[-1:]], 0), tf.constant(-1.0, iou.dtype))
    iou = tf.concat([iou, pad], axis=-2)
    valid = tf.concat([valid, tf.zeros(tf.concat([shape[:-2], [1]], 0), tf.bool)], axis=-1)
    iou = tf.where(valid[..., None], iou, -1.0)
    return iou, valid


def match_boxes(
    iou,
    positive_threshold: float = 0.7,
    negative_threshold: float = 0.3,
    allow_low_quality_matches: bool = False,
    valid=None,
):
    """Match anchors to ground truth by IoU.

    Args:
        iou: `[..., G, A]` IoU of every ground-truth box with every anchor
            (`pairwise_iou(gt_boxes, anchors)`).
        positive_threshold: best IoU >= this -> matched to that ground truth.
        negative_threshold: best IoU < this -> `NEGATIVE`; in between -> `IGNORE`.
        allow_low_quality_matches: each ground-truth box's best anchor(s)
            become positive even below `positive_threshold`.
        valid: `[..., G]` bool, False for padding rows (default: all valid).

    Returns:
        `[..., A]` int32: ground-truth index, `NEGATIVE` or `IGNORE`.
    """
    if negative_threshold > positive_threshold:
        raise ValueError(
            f"negative_threshold ({negative_threshold}) must be <= positive_threshold ({positive_threshold})"
        )
    iou, valid = _prepare(iou, valid)
    best_iou = tf.reduce_max(iou, axis=-2)
    best_gt = tf.argmax(iou, axis=-2, output_type=tf.int32)
    matches = tf.where(
        best_iou >= positive_threshold,
        best_gt,
        tf.where(best_iou < negative_threshold, NEGATIVE, IGNORE),
    )
    if allow_low_quality_matches:
        best_per_gt = tf.reduce_max(iou, axis=-1, keepdims=True)  # [..., G, 1]
        claims = valid[..., None] & (best_per_gt > 0.0) & tf.equal(iou, best_per_gt)
        matches = tf.where(tf.reduce_any(claims, axis=-2), best_gt, matches)
    return matches


def ssd_match(iou, threshold: float = 0.5, valid=None):
    """SSD matching: each ground truth's best default box, plus every default box with IoU >= `threshold`.

    Returns `[..., A]` int32 ground-truth indices or `NEGATIVE` (there is no
    ignore band). If two ground-truth boxes share the same best default box,
    the one overlapping it most wins.
    """
    matches = match_boxes(iou, threshold, threshold, False, valid)
    iou, valid = _prepare(iou, valid)
    num_anchors = tf.shape(iou)[-1]
    best_anchor = tf.argmax(iou, axis=-1, output_type=tf.int32)  # [..., G]
    forced = tf.equal(best_anchor[..., None], tf.range(num_anchors)) & valid[..., None]  # [..., G, A]
    forced_gt = tf.argmax(tf.where(forced, iou, -2.0), axis=-2, output_type=tf.int32)
    return tf.where(tf.reduce_any(forced, axis=-2), forced_gt, matches)


def gather_matched(matches, values, fill_value=0):
    """Per anchor, the matched ground truth's row of `values` (`[..., G, ...]`), `fill_value` if unmatched.

    `matches` is `[..., A]` from `match_boxes`/`ssd_match` with the same
    leading (batch) dimensions as `values`.
    """
    matches = tf.convert_to_tensor(matches)
    values = tf.convert_to_tensor(values)
    batch_dims = matches.shape.rank - 1
    gathered = tf.gather(values, tf.maximum(matches, 0), axis=batch_dims, batch_dims=batch_dims)
    keep = matches >= 0
    keep = tf.reshape(keep, tf.concat([tf.shape(keep), tf.ones([values.shape.rank - batch_dims - 1], tf.int32)], 0))
    return tf.where(keep, gathered, tf.cast(fill_value, values.dtype))


def matched_labels(matches, gt_classes=None):
    """Training labels from matches.

    With `gt_classes` (`[..., G]`, classes 1..K): the matched class, 0 for
    negatives (background), -1 for ignored anchors. Without: objectness
    labels 1 (positive), 0 (negative), -1 (ignored), as the RPN uses.
    """
    matches = tf.convert_to_tensor(matches)
    if gt_classes is None:
        positive = tf.ones_like(matches)
    else:
        positive = tf.cast(gather_matched(matches, gt_classes), matches.dtype)
    return tf.where(matches >= 0, positive, tf.where(tf.equal(matches, IGNORE), -1, 0))
