"""Region proposals from RPN outputs (Faster R-CNN Sec. 3.3; FPN Sec. 4.1 defaults).

Per image: keep the `pre_nms_top_k` highest-objectness anchors of each
feature level, decode their deltas (RPN weights 1, 1, 1, 1, with the
`log(1000/16)` clamp), clip to the image, drop boxes smaller than `min_size`,
run NMS at IoU 0.7 separately per level (levels act as classes, as in
torchvision) and keep the `post_nms_top_k` best boxes overall. Reference
values: torchvision 2000/2000 (train), 1000/1000 (test); the paper 2000
proposals for training and 300 at test time.

Proposals are treated as constants (`stop_gradient`), the "approximate joint
training" of the paper. Shapes are static, so this runs in a `train_step`,
under XLA and in a SavedModel.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.ops import boxes as box_ops
from kerasnets.ops import nms as nms_ops


def generate_proposals(
    objectness_logits,
    box_deltas,
    anchors,
    image_size,
    level_counts=None,
    pre_nms_top_k: int = 2000,
    post_nms_top_k: int = 2000,
    nms_threshold: float = 0.7,
    min_size: float = 1e-3,
    weights=box_ops.RPN_BOX_WEIGHTS,
):
    """Proposals `[B, post_nms_top_k, 4]` with objectness probabilities and a validity mask.

    Args:
        objectness_logits: `[B, A]`; box_deltas: `[B, A, 4]`; anchors: `[A, 4]`.
        image_size: `(height, width)`.
        level_counts: anchors per FPN level in order (default: one level).
        pre_nms_top_k: candidates per level before NMS.
        post_nms_top_k: proposals kept per image.
        nms_threshold: NMS IoU (0.7).
        min_size: minimum box side in pixels.

    Returns:
        dict of `boxes [B, P, 4]`, `scores [B, P]` (sigmoid objectness, 0 for
        padding), `valid [B, P]` bool and `num_proposals [B]`.
    """
    logits = tf.cast(tf.stop_gradient(objectness_logits), tf.float32)
    deltas = tf.cast(tf.stop_gradient(box_deltas), tf.float32)
    anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
    num_anchors = int(anchors.shape[0])
    level_counts = [num_anchors] if level_counts is None else [int(c) for c in level_counts]
    if sum(level_counts) != num_anchors:
        raise ValueError(f"level_counts sum to {sum(level_counts)} but there are {num_anchors} anchors")
    picked, levels, start = [], [], 0
    for level, count in enumerate(level_counts):
        k = min(pre_nms_top_k, count)
        _, idx = tf.math.top_k(logits[:, start:start + count], k=k)
        picked.append(idx + start)
        levels.append(tf.fill(tf.shape(idx), level))
        start += count
    idx = tf.concat(picked, axis=1)
    level_ids = tf.concat(levels, axis=1)
    cand_scores = tf.sigmoid(tf.gather(logits, idx, batch_dims=1))
    cand_boxes = box_ops.decode_boxes(tf.gather(deltas, idx, batch_dims=1), tf.gather(anchors, idx), weights)
    cand_boxes = box_ops.clip_boxes(cand_boxes, image_size)
    wh = cand_boxes[..., 2:] - cand_boxes[..., :2]
    big_enough = tf.reduce_all(wh >= min_size, axis=-1)
    cand_scores = tf.where(big_enough, cand_scores, -1.0)
    keep, num = nms_ops.batched_nms(cand_boxes, cand_scores, level_ids, post_nms_top_k, nms_threshold,
                                    score_threshold=-0.5)
    valid = tf.range(post_nms_top_k)[None, :] < num[:, None]
    boxes = tf.where(valid[..., None], tf.gather(cand_boxes, keep, batch_dims=1), 0.0)
    scores = tf.where(valid, tf.gather(cand_scores, keep, batch_dims=1), 0.0)
    return {"boxes": boxes, "scores": scores, "valid": valid, "num_proposals": num}
