"""Keypoint targets and decoding for the Mask R-CNN keypoint head (He et al. 2017, Sec. 5).

"We model a keypoint's location as a one-hot mask, and adopt Mask R-CNN to
predict K masks, one for each of K keypoint types. ... for each visible
ground-truth keypoint, the training target is a one-hot m x m binary mask
where only a single pixel is labeled as foreground" (m = 56), trained with a
softmax cross-entropy over the m^2 positions
(`kerasnets.losses.detection.keypoint_rcnn_loss`).

Target discretisation follows Detectron's `keypoints_to_heatmap`: a keypoint
at `x` inside RoI `(x1, x2)` goes to column `floor((x - x1) * m / (x2 - x1))`,
a keypoint exactly on the right/bottom edge to `m - 1`; keypoints outside the
RoI or not labelled (`v = 0`) are invalid.
"""

from __future__ import annotations

import tensorflow as tf

HEATMAP_SIZE = 56


def keypoint_targets(keypoints, rois, heatmap_size: int = HEATMAP_SIZE):
    """Flat heatmap index and validity of each keypoint relative to its RoI.

    Args:
        keypoints: `[..., R, K, 3]` `(x, y, v)` of each RoI's matched object.
        rois: `[..., R, 4]` xyxy.

    Returns:
        `(index [..., R, K] int32 = y * m + x, valid [..., R, K] bool)`.
    """
    keypoints = tf.cast(tf.convert_to_tensor(keypoints), tf.float32)
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    m = float(heatmap_size)
    x1, y1, x2, y2 = (r[..., None] for r in tf.unstack(rois, axis=-1))
    x, y, v = tf.unstack(keypoints, axis=-1)
    gx = tf.floor((x - x1) * tf.math.divide_no_nan(m, x2 - x1))
    gy = tf.floor((y - y1) * tf.math.divide_no_nan(m, y2 - y1))
    gx = tf.where(tf.equal(x, x2), m - 1, gx)
    gy = tf.where(tf.equal(y, y2), m - 1, gy)
    valid = (gx >= 0) & (gy >= 0) & (gx < m) & (gy < m) & (v > 0) & (x2 > x1) & (y2 > y1)
    index = tf.cast(tf.where(valid, gy * m + gx, 0.0), tf.int32)
    return index, valid


def decode_keypoint_heatmaps(logits, rois):
    """Keypoints `[..., R, K, 3]` `(x, y, score)` from heatmap logits `[..., R, m, m, K]`.

    Each keypoint is placed at the centre of its arg-max heatmap cell mapped
    back into the RoI; the score is the cell's softmax probability. (Detectron
    first resizes the heatmap to the box size with bicubic interpolation,
    which refines the location to below one cell; not done here.)
    """
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    rois = tf.cast(tf.convert_to_tensor(rois), tf.float32)
    m = logits.shape[-2]
    if m is None or logits.shape[-3] != m:
        raise ValueError(f"heatmaps must be square with a static size, got shape {logits.shape}")
    moved = tf.experimental.numpy.moveaxis(logits, -1, -3)  # [..., R, K, m, m]
    flat = tf.reshape(moved, tf.concat([tf.shape(moved)[:-2], [m * m]], 0))
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    score = tf.reduce_max(tf.nn.softmax(flat, axis=-1), axis=-1)
    gy = tf.cast(best // m, tf.float32)
    gx = tf.cast(best % m, tf.float32)
    x1, y1, x2, y2 = (r[..., None] for r in tf.unstack(rois, axis=-1))
    x = x1 + (gx + 0.5) * (x2 - x1) / m
    y = y1 + (gy + 0.5) * (y2 - y1) / m
    return tf.stack([x, y, score], axis=-1)
