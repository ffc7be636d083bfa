"""Independent NumPy transcriptions of torchvision's RoIAlign / RoIPool CPU kernels (loops, tiny sizes).

Written from the kernels' rules (torchvision/csrc/ops/cpu/roi_align_common.h,
roi_pool_kernel.cpp), deliberately in the kernels' own shape - explicit y_low / y_high
branches, per-sample loops - not in the tent / window-table forms used by kerasnets.ops.roi_align / roi_pool.
Features are NHWC here.
"""

from __future__ import annotations

import math

import numpy as np


def bilinear(fmap, y, x):
    """torchvision's bilinear_interpolate on one [H, W, C] map."""
    height, width = fmap.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[2], np.float64)
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high]
            + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high])


def roi_align_ref(features, boxes, indices, output_size, spatial_scale, sampling_ratio, aligned):
    features = np.asarray(features, np.float64)
    ph_n, pw_n = output_size
    out = np.zeros((len(boxes), ph_n, pw_n, features.shape[3]))
    offset = 0.5 if aligned else 0.0
    for r, (box, b) in enumerate(zip(np.asarray(boxes, np.float64), indices)):
        x1, y1, x2, y2 = box * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / ph_n, roi_w / pw_n
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
        count = max(grid_h * grid_w, 1)
        for ph in range(ph_n):
            for pw in range(pw_n):
                acc = np.zeros(features.shape[3])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc += bilinear(features[b], y, x)
                out[r, ph, pw] = acc / count
    return out


def c_round(v):
    """C's round(): half away from zero."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def roi_pool_ref(features, boxes, indices, output_size, spatial_scale):
    """Returns (output [R, PH, PW, C], argmax flat index into [B, H, W] per output or -1)."""
    features = np.asarray(features, np.float32)
    _, height, width, channels = features.shape
    ph_n, pw_n = output_size
    out = np.zeros((len(boxes), ph_n, pw_n, channels), np.float32)
    argmax = np.full(out.shape, -1, np.int64)
    for r, (box, b) in enumerate(zip(np.asarray(boxes, np.float32), indices)):
        x_s, y_s, x_e, y_e = (c_round(float(np.float32(v) * np.float32(spatial_scale))) for v in box)
        roi_w, roi_h = max(x_e - x_s + 1, 1), max(y_e - y_s + 1, 1)
        bin_h = np.float32(roi_h) / np.float32(ph_n)
        bin_w = np.float32(roi_w) / np.float32(pw_n)
        for ph in range(ph_n):
            h0 = min(max(int(math.floor(np.float32(ph) * bin_h)) + y_s, 0), height)
            h1 = min(max(int(math.ceil(np.float32(ph + 1) * bin_h)) + y_s, 0), height)
            for pw in range(pw_n):
                w0 = min(max(int(math.floor(np.float32(pw) * bin_w)) + x_s, 0), width)
                w1 = min(max(int(math.ceil(np.float32(pw + 1) * bin_w)) + x_s, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue
                for c in range(channels):
                    best, where = -np.inf, -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if features[b, h, w, c] > best:
                                best, where = features[b, h, w, c], (b * height + h) * width + w
                    out[r, ph, pw, c] = best
                    argmax[r, ph, pw, c] = where
    return out, argmax


def random_boxes(rng, count, height, width, spatial_scale, half_integers=False):
    """Image-coordinate boxes: normal, tiny, huge (several times the image), outside, inverted."""
    image = np.array([width, height], np.float64) / spatial_scale
    boxes = []
    for i in range(count):
        kind = i % 6
        if kind == 0:  # ordinary, may cross the border
            centre, size = rng.uniform(-0.2, 1.2, 2) * image, rng.uniform(1, 0.9 * image.max(), 2)
        elif kind == 1:  # tiny (< 1 feature pixel)
            centre, size = rng.uniform(0, 1, 2) * image, rng.uniform(0.01, 0.8 / spatial_scale, 2)
        elif kind == 2:  # huge
            centre, size = rng.uniform(0, 1, 2) * image, rng.uniform(2, 5, 2) * image
        elif kind == 3:  # entirely outside
            centre, size = rng.uniform(1.3, 2.0, 2) * image * rng.choice([-1, 1], 2), rng.uniform(1, 20, 2)
        elif kind == 4:  # degenerate / inverted (x2 < x1)
            centre, size = rng.uniform(0, 1, 2) * image, rng.uniform(-3, 3, 2)
        else:  # around the border
            # (centre jittered: a sample exactly on y == H is a float tie between implementations)
            centre = rng.choice([0.0, 1.0], 2) * image + rng.uniform(-0.4, 0.4, 2) / spatial_scale
            size = rng.uniform(1, 6 / spatial_scale, 2)
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2]))
    boxes = np.asarray(boxes)
    if half_integers:  # coordinates that land on .5 after scaling (rounding-mode test)
        boxes = np.round(boxes * spatial_scale * 2) / 2 / spatial_scale
    return boxes.astype("float32")


_TORCH_SCRIPT = """
import sys, numpy as np, torch, torchvision
data = dict(np.load(sys.argv[1]))
feats = torch.from_numpy(np.ascontiguousarray(data["features"].transpose(0, 3, 1, 2)))
rois = torch.from_numpy(np.concatenate([data["indices"][:, None].astype("float32"), data["boxes"]], 1))
size = tuple(int(v) for v in data["output_size"])
if sys.argv[3] == "roi_align":
    out = torchvision.ops.roi_align(feats, rois, size, float(data["scale"]), int(data["sampling_ratio"]),
                                    bool(data["aligned"]))
else:
    out = torchvision.ops.roi_pool(feats, rois, size, float(data["scale"]))
np.save(sys.argv[2], out.numpy().transpose(0, 2, 3, 1))
"""


def torchvision_reference(op, features, boxes, indices, output_size, scale, sampling_ratio=0, aligned=False):
    """torchvision.ops.<op> on NHWC data, or None if torch/torchvision are not installed.

    Runs in a child process: importing torch into a process that already loaded
    TensorFlow can crash it (seen with torch 2.14 / triton), which would take the
    whole test session down.
    """
    import importlib.util
    import os
    import subprocess
    import sys
    import tempfile

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        inputs, output = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npy")
        np.savez(inputs, features=features, boxes=np.asarray(boxes, "float32"), indices=np.asarray(indices),
                 output_size=np.asarray(output_size), scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
        subprocess.run([sys.executable, "-c", _TORCH_SCRIPT, inputs, output, op], check=True)
        return np.load(output)
