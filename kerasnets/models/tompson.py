"""Tompson, Jain, LeCun, Bregler (NIPS 2014): multi-resolution part detector + MRF spatial model.

**Part detector** (the paper's Fig. 2-3, as described by the max-andr/joint-cnn-mrf
reimplementation; sizes here are configurable, paper values in brackets):

* the image enters at full and half resolution ("two resolution banks" with
  the same structure and their own weights);
* each bank: `[5x5 conv + ReLU + 2x2 max-pool] x 2`, then `5x5 conv + ReLU`
  (bank filters [128, 128, 128]);
* the half-resolution bank's features are upsampled x2 (nearest) and
  **added** to the full-resolution bank's;
* two large `9x9` convolutions + ReLU act as a sliding-window fully connected
  layer ([512, 256] in the reimplementation's reading), then a `1x1`
  convolution gives one heatmap per joint at 1/4 of the input resolution.
  The paper's Local Contrast Normalisation of the input is not included.

**Spatial model** (`kerasnets.layers.MRFSpatialModel`, paper Eq. 2)::

    e_A = exp( sum_{v in V_A} log( SoftPlus(w_{A|v}) * ReLU(e_v) + SoftPlus(b_{v->A}) ) )

with large pairwise kernels `w_{A|v}` initialised from the empirical histogram
of joint displacements (`pairwise_displacement_prior`), as the reimplementation's
`prepare_pairwise_distribution.py`.

`build_tompson` returns `(detector, spatial_model)`; the full model is
`spatial_model(detector(images))`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from kerasnets.layers.mrf_spatial_model import MRFSpatialModel, inverse_softplus


def _bank(x, filters, seed, name):
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 5, padding="same", activation="relu",
                          kernel_initializer=keras.initializers.HeNormal(seed=seed + i), name=f"{name}_conv{i}")(x)  # fmt: skip
        if i < 2:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{i}")(x)
    return x


def build_part_detector(input_shape=(64, 64, 3), num_joints=17, bank_filters=(16, 32, 32), fc_filters=(48, 48),
                        seed=0) -> keras.Model:  # fmt: skip
    """Images `[N, H, W, 3]` in [0, 1] -> heatmaps `[N, H/4, W/4, K]` (linear output)."""
    h, w = input_shape[:2]
    if h % 8 or w % 8:
        raise ValueError(f"input height and width must be multiples of 8 (two pools on the half-resolution bank), got {h}x{w}")
    if len(bank_filters) != 3:
        raise ValueError(f"bank_filters needs 3 values (three 5x5 convolutions), got {bank_filters!r}")
    images = keras.Input(input_shape, name="images")
    full = _bank(images, bank_filters, seed, "bank_full")
    half = layers.AveragePooling2D(2, name="half_resolution")(images)
    half = _bank(half, bank_filters, seed + 10, "bank_half")
    half = layers.UpSampling2D(2, interpolation="nearest", name="bank_half_up")(half)
    x = layers.Add(name="banks_add")([full, half])
    for i, f in enumerate(fc_filters):
        x = layers.Conv2D(f, 9, padding="same", activation="relu",
                          kernel_initializer=keras.initializers.HeNormal(seed=seed + 20 + i), name=f"fc_conv{i}")(x)  # fmt: skip
    heatmaps = layers.Conv2D(num_joints, 1, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 30),
                             name="heatmaps")(x)  # fmt: skip
    return keras.Model(images, heatmaps, name="part_detector")


def skeleton_pairs(num_joints, edges, include_self=True):
    """`(A, v)` pairs of a graph: each joint conditioned on itself and its neighbours in `edges`."""
    pairs = [(a, a) for a in range(num_joints)] if include_self else []
    for a, b in edges:
        pairs += [(a, b), (b, a)]
    return sorted(set(pairs))


def build_spatial_model(heatmap_shape, pairs=None, kernel_size=None, prior=None) -> keras.Model:
    """Heatmaps `[N, h, w, K]` -> refined heatmaps; `kernel_size` defaults to `(2h - 1, 2w - 1)`.

    `prior` (optional, `[kh, kw, P]`, positive) initialises `SoftPlus(w)`.
    """
    h, w, k = heatmap_shape
    kernel_size = tuple(kernel_size) if kernel_size is not None else (2 * h - 1, 2 * w - 1)
    init = None
    if prior is not None:
        init = keras.initializers.Constant(inverse_softplus(np.asarray(prior)[..., None]).astype(np.float32))
    inputs = keras.Input(heatmap_shape, name="part_heatmaps")
    out = MRFSpatialModel(k, kernel_size, pairs, kernel_initializer=init, name="mrf")(inputs)
    return keras.Model(inputs, out, name="spatial_model")


def pairwise_displacement_prior(keypoints, pairs, kernel_size, stride, smooth: float = 1.0, floor: float = 1e-3):
    """Kernels `[kh, kw, P]` from the histogram of joint displacements (heatmap pixels), for `MRFSpatialModel`.

    For pair `(A, v)` the displacement `d = round((pos_A - pos_v) / stride)` of
    every person with both joints labelled is counted at `(ch - d_y, cw - d_x)`
    (the layer's cross-correlation convention), Gaussian-blurred by `smooth`
    pixels, normalised to sum 1 and floored at `floor / (kh kw)`.

    Args:
        keypoints: `[N, K, 3]` (x, y, v) in input pixels.
        pairs: `(A, v)` pairs.
        kernel_size: `(kh, kw)`, odd.
        stride: input pixels per heatmap pixel.
    """
    kp = np.asarray(keypoints, np.float64)
    kh, kw = kernel_size
    ch, cw = kh // 2, kw // 2
    out = np.zeros((kh, kw, len(pairs)))
    yy, xx = np.mgrid[-3:4, -3:4]
    blur = np.exp(-(yy**2 + xx**2) / (2 * smooth**2)) if smooth > 0 else (yy == 0) & (xx == 0)
    blur = blur / blur.sum()
    for p, (a, v) in enumerate(pairs):
        ok = (kp[:, a, 2] > 0) & (kp[:, v, 2] > 0)
        d = np.round((kp[ok, a, :2] - kp[ok, v, :2]) / stride).astype(int)
        hist = np.zeros((kh + 6, kw + 6))
        iy, ix = ch - d[:, 1] + 3, cw - d[:, 0] + 3
        inside = (iy >= 3) & (iy < kh + 3) & (ix >= 3) & (ix < kw + 3)
        np.add.at(hist, (iy[inside], ix[inside]), 1.0)
        # blur (a small explicit convolution keeps this NumPy-only)
        blurred = np.zeros_like(hist)
        for dy in range(-3, 4):
            for dx in range(-3, 4):
                blurred += blur[dy + 3, dx + 3] * np.roll(np.roll(hist, dy, 0), dx, 1)
        k = blurred[3:-3, 3:-3]
        total = k.sum()
        k = k / total if total > 0 else np.full((kh, kw), 1.0 / (kh * kw))
        out[..., p] = np.maximum(k, floor / (kh * kw))
    return out.astype(np.float32)
