"""Losses of the Generative Adversarial Trainer (Lee, Han, Lee 2017, arXiv 1705.03387).

With `F` the classifier, `L_F(x, y)` its softmax cross-entropy, the input
gradient `Delta = grad_x L_F(x, y)` and the generator's perturbation `G(Delta)`:

    classifier:  L_C = alpha * L_F(x, y) + (1 - alpha) * L_F(x + G(Delta), y)
    generator:   L_G = c_g * ||G(Delta)||_2^2 - L_F(x + G(Delta), y)

The classifier learns to classify clean and perturbed images; the generator
maximises the classifier's loss on the perturbed image while paying `c_g` per
unit of squared perturbation norm. Both are means over the batch. (Formulas as
recorded in the project's paper notes; alpha and c_g defaults are ours.)
"""

from __future__ import annotations

import tensorflow as tf


def gat_classifier_loss(ce_clean, ce_adversarial, alpha: float = 0.5):
    """`mean(alpha * ce_clean + (1 - alpha) * ce_adversarial)` from per-example cross-entropies."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return tf.reduce_mean(alpha * ce_clean + (1.0 - alpha) * ce_adversarial)


def gat_generator_loss(ce_adversarial, perturbation, c_g: float):
    """`mean(c_g * ||G||_2^2 - ce_adversarial)`; `perturbation` is `[batch, ...]`."""
    if c_g < 0:
        raise ValueError(f"c_g must be >= 0, got {c_g}")
    flat = tf.reshape(perturbation, [tf.shape(perturbation)[0], -1])
    sq_norm = tf.reduce_sum(tf.square(flat), axis=1)
    return tf.reduce_mean(c_g * sq_norm - ce_adversarial)
