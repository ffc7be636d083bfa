"""Reflection padding along time for `[batch, steps, channels]` sequences."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register


@register
class ReflectionPadding1D(keras.layers.Layer):
    """Pads the time axis with its mirror image, without repeating the edge frame.

    PyTorch's `ReflectionPad1d`: for `x = [x0, x1, x2, x3]` and padding
    `(2, 1)` the output is `[x2, x1, x0, x1, x2, x3, x2]`. Aberman et al.'s
    temporal encoders and decoder pad every convolution this way, so a clip's
    borders see plausible motion instead of zeros. Keras has `ZeroPadding1D`
    only. Lowers to TF's `MirrorPad` (REFLECT), a TFLite builtin.

    Args:
        padding: int (same on both sides) or `(left, right)`; each side must
            be smaller than the number of steps of the input.

    Call arguments:
        inputs: `[batch, steps, channels]`.

    Reference:
        Aberman, Wu, Lischinski, Chen, Cohen-Or. Learning Character-Agnostic
        Motion for Motion Retargeting in 2D. SIGGRAPH 2019, arXiv:1905.01680.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, int):
            padding = (padding, padding)
        padding = tuple(int(p) for p in padding)
        if len(padding) != 2 or min(padding) < 0:
            raise ValueError(f"padding must be a non-negative int or (left, right), got {padding}")
        self.padding = padding

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"ReflectionPadding1D expects [batch, steps, channels], got shape {input_shape}")
        steps = input_shape[1]
        if steps is not None and max(self.padding) >= steps:
            raise ValueError(f"reflection padding {self.padding} needs more than {max(self.padding)} steps, got {steps}")
        self.built = True

    def call(self, inputs):
        if self.padding == (0, 0):
            return inputs
        return ops.pad(inputs, [[0, 0], list(self.padding), [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps + sum(self.padding), input_shape[2])

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding)}
