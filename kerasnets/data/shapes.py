"""Synthetic "shapes": the embedded default detection / segmentation / keypoint data (no download).

Each image shows 1..`max_objects` circles, squares and triangles (classes 1, 2,
3) in random colours, sizes and rotations on a textured background (smooth
noise, a linear gradient or stripes). Objects are painted in order, so later
ones occlude earlier ones; the annotations describe what is **visible**:

* `masks` are the visible pixels of each instance (a pixel belongs to a shape
  when its centre `(x + 0.5, y + 0.5)` lies inside it);
* `boxes` are the tight boxes of the visible masks (xyxy, `x2 = last column + 1`);
* placements that would hide more than `1 - min_visible` of an earlier
  object are rejected, so every annotated object is clearly visible;
* `keypoints` are 5 points per object, `center, top, right, bottom, left`:
  the centre and the four extreme points of the whole shape (ExtremeNet's
  definition; ties on a flat edge take its midpoint), COCO-style
  `(x, y, v)` with `v = 2` if visible, `v = 1` if occluded by a later shape.

Image `i` of a set is generated from `numpy.random.default_rng([seed, i])`,
so any image can be regenerated on its own and sets are deterministic.
`to_coco` writes the COCO ground truth, so the real COCO evaluator runs on
this data exactly as on real data.
"""

from __future__ import annotations

import math

import numpy as np

from kerasnets.data import detection

CLASS_NAMES = ("circle", "square", "triangle")
KEYPOINT_NAMES = ("center", "top", "right", "bottom", "left")
# keypoint type after a horizontal flip (right <-> left), for `detection.random_horizontal_flip`
KEYPOINT_FLIP_MAP = (0, 1, 4, 3, 2)
# OKS falloff per keypoint for COCOeval (COCO's own sigmas are 0.025..0.107 for body parts).
KEYPOINT_OKS_SIGMAS = np.full(len(KEYPOINT_NAMES), 0.05)
BACKGROUNDS = ("noise", "gradient", "stripes")


def categories():
    """COCO category dicts of the shapes classes (ids 1..3, with keypoint names)."""
    return [
        {"id": i + 1, "name": name, "supercategory": "shape", "keypoints": list(KEYPOINT_NAMES), "skeleton": []}
        for i, name in enumerate(CLASS_NAMES)
    ]


def _background(rng, height, width, kind, colors):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def colour():
        c = rng.uniform(0, 255, 3) if colors else np.full(3, rng.uniform(0, 255))
        return c.astype(np.float32)

    if kind == "noise":
        gh, gw = rng.integers(3, 8, 2)
        coarse = rng.uniform(0, 1, (gh, gw, 1)).astype(np.float32)
        # bilinear upsampling of a coarse grid -> smooth blotches between two colours
        ys = np.linspace(0, gh - 1, height)
        xs = np.linspace(0, gw - 1, width)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        t = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0][:, x1] * (1 - fy) * fx
             + coarse[y1][:, x0] * fy * (1 - fx) + coarse[y1][:, x1] * fy * fx)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        proj = xx * math.cos(angle) + yy * math.sin(angle)
        t = ((proj - proj.min()) / max(proj.max() - proj.min(), 1e-6))[..., None]
    elif kind == "stripes":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(6, 20)
        proj = xx * math.cos(angle) + yy * math.sin(angle)
        t = (0.5 + 0.5 * np.sin(2 * math.pi * proj / period))[..., None]
    else:
        raise ValueError(f"unknown background '{kind}'; expected one of {BACKGROUNDS}")
    a, b = colour(), colour()
    return a * (1 - t) + b * t


