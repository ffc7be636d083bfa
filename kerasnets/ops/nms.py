"""Non-maximum suppression with static output shapes (eager, `tf.function`, XLA, SavedModel).

Greedy NMS: take the highest-scoring box, drop every remaining box whose IoU
with it is > `iou_threshold`, repeat. Everything here has a fixed output size
and compiles under XLA: by default TF's `NonMaxSuppressionV4` kernel with
`pad_to_max_output_size=True` per image (what
`tf.image.non_max_suppression_padded` falls back to for single images), or
`tf.image.non_max_suppression_padded`'s batched tiled algorithm
(`implementation="padded"`). `tf.image.combined_non_max_suppression` is not
used: it does not compile under XLA and clips boxes to [0, 1] by default. Per-class NMS uses the coordinate-offset trick: boxes of class
`c` are shifted by `c * (span + 1)` so boxes of different classes never
overlap, and one NMS call handles all classes.

Outputs are padded: `num_valid` / `num_detections` say how many leading
entries are real; padding slots hold index 0, score 0 and class 0.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kerasnets.ops import boxes as box_ops


def _check_common(max_output_size, iou_threshold):
    if int(max_output_size) < 1:
        raise ValueError(f"max_output_size must be >= 1, got {max_output_size}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")


IMPLEMENTATIONS = ("per_image", "padded")


def _nms_per_image(boxes, scores, max_output_size, iou_threshold, score_threshold):
    def one(args):
        box, score = args
        out = tf.raw_ops.NonMaxSuppressionV4(
            boxes=box, scores=score, max_output_size=max_output_size, iou_threshold=iou_threshold,
            score_threshold=score_threshold, pad_to_max_output_size=True,
        )
        return out.selected_indices, out.valid_outputs

    flat_boxes = tf.reshape(boxes, [-1, tf.shape(boxes)[-2], 4])
    flat_scores = tf.reshape(scores, [-1, tf.shape(scores)[-1]])
    indices, num_valid = tf.map_fn(
        one, (flat_boxes, flat_scores),
        fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32), tf.TensorSpec([], tf.int32)),
    )
    batch_shape = tf.shape(scores)[:-1]
    return tf.reshape(indices, tf.concat([batch_shape, [max_output_size]], 0)), tf.reshape(num_valid, batch_shape)


def _nms_padded(boxes, scores, max_output_size, iou_threshold, score_threshold):
    """`tf.image.non_max_suppression_padded` with the kernel's rule: suppress when IoU > `iou_threshold`.

    The tiled algorithm suppresses at IoU >= its threshold (so `0.0` removes nothing: no box can suppress
    another) and counts a kept box only if a coordinate is > 0. So: pass the next float32 above the
    threshold (IoU >= next(t) <=> IoU > t; at least the smallest normal float, as TF may flush denormals),
    and translate images whose boxes reach coordinates <= 0 (IoU is translation invariant; images with
    positive boxes are left bit-identical).
    """
    threshold = max(float(np.nextafter(np.float32(iou_threshold), np.float32(2.0))), float(np.finfo(np.float32).tiny))
    lowest = tf.reduce_min(boxes, axis=[-2, -1], keepdims=True)
    boxes = boxes + tf.where(lowest > 0.0, 0.0, 1.0 - lowest)
    return tf.image.non_max_suppression_padded(
        boxes, scores, max_output_size, iou_threshold=threshold, score_threshold=score_threshold,
        pad_to_max_output_size=True,
    )


def nms(boxes, scores, max_output_size: int, iou_threshold: float = 0.5, score_threshold: float = float("-inf"),
        implementation: str = "per_image"):
    """Greedy NMS on `[..., N, 4]` boxes (any corner order) and `[..., N]` scores.

    Boxes with score <= `score_threshold` are dropped first. A box is suppressed by a kept box when
    their IoU is > `iou_threshold` (as TF's kernel and torchvision): `0.0` keeps only disjoint boxes,
    `1.0` keeps everything.

    Implementations (same results):

    * `"per_image"` (default): TF's `NonMaxSuppressionV4` kernel with
      `pad_to_max_output_size=True`, mapped over the batch (`tf.map_fn`).
      Fast on CPU, fixed-size output, compiles under XLA.
    * `"padded"`: `tf.image.non_max_suppression_padded`, the tiled batched
      algorithm (TPU-style); much slower on CPU, and every new input shape
      costs seconds of tracing when run eagerly.

    Returns:
        `(indices [..., max_output_size] int32, num_valid [...] int32)`, the
        kept indices in descending score order, padded with 0.
    """
    _check_common(max_output_size, iou_threshold)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got '{implementation}'")
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    if boxes.shape.rank is not None and boxes.shape.rank < 2:
        raise ValueError(f"boxes must be [..., N, 4], got shape {boxes.shape}")
    max_output_size = int(max_output_size)
    if implementation == "per_image":
        indices, num_valid = _nms_per_image(boxes, scores, max_output_size, iou_threshold, score_threshold)
    else:
        indices, num_valid = _nms_padded(boxes, scores, max_output_size, iou_threshold, score_threshold)
    slots = tf.range(max_output_size)
    valid = slots < tf.cast(num_valid, tf.int32)[..., None]
    return tf.where(valid, tf.cast(indices, tf.int32), 0), tf.cast(num_valid, tf.int32)


def _class_offsets(boxes, classes):
    lo = tf.reduce_min(boxes, axis=[-2, -1], keepdims=True)
    hi = tf.reduce_max(boxes, axis=[-2, -1], keepdims=True)
    span = hi - lo + 1.0
    return (boxes - lo) + tf.cast(classes, boxes.dtype)[..., None] * span


def batched_nms(boxes, scores, classes, max_output_size: int, iou_threshold: float = 0.5,
                score_threshold: float = float("-inf"), implementation: str = "per_image"):
    """Per-class NMS in one call: boxes only suppress boxes of the same class.

    Args:
        boxes: `[..., N, 4]`; scores: `[..., N]`; classes: `[..., N]` ints.

    Returns `(indices, num_valid)` as `nms`, ranked by score across classes.
    """
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    shifted = _class_offsets(boxes, classes)
    return nms(shifted, scores, max_output_size, iou_threshold, score_threshold, implementation)


def multiclass_nms(
    boxes,
    scores,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    pre_nms_top_k: int | None = 1000,
):
    """Detections from per-class scores: per-class top-k, score floor, per-class NMS, top `max_detections`.

    Args:
        boxes: `[B, N, 4]` (shared by all classes, e.g. SSD) or `[B, N, K, 4]`
            (class-specific, e.g. the Fast R-CNN head without background).
        scores: `[B, N, K]` foreground class probabilities (class id = k + 1).
        max_detections: detections kept per image (100 R-CNN, 200 SSD).
        iou_threshold: NMS IoU (0.5 R-CNN family, 0.45 SSD).
        score_threshold: scores must be > this (0.05 R-CNN family, 0.01 SSD).
        pre_nms_top_k: candidates kept per class before NMS (SSD: 400);
            `None` keeps all.

    Returns:
        dict of `boxes [B, D, 4]`, `scores [B, D]`, `classes [B, D]` int32
        (1..K, 0 for padding), `indices [B, D]` int32 (source box in N) and
        `num_detections [B]` int32, sorted by score.
    """
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    scores = tf.cast(tf.convert_to_tensor(scores), tf.float32)
    if scores.shape.rank != 3:
        raise ValueError(f"scores must be [batch, boxes, classes], got shape {scores.shape}")
    if boxes.shape.rank not in (3, 4):
        raise ValueError(f"boxes must be [batch, boxes, 4] or [batch, boxes, classes, 4], got {boxes.shape}")
    num_boxes = scores.shape[1] if scores.shape[1] is not None else tf.shape(scores)[1]
    num_classes = scores.shape[2]
    if num_classes is None:
        raise ValueError("the number of classes (last axis of scores) must be static")
    k = num_boxes if pre_nms_top_k is None or isinstance(num_boxes, tf.Tensor) else min(pre_nms_top_k, num_boxes)
    per_class = tf.transpose(scores, [0, 2, 1])  # [B, K, N]
    top_scores, top_idx = tf.math.top_k(per_class, k=k)  # [B, K, k]
    batch = tf.shape(scores)[0]
    if boxes.shape.rank == 3:
        cand_boxes = tf.gather(boxes, tf.reshape(top_idx, [batch, -1]), batch_dims=1)
    else:
        per_class_boxes = tf.transpose(boxes, [0, 2, 1, 3])  # [B, K, N, 4]
        cand_boxes = tf.reshape(tf.gather(per_class_boxes, top_idx, batch_dims=2), [batch, -1, 4])
    cand_scores = tf.reshape(top_scores, [batch, -1])
    cand_classes = tf.reshape(tf.broadcast_to(tf.range(1, num_classes + 1)[None, :, None], tf.shape(top_idx)),
                              [batch, -1])
    cand_source = tf.reshape(top_idx, [batch, -1])
    # One never-selected (-inf score) candidate keeps the gathers below valid when there are no boxes.
    cand_boxes = tf.concat([cand_boxes, tf.zeros([batch, 1, 4])], axis=1)
    cand_scores = tf.concat([cand_scores, tf.fill([batch, 1], float("-inf"))], axis=1)
    cand_classes = tf.concat([cand_classes, tf.ones([batch, 1], tf.int32)], axis=1)
    cand_source = tf.concat([cand_source, tf.zeros([batch, 1], tf.int32)], axis=1)
    keep, num = batched_nms(cand_boxes, cand_scores, cand_classes, max_detections, iou_threshold, score_threshold)
    valid = tf.range(max_detections)[None, :] < num[:, None]
    out_boxes = tf.where(valid[..., None], tf.gather(cand_boxes, keep, batch_dims=1), 0.0)
    out_scores = tf.where(valid, tf.gather(cand_scores, keep, batch_dims=1), 0.0)
    out_classes = tf.where(valid, tf.gather(cand_classes, keep, batch_dims=1), 0)
    out_source = tf.where(valid, tf.gather(cand_source, keep, batch_dims=1), 0)
    return {
        "boxes": out_boxes,
        "scores": out_scores,
        "classes": out_classes,
        "indices": out_source,
        "num_detections": num,
    }


def ssd_postprocess(
    class_logits,
    box_deltas,
    default_boxes,
    image_size,
    score_threshold: float = 0.01,
    iou_threshold: float = 0.45,
    max_detections: int = 200,
    pre_nms_top_k: int | None = 400,
    weights=box_ops.HEAD_BOX_WEIGHTS,
):
    """SSD inference (Liu et al. 2016, Sec. 3): decode, softmax, 0.01 floor, per-class NMS at 0.45, top 200.

    Args:
        class_logits: `[B, A, K + 1]` (0 = background); box_deltas: `[B, A, 4]`.
        default_boxes: `[A, 4]` xyxy pixels (`kerasnets.ops.anchors.ssd_default_boxes`).
        image_size: `(height, width)`; decoded boxes are clipped to it.

    Returns the `multiclass_nms` dict.
    """
    boxes = box_ops.decode_boxes(box_deltas, tf.convert_to_tensor(default_boxes)[None], weights)
    boxes = box_ops.clip_boxes(boxes, image_size)
    probs = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[..., 1:]
    return multiclass_nms(boxes, probs, max_detections, iou_threshold, score_threshold, pre_nms_top_k)


def rcnn_postprocess(
    class_logits,
    box_deltas,
    rois,
    image_size,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    roi_valid=None,
    weights=box_ops.HEAD_BOX_WEIGHTS,
):
    """Fast/Faster/Mask R-CNN inference: class-specific decoding, 0.05 floor, per-class NMS at 0.5, top 100.

    Args:
        class_logits: `[B, R, K + 1]` (0 = background).
        box_deltas: `[B, R, C, 4]` with `C = K + 1` (background slot unused) or
            `C = K`; or `[B, R, 4]` for class-agnostic regression.
        rois: `[B, R, 4]` xyxy proposals; image_size: `(height, width)`.
        roi_valid: `[B, R]` bool, False for padding proposals (never detected).

    Returns the `multiclass_nms` dict; `indices` point at the source RoI.
    """
    num_logits = class_logits.shape[-1]
    probs = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[..., 1:]
    if roi_valid is not None:
        probs = tf.where(tf.cast(roi_valid, tf.bool)[..., None], probs, 0.0)
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    box_deltas = tf.cast(tf.convert_to_tensor(box_deltas), tf.float32)
    if box_deltas.shape.rank == 4:
        if box_deltas.shape[2] == num_logits:
            box_deltas = box_deltas[:, :, 1:]
        elif box_deltas.shape[2] != num_logits - 1:
            raise ValueError(f"box_deltas has {box_deltas.shape[2]} classes; expected {num_logits} or {num_logits - 1}")
        boxes = box_ops.decode_boxes(box_deltas, rois[:, :, None], weights)
    else:
        boxes = box_ops.decode_boxes(box_deltas, rois, weights)
    boxes = box_ops.clip_boxes(boxes, image_size)
    return multiclass_nms(boxes, probs, max_detections, iou_threshold, score_threshold, pre_nms_top_k=None)
