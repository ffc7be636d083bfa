"""FPN level assignment (Lin et al. 2017, Eq. 1) and multi-level RoIAlign (each box pooled at its level).

Conventions: see `kerasnets.ops.roi_common`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import tensorflow as tf

from kerasnets.ops.roi_align import roi_align
from kerasnets.ops.roi_common import flatten_boxes, normalize_output_size, unflatten


def fpn_levels(boxes, min_level: int = 2, max_level: int = 5, canonical_level: int = 4,
               canonical_size: float = 224.0, eps: float = 1e-6):
    """FPN level of each box (Lin et al. 2017, Eq. 1), int32 with the shape of ``boxes[..., 0]``.

    ``k = floor(k0 + log2(sqrt(w h) / 224 + eps))`` clamped to ``[min_level, max_level]``,
    ``k0 = canonical_level`` (4: a 224-pixel box goes to P4). ``eps`` (1e-6 as in
    torchvision's ``LevelMapper``) keeps zero-area boxes finite (they go to ``min_level``).
    Boxes are image coordinates ``x1, y1, x2, y2``.
    """
    if min_level > max_level:
        raise ValueError(f"min_level ({min_level}) must be <= max_level ({max_level})")
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    w = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    k = tf.floor(canonical_level + tf.math.log(tf.sqrt(w * h) / canonical_size + eps) / math.log(2.0))
    k = tf.where(tf.math.is_nan(k), float(min_level), k)
    return tf.cast(tf.clip_by_value(k, float(min_level), float(max_level)), tf.int32)


def multilevel_roi_align(
    features,
    boxes,
    box_indices=None,
    output_size=7,
    levels: Sequence[int] = (2, 3, 4, 5),
    strides: Sequence[float] | None = None,
    sampling_ratio: int = 2,
    aligned: bool = True,
    canonical_level: int = 4,
    canonical_size: float = 224.0,
    implementation: str = "auto",
):
    """Pool each box at its FPN level (see `fpn_levels`) and return the results in box order.

    Args:
        features: list/tuple of ``[B, H_l, W_l, C]`` maps in the order of ``levels``, or a
            dict keyed by level (``2`` or ``"P2"`` / ``"p2"``).
        boxes, box_indices: as in `roi_align` (image coordinates, ``x1, y1, x2, y2``).
        levels: pyramid levels of the maps (``P_l`` has stride ``2**l``); boxes are
            assigned to ``floor(k0 + log2(sqrt(wh)/224))`` clamped to ``[min(levels), max(levels)]``.
        strides: strides of the maps (default ``2**l``); ``spatial_scale = 1 / stride``.
        Other arguments: as in `roi_align`.
    """
    levels = [int(level) for level in levels]
    if not levels or sorted(levels) != levels or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be a non-empty increasing sequence of ints, got {levels}")
    if levels != list(range(levels[0], levels[-1] + 1)):
        raise ValueError(f"levels must be consecutive (every level between min and max present), got {levels}")
    maps = select_levels(features, levels)
    if strides is None:
        strides = [2.0**level for level in levels]
    if len(strides) != len(levels):
        raise ValueError(f"{len(strides)} strides given for {len(levels)} levels")
    ref = tf.convert_to_tensor(maps[0])
    flat_boxes, indices, batch = flatten_boxes(ref, boxes, box_indices)
    assigned = fpn_levels(flat_boxes, levels[0], levels[-1], canonical_level, canonical_size) - levels[0]
    parts = tf.dynamic_partition(tf.range(tf.shape(flat_boxes)[0]), assigned, len(levels))
    pooled = []
    for i, (fmap, stride) in enumerate(zip(maps, strides)):
        fmap = tf.convert_to_tensor(fmap)
        pooled.append(
            roi_align(fmap, tf.gather(flat_boxes, parts[i]), tf.gather(indices, parts[i]), output_size,
                      1.0 / float(stride), sampling_ratio, aligned, implementation)
        )
    out = tf.dynamic_stitch(parts, pooled)  # back to the original box order
    ph, pw = normalize_output_size(output_size)
    out.set_shape([flat_boxes.shape[0], ph, pw, ref.shape[3]])
    return unflatten(out, batch)


def select_levels(features, levels: Sequence[int]) -> list:
    """The feature maps of ``levels`` from a list/tuple (in level order) or a level-keyed dict."""
    if isinstance(features, Mapping):
        picked = []
        for level in levels:
            for key in (level, str(level), f"P{level}", f"p{level}"):
                if key in features:
                    picked.append(features[key])
                    break
            else:
                raise ValueError(f"no feature map for level {level} in keys {sorted(map(str, features))}")
        return picked
    if isinstance(features, (list, tuple)):
        if len(features) != len(levels):
            raise ValueError(f"{len(features)} feature maps given for levels {list(levels)}")
        return list(features)
    raise ValueError("features must be a list/tuple of maps (one per level) or a dict keyed by level")

