"""Training targets from padded ground truth: RPN anchors, SSD default boxes, sampled RoIs.

These glue `boxes`, `matching` and `sampling` together the way the papers
train; every function takes a batch of padded ground truth
(`gt_boxes [B, G, 4]`, `gt_classes [B, G]`, `num_objects [B]`, the format of
`kerasnets.data.detection.pad_examples`) and returns fixed-shape tensors, so
it runs inside a replica's `train_step`.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.ops import boxes as box_ops
from kerasnets.ops import matching, sampling


def valid_objects(num_objects, max_objects):
    """`[B, G]` bool: the first `num_objects[b]` rows are real ground truth."""
    return tf.range(max_objects)[None, :] < tf.cast(num_objects, tf.int32)[:, None]


def _encode_matched(matches, gt_boxes, priors, weights):
    matched_boxes = matching.gather_matched(matches, gt_boxes)
    deltas = box_ops.encode_boxes(matched_boxes, priors, weights)
    return tf.where((matches >= 0)[..., None], deltas, 0.0)


def rpn_targets(
    anchors,
    gt_boxes,
    num_objects,
    image_size=None,
    positive_threshold: float = 0.7,
    negative_threshold: float = 0.3,
    allowed_border: float | None = None,
    weights=box_ops.RPN_BOX_WEIGHTS,
):
    """Objectness labels and box targets of every anchor (Faster R-CNN Sec. 3.1.2).

    Positive: IoU >= 0.7 with some ground truth, or the best anchor of a ground
    truth ("low-quality" matches); negative: IoU < 0.3 with all; the rest
    ignored. With `allowed_border` (the paper uses 0; torchvision keeps all
    anchors, `None`) anchors sticking out of the image by more than that many
    pixels are ignored, which needs `image_size = (H, W)`.

    Args:
        anchors: `[A, 4]` xyxy. gt_boxes: `[B, G, 4]`. num_objects: `[B]`.

    Returns:
        `(labels [B, A] int32 in {1, 0, -1}, target_deltas [B, A, 4], matches [B, A])`.
    """
    anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
    gt_boxes = tf.cast(tf.convert_to_tensor(gt_boxes), tf.float32)
    valid = valid_objects(num_objects, tf.shape(gt_boxes)[1])
    iou = box_ops.pairwise_iou(gt_boxes, anchors[None])
    matches = matching.match_boxes(iou, positive_threshold, negative_threshold, True, valid)
    if allowed_border is not None:
        if image_size is None:
            raise ValueError("allowed_border needs image_size=(height, width)")
        height, width = (float(v) for v in image_size)
        b = float(allowed_border)
        inside = ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b)
                  & (anchors[:, 2] <= width + b) & (anchors[:, 3] <= height + b))
        matches = tf.where(inside[None], matches, matching.IGNORE)
    labels = matching.matched_labels(matches)
    return labels, _encode_matched(matches, gt_boxes, anchors[None], weights), matches


def ssd_targets(default_boxes, gt_boxes, gt_classes, num_objects, threshold: float = 0.5,
                weights=box_ops.HEAD_BOX_WEIGHTS):
    """Class labels (0 = background) and box targets of every SSD default box (`matching.ssd_match`).

    Returns `(labels [B, A] int32, target_deltas [B, A, 4], matches [B, A])`.
    """
    default_boxes = tf.cast(tf.convert_to_tensor(default_boxes), tf.float32)
    gt_boxes = tf.cast(tf.convert_to_tensor(gt_boxes), tf.float32)
    valid = valid_objects(num_objects, tf.shape(gt_boxes)[1])
    iou = box_ops.pairwise_iou(gt_boxes, default_boxes[None])
    matches = matching.ssd_match(iou, threshold, valid)
    labels = matching.matched_labels(matches, gt_classes)
    return labels, _encode_matched(matches, gt_boxes, default_boxes[None], weights), matches


def roi_targets(
    proposals,
    gt_boxes,
    gt_classes,
    num_objects,
    seed,
    num_samples: int = sampling.ROI_BATCH_SIZE_PER_IMAGE,
    positive_fraction: float = sampling.ROI_POSITIVE_FRACTION,
    foreground_threshold: float = 0.5,
    background_threshold: float = 0.5,
    background_min: float = 0.0,
    add_gt_as_proposals: bool = True,
    proposal_valid=None,
    weights=box_ops.HEAD_BOX_WEIGHTS,
):
    """Sample RoIs for the box (and mask) head (Fast R-CNN Sec. 2.3, Faster/Mask R-CNN defaults).

    Foreground: IoU >= 0.5 with a ground truth (label = its class);
    background: IoU in `[background_min, 0.5)` (Fast R-CNN used 0.1, the
    FPN-era references 0); 512 RoIs per image with up to 25 % foreground.
    With `add_gt_as_proposals` the ground-truth boxes join the proposals
    (as torchvision and detectron2 do), so early in training every object
    has foreground RoIs.

    Args:
        proposals: `[B, P, 4]` xyxy (e.g. the RPN's post-NMS boxes).
        gt_boxes, gt_classes, num_objects: padded ground truth.
        seed: int or shape-[2] seed of the sampling.
        proposal_valid: `[B, P]` bool, False for padding proposals.

    Returns dict of `rois [B, S, 4]`, `labels [B, S]` (class, 0 background,
    -1 padding slot), `target_deltas [B, S, 4]`, `matches [B, S]` (ground-truth
    index or < 0; for mask targets) and `valid [B, S]`, `S = num_samples`.
    """
    proposals = tf.cast(tf.convert_to_tensor(proposals), tf.float32)
    gt_boxes = tf.cast(tf.convert_to_tensor(gt_boxes), tf.float32)
    max_objects = tf.shape(gt_boxes)[1]
    gt_valid = valid_objects(num_objects, max_objects)
    if proposal_valid is None:
        proposal_valid = tf.ones(tf.shape(proposals)[:2], tf.bool)
    if add_gt_as_proposals:
        proposals = tf.concat([proposals, gt_boxes], axis=1)
        proposal_valid = tf.concat([tf.cast(proposal_valid, tf.bool), gt_valid], axis=1)
    iou = box_ops.pairwise_iou(gt_boxes, proposals)
    matches = matching.match_boxes(iou, foreground_threshold, background_threshold, False, gt_valid)
    if background_min > 0:
        best = tf.reduce_max(tf.where(gt_valid[..., None], iou, 0.0), axis=1)
        matches = tf.where((matches == matching.NEGATIVE) & (best < background_min), matching.IGNORE, matches)
    matches = tf.where(tf.cast(proposal_valid, tf.bool), matches, matching.IGNORE)
    labels = matching.matched_labels(matches, gt_classes)
    positive, negative = sampling.sample_balanced(labels, num_samples, positive_fraction, seed)
    index, valid = sampling.sampled_indices(positive, negative, num_samples)
    rois = tf.gather(proposals, index, batch_dims=1)
    matches = tf.where(valid, tf.gather(matches, index, batch_dims=1), matching.IGNORE)
    labels = tf.where(valid, tf.gather(labels, index, batch_dims=1), -1)
    deltas = _encode_matched(matches, gt_boxes, rois, weights)
    return {"rois": rois, "labels": labels, "target_deltas": deltas, "matches": matches, "valid": valid}
