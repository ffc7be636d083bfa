"""HRNet's keypoint heatmap loss (Sun et al. 2019; `lib/core/loss.py` of the reference code).

`JointsMSELoss` with `use_target_weight`: the mean squared error between predicted and
target heatmaps (`kerasnets.ops.heatmaps.gaussian_heatmaps`), each joint's map weighted by
its target weight (1 labelled, 0 not):

    L = 1/K sum_k 0.5 * mean_{n,u,v} (w_nk * (P_nk(u,v) - H_nk(u,v)))^2
"""

from __future__ import annotations

import tensorflow as tf


def joints_mse_loss(pred, target, weight):
    """HRNet's `JointsMSELoss` (target weights on): `1/K sum_k 0.5 * mean((w_k * (P_k - H_k))^2)`.

    `pred`, `target`: `[N, h, w, K]`; `weight`: `[N, K]`. Returns a scalar.
    """
    pred = tf.convert_to_tensor(pred, tf.float32)
    target = tf.cast(target, pred.dtype)
    w = tf.cast(weight, pred.dtype)[:, None, None, :]
    return 0.5 * tf.reduce_mean(tf.square(w * (pred - target)))
