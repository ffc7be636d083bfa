"""Aberman, Wu et al. (SIGGRAPH 2019): motion, body and view encoders with a shared decoder.

A 2-D joint sequence `x` (`[batch, T, 30]`: 14 root-relative joints and the
root velocity, normalised; `kerasnets.data.motion_pairs`) is split into

* a **motion code** `M(x)`: `[batch, T/8, 128]`, varying in time -- three
  `ReflectionPad((k-2)/2) + Conv1D(k=8, stride 2) + LeakyReLU(0.2)` blocks,
  channels 30 -> 64 -> 96 -> 128;
* a **body (skeleton) code** `B(x)`: `[batch, 1, 16]`, time-invariant --
  on the 28 local channels (the velocity removed), three
  `ReflectionPad(3) + Conv1D(k=7) + LeakyReLU(0.2) + MaxPool(2, 2)` blocks,
  channels 28 -> 32 -> 48 -> 64, a global max over time, a 1x1 conv to 16;
* a **view code** `V(x)`: `[batch, 1, 8]` -- the same with average pooling,
  a global average and a 1x1 conv to 8;

and the **decoder** `D` maps `concat(M, tile(B), tile(V))` (152 channels at
T/8) back to `[batch, T, 30]` through three
`Upsample x2 (nearest) + ReflectionPad(3) + Conv1D(k=7)` blocks, channels
152 -> 128 -> 64 -> 30, Dropout(0.2) after the first two and LeakyReLU(0.2)
after all but the last. Retargeting motion of `x_a` to the body of `x_b`
seen from the view of `x_c` is `D(M(x_a), B(x_b), V(x_c))`.

Every size above is an argument (`channels` tuples, kernel sizes, dropout).
Weights use PyTorch's Conv1d default initialisation (kernel and bias
`U(-1/sqrt(fan_in), 1/sqrt(fan_in))`), which the reference trains with.
Sequences must have a multiple of 8 frames (3 stride-2 levels) and at
least 16 (the reflection pads of the coarsest level need 4 steps).

Reference:
    Aberman, Wu, Lischinski, Chen, Cohen-Or. Learning Character-Agnostic
    Motion for Motion Retargeting in 2D. ACM TOG (SIGGRAPH) 2019,
    arXiv:1905.01680; ChrisWu1997/2D-Motion-Retargeting `model/networks.py`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from kerasnets.layers.reflection_padding1d import ReflectionPadding1D
from kerasnets.saving import register

MOTION_CHANNELS = (30, 64, 96, 128)
BODY_CHANNELS = (28, 32, 48, 64, 16)
VIEW_CHANNELS = (28, 32, 48, 64, 8)
DECODER_CHANNELS = (152, 128, 64, 30)
#: Frames per motion-code step (three stride-2 convolutions).
TIME_STRIDE = 8
#: Shortest clip the networks accept.
MIN_FRAMES = 16


def _torch_conv(filters, kernel_size, fan_in, seed, name, strides=1):
    """Conv1D with PyTorch's default init (kernel and bias uniform in +-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Conv1D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound, seed=seed + 1),
        name=name,
    )


def motion_encoder_block(x, filters, kernel_size, seed, name):
    """ReflectionPad((k - 2) / 2) + Conv1D(k, stride 2) + LeakyReLU(0.2): halves the time axis."""
    pad = (kernel_size - 2) // 2
    x = ReflectionPadding1D(pad, name=f"{name}_pad")(x)
    x = _torch_conv(filters, kernel_size, x.shape[-1] * kernel_size, seed, f"{name}_conv", strides=2)(x)
    return keras.layers.LeakyReLU(0.2, name=f"{name}_act")(x)


def static_encoder_block(x, filters, kernel_size, pool, seed, name):
    """ReflectionPad((k - 1) / 2) + Conv1D(k) + LeakyReLU(0.2) + Max/AvgPool(2, 2)."""
    pad = (kernel_size - 1) // 2
    x = ReflectionPadding1D(pad, name=f"{name}_pad")(x)
    x = _torch_conv(filters, kernel_size, x.shape[-1] * kernel_size, seed, f"{name}_conv")(x)
    x = keras.layers.LeakyReLU(0.2, name=f"{name}_act")(x)
    pool_cls = keras.layers.MaxPooling1D if pool == "max" else keras.layers.AveragePooling1D
    return pool_cls(2, 2, name=f"{name}_pool")(x)


