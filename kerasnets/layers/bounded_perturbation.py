"""Squash a raw generator output into a norm-bounded adversarial perturbation."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register

NORMS = ("linf", "l2")


@register
class BoundedPerturbation(keras.layers.Layer):
    """Map an unbounded tensor to a perturbation of norm at most `epsilon` per example.

    The output layer of the Generative Adversarial Trainer's generator (Lee,
    Han, Lee 2017): the generator ends in a tanh so its perturbation stays
    small. With `norm="linf"` (the tanh output scaled by the bound),

        G = epsilon * tanh(h),          so |G_i| < epsilon for every pixel;

    with `norm="l2"` the tanh output is projected onto the L2 ball,

        t = tanh(h),   G = t * min(1, epsilon / ||t||_2)   (per example),

    so ||G||_2 <= epsilon.

    Args:
        epsilon: the bound (> 0).
        norm: `"linf"` or `"l2"`.

    Call arguments:
        inputs: tensor `[batch, ...]` (raw generator output).

    Reference:
        Lee, Han, Lee. Generative Adversarial Trainer: Defense to Adversarial
        Perturbations with GAN. arXiv:1705.03387, 2017.
    """

    def __init__(self, epsilon=0.1, norm="linf", **kwargs):
        super().__init__(**kwargs)
        if not float(epsilon) > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got '{norm}'")
        self.epsilon = float(epsilon)
        self.norm = norm

    def call(self, inputs):
        t = ops.tanh(inputs)
        if self.norm == "linf":
            return self.epsilon * t
        axes = tuple(range(1, len(t.shape)))
        norm = ops.sqrt(ops.sum(ops.square(t), axis=axes, keepdims=True))
        scale = ops.minimum(1.0, self.epsilon / ops.maximum(norm, 1e-12))
        return t * scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "norm": self.norm}
