"""Losses of Aberman, Wu et al. (SIGGRAPH 2019), "Learning Character-Agnostic Motion ... in 2D".

Two clips `x1 = x_{111}`, `x2 = x_{222}` (subscripts: motion, body, view)
are encoded; the decoder rebuilds every combination and is compared with
the clip that really shows it (Mixamo renders each motion on each
character; the synthetic data does the same):

    L_rec   = sum_{m,b,v in {1,2}} MSE(D(M(x_m), B(x_b), V(x_v)), x_{mbv})      (8 terms, weight 1)

The 2 terms 111 and 222 are self-reconstruction; the other 6 are cross
reconstruction. Triplet terms make codes agree across the factors they
should ignore (`T(a, p, n) = mean max(||a - p + eps|| - ||a - n + eps|| + margin, 0)`,
PyTorch's `TripletMarginLoss`, margin 1, on flattened codes):

    L_trip = T(M(x_122), M(x_1), M(x_2)) + T(M(x_211), M(x_2), M(x_1))            motion
           + T(B(x_212), B(x_1), B(x_2)) + T(B(x_121), B(x_2), B(x_1))            body
           + T(V(x_221), V(x_1), V(x_2)) + T(V(x_112), V(x_2), V(x_1))            view

and the foot-velocity term compares the feet's global velocity
(`x[t+1] - x[t]` of the ankle channels plus the root velocity at `t+1`) of
every output with its target, in the network's (normalised) space as the
reference code does:

    L_foot = sum_{mbv} MSE(v_foot(out_{mbv}), v_foot(x_{mbv}))                   (weight 0.1; off in the reference's default)

Total: `L_rec + w_trip * L_trip + w_foot * L_foot`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.saving import register

#: The 8 (motion, body, view) combinations, the reference's order.
COMBINATIONS = ("111", "222", "121", "112", "122", "212", "221", "211")
#: (name, code, anchor clip, positive clip, negative clip) of the six triplet terms.
TRIPLETS = (
    ("m_tpl1", "m", "122", "111", "222"),
    ("m_tpl2", "m", "211", "222", "111"),
    ("b_tpl1", "b", "212", "111", "222"),
    ("b_tpl2", "b", "121", "222", "111"),
    ("v_tpl1", "v", "221", "111", "222"),
    ("v_tpl2", "v", "112", "222", "111"),
)
#: Ankle (x, y) channels in the 30-channel layout (right ankle, left ankle).
FOOT_CHANNELS = (20, 21, 26, 27)


def mse(a, b):
    """Mean over every element of `(a - b)^2` (PyTorch `MSELoss()`)."""
    return tf.reduce_mean(tf.square(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def _flat(x):
    x = tf.cast(x, tf.float32)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def pairwise_distance(a, b, eps=1e-6):
    """`||a - b + eps||_2` per example over flattened features (PyTorch's `pairwise_distance`)."""
    return tf.norm(_flat(a) - _flat(b) + eps, axis=-1)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, eps=1e-6):
    """`mean_i max(d(a_i, p_i) - d(a_i, n_i) + margin, 0)`, `d` = `pairwise_distance`."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    d_pos = pairwise_distance(anchor, positive, eps)
    d_neg = pairwise_distance(anchor, negative, eps)
    return tf.reduce_mean(tf.nn.relu(d_pos - d_neg + margin))


def foot_velocity(motion, foot_channels=FOOT_CHANNELS):
    """Global foot velocity `[batch, T-1, 4]` of `[batch, T, C]` sequences.

    `v[t] = x_foot[t+1] - x_foot[t] + root_velocity[t+1]`, the root velocity
    being the last two channels (x, y), repeated for each foot.
    """
    motion = tf.cast(motion, tf.float32)
    feet = tf.gather(motion, list(foot_channels), axis=-1)
    if len(foot_channels) % 2:
        raise ValueError(f"foot_channels must hold (x, y) pairs, got {foot_channels}")
    root = tf.tile(motion[:, 1:, -2:], [1, 1, len(foot_channels) // 2])
    return feet[:, 1:] - feet[:, :-1] + root


def foot_velocity_loss(pred, target, foot_channels=FOOT_CHANNELS):
    """MSE between the foot velocities of `pred` and `target`."""
    return mse(foot_velocity(pred, foot_channels), foot_velocity(target, foot_channels))


def retargeting_losses(
    outputs,
    targets,
    codes=None,
    *,
    triplet_weight=1.0,
    margin=1.0,
    foot_velocity_weight=0.1,
    foot_channels=FOOT_CHANNELS,
):
    """All loss terms and their weighted total (`"loss"`).

    Args:
        outputs: dict combination (`"121"`, ...) -> decoded `[batch, T, C]`;
            any subset of `COMBINATIONS` (e.g. only `"111", "222", "121",
            "212"` for a body-only model).
        targets: dict combination -> the ground-truth clip.
        codes: dict `"m122"`, `"m111"`, ... -> codes for the triplet terms
            (`TRIPLETS`); terms whose codes are missing are skipped.
            `None` or `triplet_weight=0` disables them.
        triplet_weight, margin: triplet weight (1) and margin (1).
        foot_velocity_weight: 0 disables the term.

    Returns:
        dict: `rec_<mbv>` per output, `rec` (their sum), `<x>_tpl<k>`
        (weighted), `triplet`, `foot_vel` (weighted) and `loss`.
    """
    if not outputs:
        raise ValueError("retargeting_losses needs at least one output")
    missing = [k for k in outputs if k not in targets]
    if missing:
        raise ValueError(f"no target for outputs {missing}")
    losses = {}
    rec = tf.constant(0.0)
    for key in outputs:
        losses[f"rec_{key}"] = mse(outputs[key], targets[key])
        rec += losses[f"rec_{key}"]
    losses["rec"] = rec
    total = rec
    triplet = tf.constant(0.0)
    if codes is not None and triplet_weight:
        for name, kind, anchor, pos, neg in TRIPLETS:
            keys = (kind + anchor, kind + pos, kind + neg)
            if all(k in codes for k in keys):
                term = triplet_weight * triplet_margin_loss(*(codes[k] for k in keys), margin=margin)
                losses[name] = term
                triplet += term
        losses["triplet"] = triplet
        total += triplet
    if foot_velocity_weight:
        foot = tf.constant(0.0)
        for key in outputs:
            foot += foot_velocity_weight * foot_velocity_loss(outputs[key], targets[key], foot_channels)
        losses["foot_vel"] = foot
        total += foot
    losses["loss"] = total
    return losses


@register
class FootVelocityLoss(keras.losses.Loss):
    """`MSE(v_foot(y_pred), v_foot(y_true))` for `[batch, T, C]` motion sequences (see `foot_velocity`).

    Args:
        foot_channels: the feet's (x, y) channel pairs; the root velocity is
            the last two channels.
    """

    def __init__(self, foot_channels=FOOT_CHANNELS, name="foot_velocity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.foot_channels = tuple(int(c) for c in foot_channels)

    def call(self, y_true, y_pred):
        diff = foot_velocity(y_pred, self.foot_channels) - foot_velocity(y_true, self.foot_channels)
        return tf.reduce_mean(tf.square(diff), axis=[1, 2])

    def get_config(self):
        return {**super().get_config(), "foot_channels": list(self.foot_channels)}
