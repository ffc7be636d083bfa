"""BEGAN's auto-encoder discriminator and its generator (Berthelot et al. 2017, section 3.3).

Everything is 3x3 convolutions followed by ELU; no batch norm, no dropout, no
transposed convolution; the smallest feature map is always 8x8.

Decoder (and generator, same architecture, separate weights)::

    h (Nh)  -> Dense(8*8*n), no non-linearity -> reshape h0 = [8, 8, n]
    repeat for each scale 8, 16, ..., S:
        conv3x3(n) ELU, conv3x3(n) ELU
        nearest-neighbour upsample x2          (not after the last scale)
        [skip: concat nearest-upsampled h0]    (after every upsample)
    conv3x3(channels), linear output           (images in [-1, 1], no tanh)

Encoder::

    x [S, S, C] -> conv3x3(n) ELU                               (stem)
    for l = 1 .. log2(S / 8):                                   (one block per down-sampling)
        conv3x3(n*l) ELU
        conv3x3(n*(l+1)), stride 2, ELU                         (sub-sample + widen)
    flatten [8, 8, n*(L+1)] -> Dense(Nh), no non-linearity

The filters grow linearly with each down-sampling (n, 2n, 3n, ...). The paper
says "each layer is repeated a number of times (typically 2)" without the
exact count; this layout ("2 convolutions per scale, the second strided and
widening") is the one whose size matches the paper's only number: at
128x128, n = 128, Nh = 64 it has 16.97M trainable parameters (G 2.01M +
encoder 12.95M + decoder 2.01M) against the paper's 17.3M (2 % below).
carpedm20's layout (2 convs plus an extra strided conv per scale) gives
25.2M. For 8x8 images there is no down-sampling: the encoder is the stem
conv and the dense layer.

Skip connections (2nd arXiv version): `h0` is nearest-upsampled to the
current size and concatenated after every upsampling, so the next conv sees
`2n` channels.

The paper's other refinement, "vanishing residuals" (a carry decayed from
1 to 0 over 16k steps), is not implemented.

Reference:
    Berthelot, Schumm, Metz. "BEGAN: Boundary Equilibrium Generative
    Adversarial Networks." arXiv:1703.10717, 2017.
"""

from __future__ import annotations

import math

import keras
from keras import layers

#: The paper's largest model: 128x128, n = 128, Nh = 64 (17.3M parameters in the paper).
PAPER_128_PARAMS = 17.3e6


def num_downsamplings(image_size: int) -> int:
    """log2(image_size / 8): the number of stride-2 convs (and of upsamplings)."""
    if not isinstance(image_size, int) or image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"BEGAN image_size must be a power of two >= 8 (the smallest map is 8x8), got {image_size!r}")
    return int(math.log2(image_size // 8))


def _check(n, h, channels):
    for name, value in (("n", n), ("h", h), ("channels", channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"BEGAN {name} must be a positive int, got {value!r}")


class _Seeds:
    """Distinct, reproducible initializer seeds for successive layers (None: Keras' global RNG)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def kernel(self):
        if self.seed is None:
            return "glorot_uniform"
        self.count += 1
        return keras.initializers.GlorotUniform(seed=(int(self.seed) * 7919 + self.count) % (2**31 - 1))


def _seeds(seed, offset):
    return _Seeds(None if seed is None else int(seed) * 3 + offset)


def _conv(filters, name, seeds, strides=1, activation="elu"):
    return layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        activation=activation,
        kernel_initializer=seeds.kernel(),
        name=name,
    )


def decoder_block(x, n, scale, name, seeds):
    """Two 3x3 convs with ELU at one scale."""
    x = _conv(n, f"{name}_s{scale}_conv1", seeds)(x)
    return _conv(n, f"{name}_s{scale}_conv2", seeds)(x)


def decoder_body(h, image_size, n, channels, skip, name, seeds):
    """`h -> image` as described in the module docstring; returns the output tensor."""
    ups = num_downsamplings(image_size)
    h0 = layers.Dense(8 * 8 * n, kernel_initializer=seeds.kernel(), name=f"{name}_fc")(h)  # no non-linearity
    h0 = layers.Reshape((8, 8, n), name=f"{name}_h0")(h0)
    x = h0
    for i in range(ups + 1):
        size = 8 * 2**i
        x = decoder_block(x, n, size, name, seeds)
        if i < ups:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{2 * size}")(x)
            if skip:
                factor = 2 ** (i + 1)
                skip_h0 = layers.UpSampling2D(factor, interpolation="nearest", name=f"{name}_h0_up{2 * size}")(h0)
                x = layers.Concatenate(name=f"{name}_skip{2 * size}")([x, skip_h0])
    return _conv(channels, f"{name}_out", seeds, activation=None)(x)  # linear output


def encoder_body(x, image_size, n, h, name, seeds):
    """`image -> h` as described in the module docstring; returns the embedding tensor."""
    downs = num_downsamplings(image_size)
    x = _conv(n, f"{name}_stem", seeds)(x)
    size = image_size
    for level in range(1, downs + 1):
        x = _conv(n * level, f"{name}_s{size}_conv1", seeds)(x)
        x = _conv(n * (level + 1), f"{name}_s{size}_down", seeds, strides=2)(x)
        size //= 2
    x = layers.Flatten(name=f"{name}_flatten")(x)
    return layers.Dense(h, kernel_initializer=seeds.kernel(), name=f"{name}_fc")(x)  # no non-linearity


# Initializers are Keras' default Glorot-uniform (the paper does not say);
# `seed` makes them reproducible, with distinct streams for G, encoder, decoder.


def build_began_generator(image_size=64, n=64, h=64, channels=3, skip=False, name="generator", seed=None):
    """Generator `G: z [Nz] -> image [S, S, channels]` (the decoder architecture)."""
    _check(n, h, channels)
    z = keras.Input((h,), name="z")
    return keras.Model(z, decoder_body(z, image_size, n, channels, skip, name, _seeds(seed, 0)), name=name)


def build_began_encoder(image_size=64, n=64, h=64, channels=3, name="encoder", seed=None):
    """Encoder `image [S, S, channels] -> h [Nh]`."""
    _check(n, h, channels)
    x = keras.Input((image_size, image_size, channels), name="images")
    return keras.Model(x, encoder_body(x, image_size, n, h, name, _seeds(seed, 1)), name=name)


def build_began_decoder(image_size=64, n=64, h=64, channels=3, skip=False, name="decoder", seed=None):
    """Decoder `h [Nh] -> image`: same architecture as the generator, own weights."""
    _check(n, h, channels)
    e = keras.Input((h,), name="embedding")
    return keras.Model(e, decoder_body(e, image_size, n, channels, skip, name, _seeds(seed, 2)), name=name)


def build_began_discriminator(image_size=64, n=64, h=64, channels=3, skip=False, name="discriminator", seed=None):
    """Auto-encoder discriminator `D(x) = decoder(encoder(x))`, same shape in and out.

    The encoder and decoder are nested sub-models (`discriminator.get_layer("encoder")`).
    """
    encoder = build_began_encoder(image_size, n, h, channels, seed=seed)
    decoder = build_began_decoder(image_size, n, h, channels, skip, seed=seed)
    x = keras.Input((image_size, image_size, channels), name="images")
    return keras.Model(x, decoder(encoder(x)), name=name)
