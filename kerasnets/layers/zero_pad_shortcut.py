"""The parameter-free "option A" shortcut of CIFAR ResNets (He et al. 2015)."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register


@register
class ZeroPadShortcut(keras.layers.Layer):
    """Identity shortcut that subsamples space and zero-pads the extra channels.

    He et al. (2015), section 3.3, option (A): when a residual block changes
    the feature map from `(H, W, C)` to `(H / s, W / s, C')`, the shortcut
    stays parameter-free:

        shortcut(x) = pad_channels(x[:, ::s, ::s, :], C' - C)

    the `C' - C` new channels are zeros, split evenly before and after the
    existing ones (the CIFAR reference code pads `C'/4` on each side when
    `C' = 2C`). With `strides=1` and `filters=C` it is the identity.

    Args:
        filters: number of output channels `C'` (>= the input's channels).
        strides: spatial subsampling factor `s` (keeps every `s`-th row/column,
            starting at the first, like a 1x1 convolution with stride `s`).

    Call arguments:
        inputs: NHWC tensor.

    Reference:
        He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition.
        CVPR 2016, arXiv:1512.03385.
    """

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters}")
        if int(strides) < 1:
            raise ValueError(f"strides must be >= 1, got {strides}")
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut pads channels only: input has {channels} channels, filters={self.filters}"
            )
        self.built = True

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :] if self.strides > 1 else inputs
        extra = self.filters - x.shape[-1]
        if extra:
            before = extra // 2
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, extra - before]])
        return x

    def compute_output_shape(self, input_shape):
        def sub(d):
            return None if d is None else -(-d // self.strides)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
