"""Keypoint heatmaps as in HRNet (Sun et al. 2019): Gaussian targets, decoding, flip test.

Conventions of the reference code (leoxiaobin/deep-high-resolution-net.pytorch,
`lib/dataset/JointsDataset.py`, `lib/core/inference.py`, `lib/core/loss.py`),
followed here:

* heatmaps are `[N, h, w, K]` (channels last) at `1/stride` of the input
  (`stride = input_size / heatmap_size`, 4 for HRNet); a keypoint `(x, y)` in
  input pixels sits at `(x / stride, y / stride)` in heatmap pixels (no
  half-pixel shift);
* **target** of joint k: an unnormalised Gaussian centred on the *rounded*
  heatmap location `mu = int(x / stride + 0.5)`, cut to the
  `(6 sigma + 1)^2` window around it,

      H_k(u, v) = exp(-((u - mu_x)^2 + (v - mu_y)^2) / (2 sigma^2))  if |u - mu_x|, |v - mu_y| <= 3 sigma

  (peak 1), and **target weight** `w_k = 1` for a labelled joint (`v > 0`),
  0 if unlabelled or if the window lies fully outside the map (then
  `H_k = 0`);
* **loss**: `kerasnets.losses.heatmaps.joints_mse_loss` (HRNet's `JointsMSELoss`);
* **decoding** (`get_max_preds` + `get_final_preds`): argmax of each map
  (coordinates set to 0 where the max is <= 0), then a quarter-pixel step
  toward the higher neighbour, `p += 0.25 * sign(H(p + e) - H(p - e))` per
  axis, applied only when `1 < px < w - 1` and `1 < py < h - 1` (the
  code's strict inequalities); input-pixel coordinates are `p * stride`;
* **flip test**: run the model on the mirrored input, mirror the heatmaps
  back and swap the left/right channels (`flip_back`), shift them one pixel
  to the right (`SHIFT_HEATMAP: true`; `out[..., 1:] = out[..., :-1]` along
  the width, column 0 kept), and average with the plain prediction.

`decode_heatmaps` uses only ops with TFLite builtin kernels (ARG_MAX,
FLOOR_DIV/FLOOR_MOD, EQUAL, CAST, MUL, SUM, SUB, PAD, GREATER/LESS), so it
can live inside an exported on-device model.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Moved to kerasnets.losses.heatmaps; re-exported for callers of the old place (recipes/hrnet.py).
from kerasnets.losses.heatmaps import joints_mse_loss  # noqa: F401


def _pair(value, what):
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if len(value) != 2:
        raise ValueError(f"{what} must be an int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def gaussian_heatmaps_np(keypoints, image_size, heatmap_size, sigma: float = 2.0):
    """Reference NumPy transcription of HRNet's target generator, one joint at a time.

    Args:
        keypoints: `[K, 3]` (x, y, v) in input pixels for one person.
        image_size, heatmap_size: `(height, width)`.
        sigma: Gaussian standard deviation in heatmap pixels (HRNet: 2).

    Returns:
        `(target [h, w, K] float32, weight [K] float32)`.
    """
    kp = np.asarray(keypoints, np.float64)
    (ih, iw), (hh, hw) = _pair(image_size, "image_size"), _pair(heatmap_size, "heatmap_size")
    stride = (iw / hw, ih / hh)
    k = kp.shape[0]
    target = np.zeros((hh, hw, k), np.float32)
    weight = (kp[:, 2] > 0).astype(np.float32)
    tmp = sigma * 3
    size = int(2 * tmp + 1)
    g_axis = np.arange(size, dtype=np.float64)
    c = size // 2
    g = np.exp(-((g_axis[None, :] - c) ** 2 + (g_axis[:, None] - c) ** 2) / (2 * sigma**2))
    for j in range(k):
        mu_x = int(kp[j, 0] / stride[0] + 0.5)
        mu_y = int(kp[j, 1] / stride[1] + 0.5)
        ul = (int(mu_x - tmp), int(mu_y - tmp))
        br = (int(mu_x + tmp + 1), int(mu_y + tmp + 1))
        if ul[0] >= hw or ul[1] >= hh or br[0] < 0 or br[1] < 0:
            weight[j] = 0.0
        if weight[j] > 0.5:
            gx = (max(0, -ul[0]), min(br[0], hw) - ul[0])
            gy = (max(0, -ul[1]), min(br[1], hh) - ul[1])
            ix = (max(0, ul[0]), min(br[0], hw))
            iy = (max(0, ul[1]), min(br[1], hh))
            target[iy[0] : iy[1], ix[0] : ix[1], j] = g[gy[0] : gy[1], gx[0] : gx[1]]
    return target, weight


def gaussian_heatmaps(keypoints, image_size, heatmap_size, sigma: float = 2.0, subpixel: bool = False):
    """Batched HRNet targets in TensorFlow (for `tf.data` pipelines).

    Args:
        keypoints: `[..., K, 3]` (x, y, v) in input pixels.
        image_size, heatmap_size: `(height, width)`.
        sigma: Gaussian standard deviation in heatmap pixels.
        subpixel: centre the Gaussian on the exact location instead of the
            rounded one (not HRNet's; useful to test the quarter-offset decoding).

    Returns:
        `(target [..., h, w, K], weight [..., K])`, float32; equals
        `gaussian_heatmaps_np` for `subpixel=False`.
    """
    (ih, iw), (hh, hw) = _pair(image_size, "image_size"), _pair(heatmap_size, "heatmap_size")
    kp = tf.convert_to_tensor(keypoints, tf.float32)
    x = kp[..., 0] / (iw / hw)
    y = kp[..., 1] / (ih / hh)
    if subpixel:
        mu_x, mu_y = x, y
    else:  # int(v + 0.5): truncation toward zero, as Python's int()
        mu_x = tf.cast(tf.cast(x + 0.5, tf.int32), tf.float32)
        mu_y = tf.cast(tf.cast(y + 0.5, tf.int32), tf.float32)
    tmp = sigma * 3.0
    # Window test of the reference code on integer corners.
    ul_x = tf.cast(tf.cast(mu_x - tmp, tf.int32), tf.float32)
    ul_y = tf.cast(tf.cast(mu_y - tmp, tf.int32), tf.float32)
    br_x = tf.cast(tf.cast(mu_x + tmp + 1, tf.int32), tf.float32)
    br_y = tf.cast(tf.cast(mu_y + tmp + 1, tf.int32), tf.float32)
    outside = (ul_x >= hw) | (ul_y >= hh) | (br_x < 0) | (br_y < 0)
    weight = tf.where((kp[..., 2] > 0) & ~outside, 1.0, 0.0)
    u = tf.range(hw, dtype=tf.float32)
    v = tf.range(hh, dtype=tf.float32)
    dx = u[None, :] - mu_x[..., None]  # [..., K, w]
    dy = v[None, :] - mu_y[..., None]  # [..., K, h]
    half = float(int(2 * tmp + 1) // 2)
    gx = tf.exp(-tf.square(dx) / (2 * sigma**2)) * tf.cast(tf.abs(dx) <= half, tf.float32)
    gy = tf.exp(-tf.square(dy) / (2 * sigma**2)) * tf.cast(tf.abs(dy) <= half, tf.float32)
    maps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]  # [..., K, h, w]
    rank = len(maps.shape)
    perm = list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3]
    return tf.transpose(maps, perm), weight


def decode_heatmaps(heatmaps):
    """Argmax + quarter-offset decoding; builtin TFLite ops only.

    Args:
        heatmaps: `[N, h, w, K]`.

    Returns:
        `(coords [N, K, 2] (x, y) in heatmap pixels, maxvals [N, K])`.
    """
    hm = tf.convert_to_tensor(heatmaps)
    hm = tf.cast(hm, tf.float32)
    shape = tf.shape(hm)
    h, w = hm.shape[1], hm.shape[2]
    if h is None or w is None:
        raise ValueError("decode_heatmaps needs a static heatmap height and width")
    k = hm.shape[3] if hm.shape[3] is not None else shape[3]
    flat = tf.reshape(tf.transpose(hm, [0, 3, 1, 2]), [shape[0], k, h * w])  # [N, K, hw]
    idx = tf.argmax(flat, axis=-1, output_type=tf.int32)  # [N, K]
    onehot = tf.cast(tf.equal(tf.range(h * w, dtype=tf.int32)[None, None, :], idx[..., None]), tf.float32)
    maxvals = tf.reduce_sum(flat * onehot, axis=-1)
    px = tf.math.floormod(idx, w)
    py = tf.math.floordiv(idx, w)
    # Neighbour differences at every pixel (zero on the border, never used there).
    dx = tf.pad(hm[:, :, 2:, :] - hm[:, :, :-2, :], [[0, 0], [0, 0], [1, 1], [0, 0]])
    dy = tf.pad(hm[:, 2:, :, :] - hm[:, :-2, :, :], [[0, 0], [1, 1], [0, 0], [0, 0]])
    dx_at = tf.reduce_sum(tf.reshape(tf.transpose(dx, [0, 3, 1, 2]), [shape[0], k, h * w]) * onehot, -1)
    dy_at = tf.reduce_sum(tf.reshape(tf.transpose(dy, [0, 3, 1, 2]), [shape[0], k, h * w]) * onehot, -1)
    inner = tf.cast((px > 1) & (px < w - 1) & (py > 1) & (py < h - 1), tf.float32)

    def sign(d):
        return tf.cast(d > 0, tf.float32) - tf.cast(d < 0, tf.float32)

    x = tf.cast(px, tf.float32) + 0.25 * sign(dx_at) * inner
    y = tf.cast(py, tf.float32) + 0.25 * sign(dy_at) * inner
    positive = tf.cast(maxvals > 0, tf.float32)
    coords = tf.stack([x * positive, y * positive], axis=-1)
    return coords, maxvals


def decode_heatmaps_np(heatmaps):
    """NumPy reference of `decode_heatmaps`, a loop transcription of `get_final_preds` (no affine)."""
    hm = np.asarray(heatmaps, np.float64)
    n, h, w, k = hm.shape
    coords = np.zeros((n, k, 2))
    maxvals = np.zeros((n, k))
    for i in range(n):
        for j in range(k):
            m = hm[i, :, :, j]
            idx = int(np.argmax(m.reshape(-1)))
            maxvals[i, j] = m.reshape(-1)[idx]
            px, py = idx % w, idx // w
            c = np.array([px, py], np.float64) if maxvals[i, j] > 0 else np.zeros(2)
            if maxvals[i, j] > 0 and 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([m[py, px + 1] - m[py, px - 1], m[py + 1, px] - m[py - 1, px]])
                c += np.sign(diff) * 0.25
            coords[i, j] = c
    return coords, maxvals


def flip_back(heatmaps, flip_pairs, shift: bool = False):
    """Mirror `[N, h, w, K]` heatmaps along the width and swap the left/right channels.

    With `shift=True` also move them one pixel to the right as HRNet's
    `SHIFT_HEATMAP` (`out[..., 1:, :] = out[..., :-1, :]`, column 0 kept).
    """
    hm = tf.convert_to_tensor(heatmaps)
    k = hm.shape[-1]
    perm = list(range(k))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    out = tf.gather(tf.reverse(hm, axis=[2]), perm, axis=3)
    if shift:
        out = tf.concat([out[:, :, :1, :], out[:, :, :-1, :]], axis=2)
    return out


def flip_test(predict_fn, images, flip_pairs, shift: bool = True):
    """HRNet's flip test: `0.5 * (f(x) + shift(flip_back(f(mirror(x)))))` on `[N, H, W, C]` images."""
    images = tf.convert_to_tensor(images)
    plain = predict_fn(images)
    mirrored = predict_fn(tf.reverse(images, axis=[2]))
    return 0.5 * (plain + flip_back(mirrored, flip_pairs, shift=shift))
