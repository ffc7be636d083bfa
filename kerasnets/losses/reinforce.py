"""REINFORCE with a learned baseline (Williams 1992), as Strub et al. (IJCAI 2017) train the GuessWhat?! questioner.

An episode is a token sequence; `mask_t` = 1 for the tokens the policy chose
(the questioner's words, not the oracle's answers, not padding). With a final
reward `R` copied to every step (gamma = 1) and a per-step baseline `b_t`:

    policy loss    L_pg = mean_batch  sum_t mask_t * (-log pi(a_t | s_t)) * stop_gradient(R - b_t)
    baseline loss  L_b  = mean_batch  sum_t mask_t * (R - b_t)^2

Minimizing `L_pg` follows the policy gradient `E[(R - b) grad log pi]`: an
action whose return beats the baseline gets more likely, one below it less
likely. The baseline sees the policy's state through a stop-gradient, so `L_b`
only trains the baseline network. The GuessWhat reference sums `L_b` over the
batch too; here both losses average over the batch, so the update does not
depend on the batch size.
"""

from __future__ import annotations

import tensorflow as tf


def reinforce_loss(log_probs, rewards, baseline, mask):
    """`L_pg` (module doc). `log_probs`, `baseline`, `mask` `[B, T]`; `rewards` `[B]` (final, gamma = 1)."""
    log_probs = tf.convert_to_tensor(log_probs, tf.float32)
    mask = tf.cast(mask, log_probs.dtype)
    advantage = tf.stop_gradient(tf.cast(rewards, log_probs.dtype)[:, None] - tf.cast(baseline, log_probs.dtype))
    return tf.reduce_mean(tf.reduce_sum(-log_probs * advantage * mask, axis=1))


def baseline_loss(rewards, baseline, mask):
    """`L_b` (module doc): squared error of the baseline against the final reward on the policy's steps."""
    baseline = tf.convert_to_tensor(baseline, tf.float32)
    mask = tf.cast(mask, baseline.dtype)
    err = tf.cast(rewards, baseline.dtype)[:, None] - baseline
    return tf.reduce_mean(tf.reduce_sum(tf.square(err) * mask, axis=1))
