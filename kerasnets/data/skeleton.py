"""Synthetic 2D people in the COCO 17-keypoint layout: stick figures with keypoint annotations.

The embedded (no-download) data of the `hrnet` recipe. A pose is built from a
small kinematic tree in the image plane (y down), in units of the torso
length (pelvis centre to neck), then scaled, rotated and placed:

* torso: pelvis centre -> neck, tilted `U(-15, 15)` degrees from vertical;
  shoulders and hips on the line perpendicular to it (half-widths 0.36 and
  0.22 torso lengths);
* arms: upper arm (0.55) at an abduction angle `U(-20, 170)` degrees away
  from the body's downward axis, forearm (0.5) bent `U(-30, 150)` degrees at
  the elbow; legs: thigh (0.8) at `U(-20, 70)` degrees, shin (0.75) bent
  `U(-10, 110)` degrees at the knee; each side drawn independently;
* every bone length is scaled by `U(0.9, 1.1)` (body shape) and by a
  foreshortening factor `U(0.65, 1)` (the bone leaving the image plane);
* head: nose 0.38 torso lengths above the neck (tilted `U(-20, 20)`),
  eyes and ears placed around it on a disc of radius 0.22 torso lengths;
* the figure is frontal (the person's left is on the image's right), so a
  mirror image is a valid person with left and right swapped -- the
  assumption behind HRNet's flip test;
* the whole figure is rotated by `N(0, 15)` degrees (clipped to 40), scaled
  so its height is `U(0.6, 0.9)` of the image height and placed so its box
  centre is within 15 % of the image centre (`truncate > 0` lets it leave
  the image).

Rendering (PIL, 2x supersampled then box-filtered): a smooth random colour
gradient with noise and a few random clutter lines as background; torso as a
filled quadrilateral, limbs as thick lines with round joints, head as a disc
with darker eye/nose dots. Visibility: `v=2` for joints inside the image,
`v=0` (and `x = y = 0`, as COCO stores unlabelled joints) outside; the
figures do not model self-occlusion, so `v=1` never occurs.

Keypoint coordinates use the pixel-centre convention of the HRNet code:
pixel `(i, j)` covers `[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`, so
mirroring maps `x -> W - 1 - x`.

`to_coco_keypoints(...)` writes a COCO person-keypoints dict (images,
annotations with `keypoints`, `num_keypoints`, `bbox`, `area`, and the
`person` category with names and skeleton) that pycocotools reads, so OKS AP
runs end to end; `write_coco_keypoint_dir(...)` writes it with PNG images,
the layout the recipe's `data="coco"` loader reads.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

#: COCO person keypoint names, in COCO order.
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: COCO's skeleton, 1-indexed as in the annotation files.
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
#: 0-indexed skeleton edges.
SKELETON = tuple((a - 1, b - 1) for a, b in COCO_SKELETON)
#: Left/right pairs swapped by a horizontal flip (0-indexed; HRNet's flip_pairs).
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
#: COCO's per-keypoint OKS sigmas (pycocotools `kpt_oks_sigmas`).
OKS_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0


def flip_permutation() -> np.ndarray:
    """Index array `p` with `flipped[..., k] = original[..., p[k]]` (left <-> right)."""
    perm = np.arange(NUM_KEYPOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


class PoseSet(NamedTuple):
    """Rendered people: `images [N, H, W, 3]` float32 in [0, 1], `keypoints [N, 17, 3]` (x, y, v),
    `boxes [N, 4]` COCO xywh person boxes (clipped to the image)."""

    images: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray


def _unit(angle):
    """Unit vector at `angle` radians from the image's downward axis, turning toward +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def sample_pose(rng: np.random.Generator) -> np.ndarray:
    """One pose `[17, 2]` in torso units, pelvis centre at the origin, y down, before placement."""
    deg = np.deg2rad
    j = np.zeros((NUM_KEYPOINTS, 2))
    shape = rng.uniform(0.9, 1.1, size=8)  # per-bone body proportions
    fore = rng.uniform(0.65, 1.0, size=8)  # out-of-plane foreshortening
    torso = deg(rng.uniform(-15, 15))
    down = _unit(torso)  # pelvis -> feet direction
    right = np.array([down[1], -down[0]])  # image +x for an upright figure = person's left
    neck = -down * 1.0 * rng.uniform(0.9, 1.1)
    for side, (sh, el, wr, hp, kn, an) in ((1.0, (5, 7, 9, 11, 13, 15)), (-1.0, (6, 8, 10, 12, 14, 16))):
        j[sh] = neck + side * right * 0.36
        j[hp] = side * right * 0.22
        upper = torso + side * deg(rng.uniform(-20, 170))
        j[el] = j[sh] + _unit(upper) * 0.55 * shape[0 if side > 0 else 1] * fore[0 if side > 0 else 1]
        lower = upper + side * deg(rng.uniform(-30, 150)) * rng.choice([-1.0, 1.0])
        j[wr] = j[el] + _unit(lower) * 0.5 * shape[2 if side > 0 else 3] * fore[2 if side > 0 else 3]
        thigh = torso + side * deg(rng.uniform(-20, 70))
        j[kn] = j[hp] + _unit(thigh) * 0.8 * shape[4 if side > 0 else 5] * fore[4 if side > 0 else 5]
        shin = thigh - side * deg(rng.uniform(-10, 110))
        j[an] = j[kn] + _unit(shin) * 0.75 * shape[6 if side > 0 else 7] * fore[6 if side > 0 else 7]
    head_dir = -_unit(torso + deg(rng.uniform(-20, 20)))  # neck -> head (up)
    head_right = np.array([-head_dir[1], head_dir[0]])
    nose = neck + head_dir * 0.38
    j[0] = nose
    j[1] = nose + head_dir * 0.08 + head_right * 0.08
    j[2] = nose + head_dir * 0.08 - head_right * 0.08
    j[3] = nose + head_dir * 0.03 + head_right * 0.19
    j[4] = nose + head_dir * 0.03 - head_right * 0.19
    return j