def decoder_block(x, filters, kernel_size, dropout, activate, seed, name):
    """Upsample x2 (nearest) + ReflectionPad((k - 1) / 2) + Conv1D(k) [+ Dropout] [+ LeakyReLU(0.2)]."""
    x = keras.layers.UpSampling1D(2, name=f"{name}_up")(x)
    x = ReflectionPadding1D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
    x = _torch_conv(filters, kernel_size, x.shape[-1] * kernel_size, seed, f"{name}_conv")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed + 2, name=f"{name}_dropout")(x)
    if activate:
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_act")(x)
    return x


def _check_channels(channels, what, minimum=2):
    channels = tuple(int(c) for c in channels)
    if len(channels) < minimum or min(channels) < 1:
        raise ValueError(f"{what} channels must be >= {minimum} positive ints, got {channels}")
    return channels


def build_motion_encoder(channels=MOTION_CHANNELS, kernel_size=8, seed=0, name="motion_encoder"):
    """`[batch, T, channels[0]]` -> motion code `[batch, T / 2^(len-1), channels[-1]]`."""
    channels = _check_channels(channels, "motion encoder")
    if kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"motion encoder kernel_size must be even and >= 2 (pad (k-2)/2, stride 2), got {kernel_size}")
    inputs = keras.Input((None, channels[0]), name="motion")
    x = inputs
    for i, filters in enumerate(channels[1:]):
        x = motion_encoder_block(x, filters, kernel_size, seed + 10 * i, f"motion_{i}")
    return keras.Model(inputs, x, name=name)


def build_static_encoder(channels, kernel_size=7, pool="max", compress=True, seed=0, name="static_encoder"):
    """`[batch, T, channels[0]]` -> static code `[batch, 1, channels[-1]]` (global max or average over time).

    With `compress`, the last entry of `channels` is the 1x1 conv's output
    (the paper's 3-encoder model); without, every entry after the first is a
    conv block.
    """
    channels = _check_channels(channels, "static encoder", 3 if compress else 2)
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"static encoder kernel_size must be odd, got {kernel_size}")
    inputs = keras.Input((None, channels[0]), name="pose")
    x = inputs
    conv_channels = channels[1:-1] if compress else channels[1:]
    for i, filters in enumerate(conv_channels):
        x = static_encoder_block(x, filters, kernel_size, pool, seed + 10 * i, f"{name}_{i}")
    global_pool = keras.layers.GlobalMaxPooling1D if pool == "max" else keras.layers.GlobalAveragePooling1D
    x = global_pool(keepdims=True, name=f"{name}_global_{pool}")(x)
    if compress:
        x = _torch_conv(channels[-1], 1, conv_channels[-1], seed + 97, f"{name}_compress")(x)
    return keras.Model(inputs, x, name=name)


def build_decoder(channels=DECODER_CHANNELS, kernel_size=7, dropout=0.2, seed=0, name="decoder"):
    """`[batch, t, channels[0]]` (motion code + tiled static codes) -> `[batch, t * 2^(len-1), channels[-1]]`."""
    channels = _check_channels(channels, "decoder")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"decoder kernel_size must be odd, got {kernel_size}")
    inputs = keras.Input((None, channels[0]), name="codes")
    x = inputs
    last = len(channels) - 2
    for i, filters in enumerate(channels[1:]):
        x = decoder_block(x, filters, kernel_size, dropout if i < 2 else 0.0, i != last, seed + 10 * i, f"decoder_{i}")
    return keras.Model(inputs, x, name=name)


