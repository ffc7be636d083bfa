"""Stick-figure pictures of 2-D poses of the `motion_pairs` skeleton (PIL)."""

from __future__ import annotations

import numpy as np

from kerasnets.data.motion_skeleton import JOINT_NAMES, LIMBS, ROOT

_RIGHT, _LEFT, _CENTRE = (220, 60, 60), (50, 110, 230), (40, 40, 40)


def _limb_colour(child):
    name = JOINT_NAMES[child]
    if name.startswith("right"):
        return _RIGHT
    if name.startswith("left"):
        return _LEFT
    return _CENTRE


def draw_pose(joints2d, size=(128, 96), box=None, colour=None, background=(255, 255, 255), width=2):
    """Draw one 2-D pose `[15, 2]` as a stick figure; uint8 `[H, W, 3]`.

    `box = (x0, y0, x1, y1)` is the region of joint space mapped into the
    image (aspect kept, 8 % margin); default: the pose's own bounds. Right
    limbs red, left blue, torso and head dark (or all `colour`).
    """
    from PIL import Image, ImageDraw

    joints2d = np.asarray(joints2d, np.float64)
    h, w = size
    if box is None:
        lo, hi = joints2d.min(0), joints2d.max(0)
    else:
        lo, hi = np.asarray(box[:2], np.float64), np.asarray(box[2:], np.float64)
    extent = np.maximum(hi - lo, 1e-6)
    scale = 0.84 * min(w / extent[0], h / extent[1])
    offset = np.array([w, h]) / 2.0 - (lo + hi) / 2.0 * scale
    pts = joints2d * scale + offset
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    for c, p in LIMBS:
        draw.line([tuple(pts[p]), tuple(pts[c])], fill=colour or _limb_colour(c), width=width)
    r = max(1.0, width * 0.9)
    for k, (x, y) in enumerate(pts):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour or _limb_colour(k))
    return np.asarray(img)


def clip_box(*clips, root_relative=True):
    """A shared drawing box `(x0, y0, x1, y1)` for clips `[T, 15, 2]` (root-relative if asked)."""
    pts = []
    for clip in clips:
        clip = np.asarray(clip, np.float64)
        if root_relative:
            clip = clip - clip[:, ROOT : ROOT + 1]
        pts.append(clip.reshape(-1, 2))
    pts = np.concatenate(pts)
    return (*pts.min(0), *pts.max(0))