#: Head disc radius and limb half-thickness in torso units (for boxes and drawing).
HEAD_RADIUS = 0.22
LIMB_WIDTH = 0.12


def _place(pose, rng, height, width, truncate):
    """Rotate, scale and translate a torso-unit pose into pixel coordinates; returns (xy, unit)."""
    angle = np.deg2rad(np.clip(rng.normal(0.0, 15.0), -40.0, 40.0))
    c, s = np.cos(angle), np.sin(angle)
    pts = pose @ np.array([[c, s], [-s, c]])
    lo = pts.min(0) - HEAD_RADIUS
    hi = pts.max(0) + HEAD_RADIUS
    extent = hi - lo
    unit = rng.uniform(0.6, 0.9) * min(height / extent[1], width / extent[0])
    centre = (lo + hi) / 2.0
    shift = rng.uniform(-0.15, 0.15, size=2) * np.array([width, height])
    if truncate > 0 and rng.uniform() < truncate:
        shift = rng.uniform(-0.5, 0.5, size=2) * np.array([width, height])
    target = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) + shift
    return (pts - centre) * unit + target, unit


def _background(rng, size_hw, noise: float = 0.06):
    """Smooth two-colour gradient plus pixel noise, `[H, W, 3]` float32 in [0, 1]."""
    h, w = size_hw
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    a, b = rng.uniform(0.1, 0.9, size=(2, 3)).astype(np.float32)
    t = xx * np.float32(rng.uniform(-1, 1)) + yy * np.float32(rng.uniform(-1, 1))
    t = ((t - t.min()) / (np.ptp(t) + 1e-6))[..., None]
    img = a * (1 - t) + b * t
    if noise:
        img = img + rng.standard_normal(size=(h, w, 3), dtype=np.float32) * np.float32(noise)
    return np.clip(img, 0.0, 1.0)


