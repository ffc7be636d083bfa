"""Anchors (Faster R-CNN, FPN) and default boxes (SSD) as static xyxy pixel arrays.

Detection models in kerasnets take a fixed input size, so anchors are
computed once in NumPy (float32) and become constants of the model graph.

**Faster R-CNN anchors** (Ren et al. 2015, Sec. 3.1.1): at every position of a
feature map with stride `s`, `k = len(sizes) * len(aspect_ratios)` boxes of
area `size**2` and aspect ratio `r = height / width`:

    h = size * sqrt(r),  w = size / sqrt(r),  base box = round([-w, -h, w, h] / 2)

centred at `((x + offset) * s, (y + offset) * s)`. With `offset=0` (default)
the layout equals torchvision's `AnchorGenerator`; `offset=0.5` centres the
anchors on the cells. Order: row-major over positions (y, then x), then the
`k` anchors (aspect ratio outer, size inner), i.e. the order of a conv head's
output `[H, W, k * 4]` reshaped to `[H * W * k, 4]`. The paper's default is
sizes (128, 256, 512) x ratios (0.5, 1, 2) at stride 16; FPN puts one size per
level: 32, 64, 128, 256, 512 at strides 4, 8, 16, 32, 64.

**SSD default boxes** (Liu et al. 2016, Sec. 2.2): for `m` feature maps,

    s_k = s_min + (s_max - s_min) (k - 1) / (m - 1),   k = 1..m  (s_min=0.2, s_max=0.9)

boxes of width `s_k sqrt(a)` and height `s_k / sqrt(a)` (relative to the
image) for `a` in {1, 2, 1/2, 3, 1/3}, plus an extra square box of scale
`s'_k = sqrt(s_k s_{k+1})`; centres `((i + 0.5) / |f_k|, (j + 0.5) / |f_k|)`.
For the last map `s_{m+1}` continues the same formula (`k = m + 1`), as the
original Caffe SSD300 sizes do; pass `scales` (m + 1 values) to override.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pair(value, name):
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or any(v <= 0 for v in value):
        raise ValueError(f"{name} must be a positive number or a (height, width) pair, got {value}")
    return value


def _positive_tuple(values, name):
    if isinstance(values, (int, float, np.integer, np.floating)):
        values = (values,)
    values = tuple(float(v) for v in values)
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{name} must be non-empty positive numbers, got {values}")
    return values


def base_anchors(sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), round_to_int: bool = True):
    """`[len(aspect_ratios) * len(sizes), 4]` zero-centred anchors (aspect ratio = height / width)."""
    sizes = np.asarray(_positive_tuple(sizes, "sizes"), np.float64)
    ratios = np.asarray(_positive_tuple(aspect_ratios, "aspect_ratios"), np.float64)
    h_ratio = np.sqrt(ratios)
    w_ratio = 1.0 / h_ratio
    ws = (w_ratio[:, None] * sizes[None, :]).reshape(-1)
    hs = (h_ratio[:, None] * sizes[None, :]).reshape(-1)
    base = np.stack([-ws, -hs, ws, hs], axis=1) / 2.0
    if round_to_int:
        base = np.round(base)
    return base.astype(np.float32)


def num_anchors_per_location(sizes, aspect_ratios) -> int:
    """`len(sizes) * len(aspect_ratios)`."""
    return len(_positive_tuple(sizes, "sizes")) * len(_positive_tuple(aspect_ratios, "aspect_ratios"))


def grid_anchors(feature_size, stride, base, offset: float = 0.0):
    """Shift `base` anchors `[k, 4]` to every cell of a `feature_size = (H, W)` map -> `[H * W * k, 4]`."""
    fh, fw = (int(v) for v in _pair(feature_size, "feature_size"))
    sy, sx = _pair(stride, "stride")
    base = np.asarray(base, np.float32).reshape(-1, 4)
    ys = (np.arange(fh, dtype=np.float32) + offset) * sy
    xs = (np.arange(fw, dtype=np.float32) + offset) * sx
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    shifts = np.stack([cx, cy, cx, cy], axis=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4).astype(np.float32)


def anchors_for_feature_map(
    feature_size, stride, sizes=(128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0), offset: float = 0.0
):
    """All anchors of one feature map, `[H * W * len(sizes) * len(aspect_ratios), 4]` xyxy pixels."""
    return grid_anchors(feature_size, stride, base_anchors(sizes, aspect_ratios), offset)


def multilevel_anchors(
    feature_sizes: Sequence,
    strides: Sequence,
    sizes: Sequence = (32, 64, 128, 256, 512),
    aspect_ratios=(0.5, 1.0, 2.0),
    offset: float = 0.0,
):
    """FPN anchors over several levels, concatenated level by level.

    `sizes[i]` is a number or a tuple of numbers for level `i`. Returns
    `(anchors [N, 4], counts)` with `counts[i]` anchors from level `i`.
    """
    feature_sizes, strides, sizes = list(feature_sizes), list(strides), list(sizes)
    if not (len(feature_sizes) == len(strides) == len(sizes)):
        raise ValueError(
            f"feature_sizes ({len(feature_sizes)}), strides ({len(strides)}) and sizes ({len(sizes)}) "
            "need one entry per level"
        )
    levels = [
        anchors_for_feature_map(f, s, z, aspect_ratios, offset) for f, s, z in zip(feature_sizes, strides, sizes)
    ]
    return np.concatenate(levels, axis=0), [len(a) for a in levels]


def ssd_scales(num_levels: int, s_min: float = 0.2, s_max: float = 0.9):
    """`[s_1, ..., s_m, s_{m+1}]`: the paper's linear scales plus one more step for `s'_m`."""
    if num_levels < 2:
        raise ValueError(f"SSD scales need at least 2 feature maps, got {num_levels}")
    if not 0.0 < s_min < s_max:
        raise ValueError(f"need 0 < s_min < s_max, got s_min={s_min}, s_max={s_max}")
    step = (s_max - s_min) / (num_levels - 1)
    return [s_min + step * k for k in range(num_levels + 1)]


def num_default_boxes_per_location(aspect_ratios) -> int:
    """`2 + 2 * len(aspect_ratios)`: squares at `s_k` and `s'_k`, plus `r` and `1/r` for each ratio."""
    return 2 + 2 * len(_positive_tuple(aspect_ratios, "aspect_ratios")) if aspect_ratios else 2