def _pixel_centres(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return xx + 0.5, yy + 0.5


def _polygon_mask(vertices, height, width):
    """Pixels whose centre lies inside a convex polygon (vertices in counter-clockwise angle order)."""
    xc, yc = _pixel_centres(height, width)
    inside = np.ones((height, width), bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        inside &= (x1 - x0) * (yc - y0) - (y1 - y0) * (xc - x0) >= 0
    return inside


def _extreme_points(vertices):
    """top, right, bottom, left extreme points of a polygon (midpoint of tied vertices)."""
    v = np.asarray(vertices)
    out = []
    for axis, pick in ((1, np.min), (0, np.max), (1, np.max), (0, np.min)):
        target = pick(v[:, axis])
        tied = v[np.abs(v[:, axis] - target) < 1e-6]
        out.append(tied.mean(axis=0))
    return out


def _shape(rng, cls, size, cx, cy, height, width):
    """Full (unoccluded) mask and the 5 keypoints of one shape."""
    if cls == 1:  # circle, diameter = size
        r = size / 2
        xc, yc = _pixel_centres(height, width)
        mask = (xc - cx) ** 2 + (yc - cy) ** 2 <= r * r
        points = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    else:  # square (side = size) or equilateral triangle (side = size), random rotation
        corners = 4 if cls == 2 else 3
        radius = size / math.sqrt(2) if cls == 2 else size / math.sqrt(3)
        theta = rng.uniform(0, 2 * math.pi / corners)
        angles = theta + 2 * math.pi * np.arange(corners) / corners
        vertices = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        mask = _polygon_mask(vertices, height, width)
        points = _extreme_points(vertices)
    return mask, np.array([(cx, cy)] + [tuple(p) for p in points], np.float32)


def _visible_at(mask, x, y):
    """True if a pixel of `mask` lies within 1 px of point (x, y)."""
    height, width = mask.shape
    cx, cy = int(math.floor(x)), int(math.floor(y))
    y0, y1 = max(cy - 1, 0), min(cy + 2, height)
    x0, x1 = max(cx - 1, 0), min(cx + 2, width)
    return bool(mask[y0:y1, x0:x1].any()) if y0 < y1 and x0 < x1 else False


def _colour_far_from(rng, reference, colors, min_distance=90.0, tries=20):
    best, best_d = None, -1.0
    for _ in range(tries):
        c = rng.uniform(0, 255, 3) if colors else np.full(3, rng.uniform(0, 255))
        d = float(np.linalg.norm(c - reference))
        if d >= min_distance:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def shapes_example(
    index: int,
    *,
    seed: int = 0,
    image_size=(128, 128),
    min_objects: int = 1,
    max_objects: int = 4,
    min_size: float = 0.15,
    max_size: float = 0.45,
    colors: bool = True,
    min_visible: float = 0.6,
    noise: float = 4.0,
    backgrounds=BACKGROUNDS,
) -> dict:
    """Image `index` of the shapes set fixed by `seed` (see the module docstring for the format).

    Args:
        image_size: `(height, width)` (or an int for square images).
        min_objects, max_objects: objects per image (uniform); if an object
            cannot be placed without hiding others, the image has fewer.
        min_size, max_size: shape size (circle diameter, polygon side) as a
            fraction of the shorter image side.
        colors: random RGB colours (else grey levels).
        min_visible: every annotated object keeps at least this share of its area visible.
        noise: std of the pixel noise added on top (uint8 units).
        backgrounds: texture kinds to draw from.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if height < 16 or width < 16:
        raise ValueError(f"image_size must be at least 16x16, got {(height, width)}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not 0 < min_size <= max_size < 1:
        raise ValueError(f"need 0 < min_size <= max_size < 1, got {min_size}, {max_size}")
    if not 0 < min_visible <= 1:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
    rng = np.random.default_rng([int(seed), int(index)])
    kind = backgrounds[int(rng.integers(len(backgrounds)))]
    image = _background(rng, height, width, kind, colors)
    reference = image.reshape(-1, 3).mean(axis=0)
    short = min(height, width)
    wanted = int(rng.integers(min_objects, max_objects + 1))
    full_masks, visible, classes, keypoints, colours = [], [], [], [], []
    for _ in range(wanted):
        for _attempt in range(30):
            cls = int(rng.integers(1, len(CLASS_NAMES) + 1))
            size = rng.uniform(min_size, max_size) * short
            extent = size / 2 if cls == 1 else (size / math.sqrt(2) if cls == 2 else size / math.sqrt(3))
            cx = rng.uniform(extent, width - extent)
            cy = rng.uniform(extent, height - extent)
            mask, points = _shape(rng, cls, size, cx, cy, height, width)
            if mask.sum() < 4:  # degenerate at tiny image sizes
                continue
            new_visible = [v & ~mask for v in visible]
            if all(nv.sum() >= min_visible * f.sum() for nv, f in zip(new_visible, full_masks)):
                break
        else:
            continue
        visible = new_visible + [mask.copy()]
        full_masks.append(mask)
        classes.append(cls)
        keypoints.append(points)
        colours.append(_colour_far_from(rng, reference, colors))
    for mask, colour in zip(full_masks, colours):
        image[mask] = colour
    if noise > 0:
        image = image + rng.normal(0, noise, image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    n = len(classes)
    masks = np.stack(visible).astype(np.uint8) if n else np.zeros((0, height, width), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    kps = np.zeros((n, len(KEYPOINT_NAMES), 3), np.float32)
    for i in range(n):
        ys, xs = np.nonzero(masks[i])
        boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        for k, (x, y) in enumerate(keypoints[i]):
            kps[i, k] = [x, y, 2.0 if _visible_at(masks[i], x, y) else 1.0]
    return {
        "image": image,
        "boxes": boxes,
        "classes": np.asarray(classes, np.int32),
        "masks": masks,
        "keypoints": kps,
        "image_id": int(index),
    }


def generate_shapes(num_images: int, *, seed: int = 0, start_index: int = 0, **kwargs) -> list[dict]:
    """`num_images` examples (`shapes_example(start_index + i, seed=seed, **kwargs)`)."""
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    return [shapes_example(start_index + i, seed=seed, **kwargs) for i in range(num_images)]


def to_coco(examples, file_names=None) -> dict:
    """COCO ground-truth dict of shapes examples (RLE masks, 5 keypoints, 3 categories)."""
    return detection.examples_to_coco(examples, categories(), file_names)


def shapes_splits(num_train: int = 512, num_val: int = 64, *, seed: int = 0, **kwargs):
    """Disjoint `(train, val)` example lists: validation images use indices after the training ones."""
    train = generate_shapes(num_train, seed=seed, **kwargs)
    val = generate_shapes(num_val, seed=seed, start_index=num_train, **kwargs)
    return train, val