def render(xy, unit, rng, height, width, supersample: int = 2, noise: float = 0.06, clutter: bool = True) -> np.ndarray:
    """Draw a stick figure with joints `xy [17, 2]` (pixels) on a textured background.

    `noise` is the background's pixel-noise standard deviation and `clutter`
    adds random lines (the defaults are the `generate` images').
    """
    from PIL import Image, ImageDraw

    s = supersample
    bg = _background(rng, (height, width), noise)
    bg = np.repeat(np.repeat(bg, s, axis=0), s, axis=1)
    canvas = Image.fromarray((bg * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    # Clutter: a few random lines in background colours.
    for _ in range(rng.integers(2, 6) if clutter else 0):
        p = rng.uniform(0, 1, size=4) * np.array([width, height, width, height]) * s
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.line([tuple(p[:2]), tuple(p[2:])], fill=col, width=max(1, int(rng.uniform(0.5, 2.0) * s)))

    def px(k):
        return (float((xy[k, 0] + 0.5) * s), float((xy[k, 1] + 0.5) * s))

    torso_col = tuple(int(v) for v in rng.integers(20, 236, size=3))
    limb_col = tuple(int(v) for v in rng.integers(20, 236, size=3))
    skin = tuple(int(v) for v in (rng.uniform(0.55, 0.95) * np.array([255, 210, 180])).astype(int))
    lw = max(2, int(round(2 * LIMB_WIDTH * unit * s)))
    draw.polygon([px(5), px(6), px(12), px(11)], fill=torso_col)
    neck = ((xy[5] + xy[6]) / 2.0 + 0.5) * s
    draw.line([tuple(neck), px(0)], fill=skin, width=max(1, lw // 2))
    for a, b in ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16)):
        draw.line([px(a), px(b)], fill=limb_col, width=lw)
        for k in (a, b):
            x, y = px(k)
            r = lw / 2.0
            draw.ellipse([x - r, y - r, x + r, y + r], fill=limb_col)
    hx, hy = ((xy[3] + xy[4]) / 2.0 + 0.5) * s
    hr = HEAD_RADIUS * unit * s
    draw.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=skin)
    dot = max(1.0, 0.04 * unit * s)
    dark = tuple(int(v * 0.35) for v in skin)
    for k in (0, 1, 2):
        x, y = px(k)
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=dark)
    if s > 1:
        canvas = canvas.resize((width, height), Image.BOX)
    return np.asarray(canvas, np.float32) / 255.0


def _annotate(xy, unit, height, width):
    """COCO keypoints `[17, 3]` and a clipped xywh box for joints `xy` in an H x W image."""
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kp[inside, :2] = xy[inside]
    kp[inside, 2] = 2.0
    pad = max(HEAD_RADIUS, LIMB_WIDTH) * unit
    x0, y0 = np.clip(xy.min(0) - pad, 0, [width - 1, height - 1])
    x1, y1 = np.clip(xy.max(0) + pad, 0, [width - 1, height - 1])
    return kp, np.array([x0, y0, x1 - x0, y1 - y0], np.float32)


def generate(num: int, height: int = 96, width: int = 64, seed: int = 0, truncate: float = 0.0) -> PoseSet:
    """`num` single-person images (person-crop-like), deterministic by `seed`.

    Args:
        num: number of images.
        height, width: image size in pixels.
        seed: the same seed gives the same images and annotations.
        truncate: probability that a figure is placed anywhere (partly outside
            the image, its outside joints get `v=0`).
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if height < 16 or width < 16:
        raise ValueError(f"image size must be at least 16x16, got {height}x{width}")
    if not 0.0 <= truncate <= 1.0:
        raise ValueError(f"truncate must be in [0, 1], got {truncate}")
    rng = np.random.default_rng(seed)
    images = np.zeros((num, height, width, 3), np.float32)
    keypoints = np.zeros((num, NUM_KEYPOINTS, 3), np.float32)
    boxes = np.zeros((num, 4), np.float32)
    for i in range(num):
        pose = sample_pose(rng)
        xy, unit = _place(pose, rng, height, width, truncate)
        images[i] = render(xy, unit, rng, height, width)
        keypoints[i], boxes[i] = _annotate(xy, unit, height, width)
    return PoseSet(images, keypoints, boxes)


def generate_scenes(num: int, height: int = 128, width: int = 128, seed: int = 0, person_fraction: float = 0.6):
    """Larger images each holding one smaller person somewhere (for COCO-style person crops).

    Returns a `PoseSet` whose images are `height x width` with the person
    occupying about `person_fraction` of the image height.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((num, height, width, 3), np.float32)
    keypoints = np.zeros((num, NUM_KEYPOINTS, 3), np.float32)
    boxes = np.zeros((num, 4), np.float32)
    for i in range(num):
        pose = sample_pose(rng)
        xy, unit = _place(pose, rng, height, width, 0.0)
        centre = xy.mean(0)
        k = person_fraction / 0.75
        shift = rng.uniform(-0.2, 0.2, size=2) * np.array([width, height])
        xy = (xy - centre) * k + np.array([(width - 1) / 2, (height - 1) / 2]) + shift
        unit = unit * k
        images[i] = render(xy, unit, rng, height, width)
        keypoints[i], boxes[i] = _annotate(xy, unit, height, width)
    return PoseSet(images, keypoints, boxes)


