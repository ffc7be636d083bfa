"""3D pose metrics of VideoPose3D (Pavllo et al. 2019) and Human3.6M's protocols, in NumPy.

For predictions `p` and ground truth `g` of shape `[..., J, 3]` (any leading
frame/batch axes, same units -- metres in, so x1000 for millimetres):

* **MPJPE** (protocol 1): `mean_{frames, j} ||p_j - g_j||_2`;
* **P-MPJPE** (protocol 2): MPJPE after aligning each frame's prediction to
  its ground truth by a similarity transform (scale `a`, rotation `R` with
  `det R = +1`, translation `t`) minimising `sum_j ||a R p_j + t - g_j||^2`
  (orthogonal Procrustes): with centred `P0 = p - mean(p)`, `G0 = g - mean(g)`
  scaled to unit Frobenius norm, `H = P0^T G0 = U S V^T`, `R = U D V^T` with
  `D = diag(1, 1, sign det(U V^T))`, `a = tr(D S) ||G0|| / ||P0||` (norms
  before scaling) and `t = mean(g) - a mean(p) R`; reflections are excluded;
* **N-MPJPE** (Rhodin et al. 2018): MPJPE after the least-squares scale
  only, `s = sum(p . g) / sum(p . p)` per frame;
* **MPJVE** (mean per-joint velocity error): `mean ||dp/dt - dg/dt||` with
  first differences along the time axis (`axis`, default the first).

`weighted_mpjpe` is the trajectory model's loss `mean(w ||p - g||)`
(w = 1 / z_gt). The differentiable TensorFlow versions used for training
are in `kerasnets.losses.pose3d`.
"""

from __future__ import annotations

import numpy as np


def _pair(pred, target):
    p = np.asarray(pred, np.float64)
    g = np.asarray(target, np.float64)
    if p.shape != g.shape:
        raise ValueError(f"prediction and target shapes differ: {p.shape} vs {g.shape}")
    if p.ndim < 2 or p.shape[-1] not in (2, 3):
        raise ValueError(f"poses must be [..., J, 2 or 3], got {p.shape}")
    return p, g


def mpjpe(pred, target) -> float:
    """Protocol 1: mean Euclidean joint error."""
    p, g = _pair(pred, target)
    return float(np.mean(np.linalg.norm(p - g, axis=-1)))


def weighted_mpjpe(pred, target, weights) -> float:
    """`mean(w * ||p - g||)`, `weights` broadcast against `[..., J]`."""
    p, g = _pair(pred, target)
    return float(np.mean(np.asarray(weights, np.float64) * np.linalg.norm(p - g, axis=-1)))


def procrustes_align(pred, target) -> np.ndarray:
    """Each frame of `pred [..., J, 3]` similarity-aligned (scale, rotation, translation) to `target`."""
    p, g = _pair(pred, target)
    shape = p.shape
    p = p.reshape(-1, *shape[-2:])
    g = g.reshape(-1, *shape[-2:])
    mu_p = p.mean(axis=1, keepdims=True)
    mu_g = g.mean(axis=1, keepdims=True)
    p0, g0 = p - mu_p, g - mu_g
    norm_p = np.sqrt(np.sum(p0**2, axis=(1, 2), keepdims=True))
    norm_g = np.sqrt(np.sum(g0**2, axis=(1, 2), keepdims=True))
    norm_p = np.where(norm_p > 0, norm_p, 1.0)
    norm_g = np.where(norm_g > 0, norm_g, 1.0)
    h = np.matmul(np.swapaxes(p0 / norm_p, 1, 2), g0 / norm_g)  # [N, 3, 3]
    u, s, vt = np.linalg.svd(h)
    # Proper rotation: flip the weakest direction if U V^T is a reflection.
    sign = np.sign(np.linalg.det(np.matmul(u, vt)))
    sign = np.where(sign == 0, 1.0, sign)
    d = np.ones_like(s)
    d[:, -1] = sign
    r = np.matmul(u * d[:, None, :], vt)  # p0 @ r ~ g0
    trace = np.sum(s * d, axis=1)[:, None, None]
    a = trace * norm_g / norm_p
    aligned = a * np.matmul(p - mu_p, r) + mu_g
    return aligned.reshape(shape)


def p_mpjpe(pred, target) -> float:
    """Protocol 2: MPJPE after per-frame similarity Procrustes alignment."""
    return mpjpe(procrustes_align(pred, target), target)


def n_mpjpe(pred, target) -> float:
    """MPJPE after the per-frame least-squares scale `s = sum(p.g) / sum(p.p)`."""
    p, g = _pair(pred, target)
    num = np.sum(p * g, axis=(-2, -1), keepdims=True)
    den = np.sum(p * p, axis=(-2, -1), keepdims=True)
    scale = num / np.where(den > 0, den, 1.0)
    return mpjpe(scale * p, g)


def mean_velocity_error(pred, target, axis: int = 0) -> float:
    """MPJVE: mean `||diff(p) - diff(g)||` along the time `axis` (needs >= 2 frames)."""
    p, g = _pair(pred, target)
    if p.shape[axis] < 2:
        raise ValueError(f"velocity error needs at least 2 frames along axis {axis}, got {p.shape}")
    return float(np.mean(np.linalg.norm(np.diff(p, axis=axis) - np.diff(g, axis=axis), axis=-1)))