@register
class Retarget2D(keras.Model):
    """The three encoders and the decoder, with the code algebra of the paper.

    `call((source, body, view))` retargets: `D(M(source), B(body), V(view))`,
    all `[batch, T, 30]` normalised sequences (the three may differ in
    length; the output has the source's length). The per-channel
    normalisation statistics live in the model (`norm_mean`, `norm_std`,
    non-trainable) so exports can take raw 2-D joints.

    Args:
        motion_channels, body_channels, view_channels, decoder_channels:
            layer widths (defaults: the paper's full 3-encoder model).
            `decoder_channels[0]` must equal the sum of the three code sizes
            and `decoder_channels[-1] == motion_channels[0]`.
        motion_kernel, static_kernel, decoder_kernel: temporal kernel sizes
            (8, 7, 7 in the paper).
        dropout: decoder dropout (0.2).
        seed: weight-initialisation seed.
    """

    def __init__(
        self,
        motion_channels=MOTION_CHANNELS,
        body_channels=BODY_CHANNELS,
        view_channels=VIEW_CHANNELS,
        decoder_channels=DECODER_CHANNELS,
        motion_kernel=8,
        static_kernel=7,
        decoder_kernel=7,
        dropout=0.2,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.motion_channels = tuple(int(c) for c in motion_channels)
        self.body_channels = tuple(int(c) for c in body_channels)
        self.view_channels = tuple(int(c) for c in view_channels)
        self.decoder_channels = tuple(int(c) for c in decoder_channels)
        self.motion_kernel, self.static_kernel, self.decoder_kernel = int(motion_kernel), int(static_kernel), int(decoder_kernel)
        self.dropout = float(dropout)
        self.seed = int(seed)
        m, b, v, d = self.motion_channels, self.body_channels, self.view_channels, self.decoder_channels
        if d[0] != m[-1] + b[-1] + v[-1]:
            raise ValueError(
                f"decoder_channels[0] ({d[0]}) must equal motion + body + view code sizes ({m[-1]} + {b[-1]} + {v[-1]})"
            )
        if d[-1] != m[0]:
            raise ValueError(f"decoder output channels ({d[-1]}) must equal the input channels ({m[0]})")
        if b[0] != m[0] - 2 or v[0] != m[0] - 2:
            raise ValueError(
                f"static encoders read the {m[0] - 2} local channels (velocity removed); got {b[0]} and {v[0]}"
            )
        if len(d) != len(m):
            raise ValueError(
                f"decoder upsamples once per level: {len(d) - 1} levels, but the motion encoder has {len(m) - 1}"
            )
        self.time_stride = 2 ** (len(m) - 1)
        self.motion_encoder = build_motion_encoder(m, motion_kernel, seed=seed)
        self.body_encoder = build_static_encoder(b, static_kernel, "max", True, seed=seed + 1000, name="body_encoder")
        self.view_encoder = build_static_encoder(v, static_kernel, "avg", True, seed=seed + 2000, name="view_encoder")
        self.decoder = build_decoder(d, decoder_kernel, dropout, seed=seed + 3000)
        self.norm_mean = self.add_weight(shape=(m[0],), initializer="zeros", trainable=False, name="norm_mean")
        self.norm_std = self.add_weight(shape=(m[0],), initializer="ones", trainable=False, name="norm_std")

    # ------------------------------------------------------------------ codes
    def encode_motion(self, x, training=False):
        """Motion code `[batch, T / 8, 128]`."""
        return self.motion_encoder(x, training=training)

    def encode_body(self, x, training=False):
        """Body code `[batch, 1, 16]` from the local channels of `x` (the root velocity dropped)."""
        return self.body_encoder(x[..., :-2], training=training)

    def encode_view(self, x, training=False):
        """View code `[batch, 1, 8]` from the local channels of `x`."""
        return self.view_encoder(x[..., :-2], training=training)

    def decode(self, motion_code, body_code, view_code, training=False):
        """`D(concat(m, tile(b), tile(v)))` -> `[batch, 8 * t, 30]`."""
        steps = tf.shape(motion_code)[1]
        codes = tf.concat(
            [motion_code, tf.tile(body_code, [1, steps, 1]), tf.tile(view_code, [1, steps, 1])], axis=-1
        )
        return self.decoder(codes, training=training)

    def cross(self, x1, x2, training=False):
        """All 8 (motion, body, view) combinations of two clips and their codes.

        Returns `(outputs, codes)`: `outputs["mbv"]` decodes motion of clip
        `m`, body of clip `b`, view of clip `v` (e.g. `"121"`); `codes` maps
        `"m1", "b1", "v1", "m2", ...` to the codes.
        """
        codes = {}
        for k, x in (("1", x1), ("2", x2)):
            codes["m" + k] = self.encode_motion(x, training)
            codes["b" + k] = self.encode_body(x, training)
            codes["v" + k] = self.encode_view(x, training)
        outputs = {}
        for m in "12":
            for b in "12":
                for v in "12":
                    outputs[m + b + v] = self.decode(codes["m" + m], codes["b" + b], codes["v" + v], training)
        return outputs, codes

    def call(self, inputs, training=False):
        source, body, view = inputs
        return self.decode(
            self.encode_motion(source, training), self.encode_body(body, training), self.encode_view(view, training), training
        )

    def get_config(self):
        return {
            **super().get_config(),
            "motion_channels": list(self.motion_channels),
            "body_channels": list(self.body_channels),
            "view_channels": list(self.view_channels),
            "decoder_channels": list(self.decoder_channels),
            "motion_kernel": self.motion_kernel,
            "static_kernel": self.static_kernel,
            "decoder_kernel": self.decoder_kernel,
            "dropout": self.dropout,
            "seed": self.seed,
        }


def check_frames(frames: int, time_stride: int = TIME_STRIDE) -> None:
    """Raise ValueError unless `frames` is a multiple of `time_stride` and at least `2 * time_stride`."""
    if frames % time_stride or frames < 2 * time_stride:
        raise ValueError(
            f"clips need a multiple of {time_stride} frames and at least {2 * time_stride}, got {frames}"
        )