def person_category() -> dict:
    """The COCO `person` category with keypoint names and the 1-indexed skeleton."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [list(e) for e in COCO_SKELETON],
    }


def to_coco_keypoints(keypoints, boxes, image_size, image_ids=None, file_names=None) -> dict:
    """A COCO person-keypoints ground-truth dict (pycocotools-ready), one person per image.

    Args:
        keypoints: `[N, 17, 3]` (x, y, v).
        boxes: `[N, 4]` xywh person boxes; `area` is the box area (the
            figures have no segmentation).
        image_size: `(height, width)` of every image.
        image_ids: ids (default 1..N).
        file_names: image file names (default `"%06d.png" % id`).
    """
    keypoints = np.asarray(keypoints, np.float64)
    boxes = np.asarray(boxes, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be [N, 17, 3], got {keypoints.shape}")
    if boxes.shape != (len(keypoints), 4):
        raise ValueError(f"boxes must be [N, 4] for {len(keypoints)} people, got {boxes.shape}")
    n = len(keypoints)
    image_ids = list(range(1, n + 1)) if image_ids is None else [int(i) for i in image_ids]
    file_names = [f"{i:06d}.png" for i in image_ids] if file_names is None else list(file_names)
    height, width = image_size
    images, annotations = [], []
    for idx in range(n):
        images.append({"id": image_ids[idx], "file_name": file_names[idx], "height": int(height), "width": int(width)})
        kp = keypoints[idx].copy()
        kp[kp[:, 2] <= 0] = 0.0
        x, y, w, h = (float(v) for v in boxes[idx])
        annotations.append(
            {
                "id": idx + 1,
                "image_id": image_ids[idx],
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": [float(v) for v in kp.reshape(-1)],
                "num_keypoints": int(np.sum(kp[:, 2] > 0)),
                "bbox": [x, y, w, h],
                "area": w * h,
            }
        )
    return {"images": images, "annotations": annotations, "categories": [person_category()]}


def write_coco_keypoint_dir(directory, poses: PoseSet, split: str = "val2017") -> str:
    """Write `poses` as COCO files: `<dir>/annotations/person_keypoints_<split>.json` + `<dir>/<split>/*.png`.

    Returns the annotation path. The layout is COCO's, so the recipe's
    `data="coco"` loader reads it as it reads the real data.
    """
    from PIL import Image

    h, w = poses.images.shape[1:3]
    coco = to_coco_keypoints(poses.keypoints, poses.boxes, (h, w))
    os.makedirs(os.path.join(directory, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(directory, split), exist_ok=True)
    for image, info in zip(poses.images, coco["images"]):
        Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
            os.path.join(directory, split, info["file_name"])
        )
    path = os.path.join(directory, "annotations", f"person_keypoints_{split}.json")
    with open(path, "w") as f:
        json.dump(coco, f)
    return path


def draw_keypoints(image, keypoints, min_score: float = 0.0, scale: int = 4, colour=(255, 40, 40)) -> np.ndarray:
    """Draw keypoints `[17, 2 or 3]` and the COCO skeleton on an `[H, W, 3]` image in [0, 1]; uint8 out.

    The image is enlarged `scale` times first so small crops stay readable. A
    third column is a score/visibility: joints with it `<= min_score` are skipped.
    """
    from PIL import Image, ImageDraw

    img = Image.fromarray((np.clip(np.asarray(image), 0, 1) * 255 + 0.5).astype(np.uint8))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    kp = np.asarray(keypoints, np.float64)
    ok = kp[:, 2] > min_score if kp.shape[1] > 2 else np.ones(len(kp), bool)

    def p(k):
        return ((kp[k, 0] + 0.5) * scale, (kp[k, 1] + 0.5) * scale)

    for a, b in SKELETON:
        if ok[a] and ok[b]:
            draw.line([p(a), p(b)], fill=colour, width=max(1, scale // 2))
    for k in range(len(kp)):
        if ok[k]:
            x, y = p(k)
            r = max(1.5, scale * 0.6)
            left = KEYPOINT_NAMES[k].startswith("left")
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(40, 220, 40) if left else (255, 255, 0))
    return np.asarray(img)
