"""Argument handling shared by the RoI ops (`roi_align`, `roi_pool`, `multilevel_roi_align`).

Conventions
-----------
* ``features``: NHWC ``[B, H, W, C]``.
* ``boxes``: **image** (pixel) coordinates, order ``x1, y1, x2, y2`` (torchvision's
  order; TensorFlow's `crop_and_resize` uses ``y1, x1, y2, x2`` normalized - not here).
  Either ``[R, 4]`` together with ``box_indices`` ``[R]`` (int, which image of the
  batch each box belongs to), or batched ``[B, N, 4]`` without indices (box ``n`` of
  image ``b``); the output is then ``[R, PH, PW, C]`` or ``[B, N, PH, PW, C]``.
* ``spatial_scale`` maps image coordinates to feature coordinates (``1 / stride``).
* No gradient flows to the boxes (as in torchvision); gradients flow to the features.
"""

from __future__ import annotations

import math

import tensorflow as tf


def normalize_output_size(output_size) -> tuple[int, int]:
    """``7`` or ``(7, 7)`` -> ``(7, 7)``; rejects non-positive sizes."""
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        size = tuple(output_size)
    else:
        raise ValueError(f"output_size must be an int or a pair of ints, got {output_size!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise ValueError(f"output_size must be positive integers, got {output_size!r}")
    return int(size[0]), int(size[1])


def check_spatial_scale(spatial_scale):
    if not (isinstance(spatial_scale, (int, float)) and math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be a positive finite number, got {spatial_scale!r}")
    return float(spatial_scale)


def flatten_boxes(features, boxes, box_indices):
    """Bring boxes to the ``[R, 4]`` + ``[R]`` form. Returns (boxes, indices, batch_shape or None)."""
    if features.shape.rank != 4:
        raise ValueError(f"features must be NHWC [B, H, W, C], got shape {features.shape}")
    boxes = tf.convert_to_tensor(boxes)
    if boxes.shape.rank is None or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have a last dimension of 4 (x1, y1, x2, y2), got shape {boxes.shape}")
    boxes = tf.cast(boxes, tf.float32)
    if boxes.shape.rank == 3:
        if box_indices is not None:
            raise ValueError("box_indices must be None with batched boxes [B, N, 4] (the batch index is implied)")
        shape = tf.shape(boxes)
        flat = tf.reshape(boxes, [-1, 4])
        indices = tf.repeat(tf.range(shape[0], dtype=tf.int32), shape[1])
        return flat, indices, (shape[0], shape[1], boxes.shape[0], boxes.shape[1])
    if boxes.shape.rank == 2:
        if box_indices is None:
            raise ValueError(
                "boxes of shape [R, 4] need box_indices [R] (the image of each box); "
                "or pass batched boxes [B, N, 4]"
            )
        box_indices = tf.convert_to_tensor(box_indices)
        if not box_indices.dtype.is_integer:
            raise ValueError(f"box_indices must be integers, got {box_indices.dtype.name}")
        if box_indices.shape.rank != 1:
            raise ValueError(f"box_indices must have shape [R], got {box_indices.shape}")
        return boxes, tf.cast(box_indices, tf.int32), None
    raise ValueError(f"boxes must be [R, 4] (with box_indices) or [B, N, 4], got shape {boxes.shape}")


def unflatten(out, batch):
    """Undo `flatten_boxes` on an op output ``[R, ...]`` -> ``[B, N, ...]`` (batched boxes only)."""
    if batch is None:
        return out
    b, n, b_static, n_static = batch
    tail = tf.shape(out)[1:]
    result = tf.reshape(out, tf.concat([[b, n], tail], 0))
    result.set_shape([b_static, n_static, *out.shape[1:]])
    return result


def as_float32(features):
    """The ops compute in float32 (and cast the result back to the input dtype)."""
    return features if features.dtype == tf.float32 else tf.cast(features, tf.float32)