def ssd_default_boxes(
    feature_sizes: Sequence,
    image_size,
    aspect_ratios: Sequence = None,
    scales: Sequence | None = None,
    s_min: float = 0.2,
    s_max: float = 0.9,
    steps: Sequence | None = None,
    clip: bool = False,
):
    """SSD default boxes for `m = len(feature_sizes)` maps, `[N, 4]` xyxy pixels.

    Args:
        feature_sizes: `(H_k, W_k)` (or an int for square maps) of each map.
        image_size: `(height, width)` of the input image.
        aspect_ratios: per map, the ratios `r > 1` used as `r` and `1/r`
            (default `(2, 3)` on every map: {1, 2, 3, 1/2, 1/3} + `s'_k`).
        scales: `m + 1` scales overriding `s_min`/`s_max`.
        steps: per map, the pixel stride between centres (SSD300's
            `8, 16, 32, 64, 100, 300`); default: `image / feature size`.
        clip: clip boxes to the image.

    Order per location: `s_k` square, `s'_k` square, then `(r, 1/r)` per ratio.
    """
    m = len(feature_sizes)
    img_h, img_w = (float(v) for v in _pair(image_size, "image_size"))
    if aspect_ratios is None:
        aspect_ratios = [(2.0, 3.0)] * m
    if len(aspect_ratios) != m:
        raise ValueError(f"aspect_ratios needs one entry per feature map ({m}), got {len(aspect_ratios)}")
    scales = list(scales) if scales is not None else ssd_scales(m, s_min, s_max)
    if len(scales) != m + 1:
        raise ValueError(f"scales needs m + 1 = {m + 1} values (s_1..s_m and s_(m+1)), got {len(scales)}")
    if steps is not None and len(steps) != m:
        raise ValueError(f"steps needs one entry per feature map ({m}), got {len(steps)}")
    out = []
    for k, fsize in enumerate(feature_sizes):
        fh, fw = (int(v) for v in _pair(fsize, "feature_size"))
        sh, sw = _pair(steps[k], "step") if steps is not None else (img_h / fh, img_w / fw)
        s_k, s_next = scales[k], scales[k + 1]
        shapes = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]  # (relative w, relative h)
        for r in _positive_tuple(aspect_ratios[k], "aspect_ratios") if aspect_ratios[k] else ():
            shapes.append((s_k * math.sqrt(r), s_k / math.sqrt(r)))
            shapes.append((s_k / math.sqrt(r), s_k * math.sqrt(r)))
        wh = np.asarray(shapes, np.float64) * np.array([img_w, img_h])
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * sh, (np.arange(fw) + 0.5) * sw, indexing="ij")
        centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)
        boxes = np.concatenate([centres - wh[None] / 2, centres + wh[None] / 2], axis=-1).reshape(-1, 4)
        out.append(boxes)
    boxes = np.concatenate(out, axis=0)
    if clip:
        boxes = np.clip(boxes, 0.0, [img_w, img_h, img_w, img_h])
    return boxes.astype(np.float32)
