"""VideoPose3D's temporal convolution block: valid dilated 1-D conv + BN + ReLU + dropout, sliced residual."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register


def _pytorch_conv_init(seed):
    # PyTorch's default Conv1d init (kaiming_uniform with a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    # i.e. variance 1/(3 fan_in); the reference model keeps it.
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


@register
class TemporalConvBlock(keras.layers.Layer):
    """One block of the VideoPose3D temporal convolutional model (Pavllo et al. 2019, Sec. 3).

    On a sequence `x [B, T, C_in]` every convolution is *valid* (no padding),
    so a block with filter width `k` and dilation `d` shortens the sequence by
    `(k - 1) d` frames. With `residual=False` (the model's input "expand"
    block):

        y = Dropout(ReLU(BN(Conv1D_{k, d}(x))))

    and with `residual=True` (C_in == filters):

        h = Dropout(ReLU(BN(Conv1D_{k, d}(x))))
        y = x[:, p + s : T - p + s] + Dropout(ReLU(BN(Conv1D_{1}(h))))

    where `p = (k - 1) d / 2` and the residual is **sliced** to the frames the
    convolution kept instead of zero-padding the convolution: the centre
    frames (`s = 0`), or with `causal=True` the last ones (`s = (k // 2) d`),
    so the block's output at frame `t` is aligned with its input frame
    `t + 2p` and sees no later frame. All convolutions have no bias (BN
    follows); BN uses `momentum` (Keras convention; the reference's PyTorch
    momentum 0.1 is 0.9 here) and `epsilon` (PyTorch's 1e-5). The BN momentum
    is a non-trainable scalar weight so a training loop can anneal it
    (VideoPose3D decays PyTorch momentum 0.1 -> 0.001, i.e. 0.9 -> 0.999)
    with `set_bn_momentum` without retracing. Batch statistics are over batch
    and time; the moving variance tracks the biased batch variance (Keras'
    convention; PyTorch tracks the unbiased one, a factor `n / (n - 1)` that is
    negligible at the reference's 1024-frame batches).

    **Strided mode** (`strided=True` at call time) is the paper's optimised
    single-frame training model: the same kernels applied with stride `k`
    and no dilation, residual `x[:, s' + k // 2 :: k]` (`s' = k // 2` when
    causal). A stack of strided blocks fed exactly the receptive field
    computes one output frame equal to the dilated stack's, without the
    intermediate frames no output needs.

    Args:
        filters: output channels `C`.
        kernel_size: odd filter width `k`.
        dilation_rate: dilation `d` of the (non-strided) convolution.
        residual: add the sliced input and a 1x1 conv (needs `C_in == filters`).
        causal: right-align the residual (no future frames).
        dropout: dropout rate after each ReLU (reference 0.25).
        momentum: initial BN momentum, Keras convention.
        epsilon: BN epsilon.
        seed: seed of the kernel initialisers and dropout.

    Call arguments:
        inputs: `[B, T, C_in]`.
        training: BN batch statistics and dropout when true.
        strided: use the strided (training-only) form described above.

    Reference:
        Pavllo, Feichtenhofer, Grangier, Auli. 3D human pose estimation in
        video with temporal convolutions and semi-supervised training.
        CVPR 2019, arXiv:1811.11742.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        dilation_rate=1,
        residual=True,
        causal=False,
        dropout=0.25,
        momentum=0.9,
        epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"filters must be >= 1, got {filters}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if int(dilation_rate) < 1:
            raise ValueError(f"dilation_rate must be >= 1, got {dilation_rate}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.residual = bool(residual)
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.seed = seed
        self._drops = [keras.layers.Dropout(self.dropout, seed=None if seed is None else seed + i) for i in (1, 2)]

    # ------------------------------------------------------------------ weights
    def _bn_weights(self, tag):
        c = (self.filters,)
        return (
            self.add_weight(shape=c, name=f"{tag}_gamma", initializer="ones"),
            self.add_weight(shape=c, name=f"{tag}_beta", initializer="zeros"),
            self.add_weight(shape=c, name=f"{tag}_moving_mean", initializer="zeros", trainable=False,
                            aggregation="mean", autocast=False),
            self.add_weight(shape=c, name=f"{tag}_moving_variance", initializer="ones", trainable=False,
                            aggregation="mean", autocast=False),
        )  # fmt: skip

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("TemporalConvBlock needs a known channel dimension")
        if self.residual and channels != self.filters:
            raise ValueError(f"a residual block needs input channels == filters ({self.filters}), got {channels}")
        seed = self.seed
        self.kernel = self.add_weight(
            shape=(self.kernel_size, channels, self.filters), name="kernel", initializer=_pytorch_conv_init(seed)
        )
        self.bn1 = self._bn_weights("bn1")
        if self.residual:
            self.pointwise_kernel = self.add_weight(
                shape=(1, self.filters, self.filters),
                name="pointwise_kernel",
                initializer=_pytorch_conv_init(None if seed is None else seed + 7),
            )
            self.bn2 = self._bn_weights("bn2")
        self.bn_momentum = self.add_weight(
            shape=(),
            name="bn_momentum",
            initializer=keras.initializers.Constant(self.momentum),
            trainable=False,
            aggregation="mean",
            autocast=False,
        )
        self.built = True

    def set_bn_momentum(self, value):
        """Set the BN momentum (Keras convention) used by later training calls."""
        self.bn_momentum.assign(ops.cast(value, self.bn_momentum.dtype))

    # -------------------------------------------------------------------- call
    def _batch_norm(self, x, weights, training):
        gamma, beta, moving_mean, moving_var = weights
        if training:
            mean, var = ops.moments(x, axes=[0, 1])
            m = ops.cast(self.bn_momentum, mean.dtype)
            moving_mean.assign(moving_mean * m + ops.stop_gradient(mean) * (1.0 - m))
            moving_var.assign(moving_var * m + ops.stop_gradient(var) * (1.0 - m))
        else:
            mean, var = ops.cast(moving_mean, x.dtype), ops.cast(moving_var, x.dtype)
        return (x - mean) * ops.rsqrt(var + self.epsilon) * gamma + beta

    def _post(self, x, bn, drop, training):
        return drop(ops.relu(self._batch_norm(x, bn, training)), training=training)

    def call(self, inputs, training=None, strided=False):
        k, d = self.kernel_size, self.dilation_rate
        if strided:
            y = ops.conv(inputs, self.kernel, strides=k, padding="valid")
        else:
            y = ops.conv(inputs, self.kernel, strides=1, padding="valid", dilation_rate=d)
        y = self._post(y, self.bn1, self._drops[0], training)
        if not self.residual:
            return y
        y = ops.conv(y, self.pointwise_kernel, strides=1, padding="valid")
        y = self._post(y, self.bn2, self._drops[1], training)
        if strided:
            start = k // 2 + (k // 2 if self.causal else 0)
            res = inputs[:, start::k]
            res = res[:, : ops.shape(y)[1]]
        else:
            pad = (k - 1) * d // 2
            shift = (k // 2) * d if self.causal else 0
            stop = pad - shift  # frames dropped at the end
            res = inputs[:, pad + shift : (-stop if stop else None)]
        return res + y

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "residual": self.residual,
            "causal": self.causal,
            "dropout": self.dropout,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "seed": self.seed,
        }
