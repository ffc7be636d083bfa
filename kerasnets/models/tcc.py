"""The TCC frame embedder (Dwibedi et al., CVPR 2019): per-frame CNN + temporal context -> 128-d.

Layout of the reference (google-research/tcc `models.py`, `config.py`):

* **base network**, applied to every frame: Keras ResNet50V2 cut at
  `conv4_block3_out` (the paper's "conv4c"; 1024 channels at 1/16 of a
  224x224 input, ImageNet weights, only its BN layers train). The reference
  also ships a small VGG-M-like base; `base="small"` here is such a network
  (`[conv3x3 + BN + ReLU] x 2 + max-pool` per block) for CPU training;
  `base="resnet50v2"` builds the paper's cut ResNet (random init offline);
* **temporal context**: each embedded frame `t` sees `num_context` frames
  `t - (k - 1) s, ..., t - s, t` (stride `s`, indices clipped at 0; no future
  frames), stacked along a time axis (reference: 2 frames, stride 15);
* **embedder**: 2 x [Conv3D(512, 3x3x3, same) + BN + ReLU], global 3-D max
  pooling, 2 x [Dropout(0.1) + Dense(512, ReLU)], Dense(128) (no L2
  normalisation); L2 weight regularisation 1e-5 on all its kernels and biases
  (coupled, as `kernel_regularizer`; the reference's `regularizers.l2`).

A context clip `[k, H, W, 3]` (RGB in [0, 1]) maps to one embedding `[D]`;
`context_indices` + `gather_context` build the clips of a whole video.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

BASES = ("small", "resnet50v2")


def _reg(l2):
    return keras.regularizers.L2(l2) if l2 else None


def small_base(x, filters=(32, 64, 128), l2=1e-5, seed=0, name="base"):
    """VGG-M-like per-frame CNN: per block `[conv3x3 + BN + ReLU] x 2`, then 2x2 max-pool (not after the last)."""
    for b, f in enumerate(filters):
        for c in range(2):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, kernel_regularizer=_reg(l2),
                              kernel_initializer=keras.initializers.HeNormal(seed=seed + 10 * b + c),
                              name=f"{name}_b{b}_conv{c}")(x)  # fmt: skip
            x = layers.BatchNormalization(name=f"{name}_b{b}_bn{c}")(x)
            x = layers.ReLU(name=f"{name}_b{b}_relu{c}")(x)
        if b < len(filters) - 1:
            x = layers.MaxPooling2D(2, name=f"{name}_b{b}_pool")(x)
    return x


def build_frame_base(frame_shape, base="small", filters=(32, 64, 128), l2=1e-5, seed=0) -> keras.Model:
    """The per-frame CNN: `[H, W, 3]` in [0, 1] -> a feature map."""
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}")
    inputs = keras.Input(frame_shape, name="frame")
    if base == "small":
        out = small_base(inputs, filters, l2=l2, seed=seed)
    else:
        resnet = keras.applications.ResNet50V2(include_top=False, weights=None, input_shape=tuple(frame_shape))
        cut = keras.Model(resnet.input, resnet.get_layer("conv4_block3_out").output, name="resnet50v2_conv4c")
        out = cut(layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inputs))  # ResNetV2 takes [-1, 1]
    return keras.Model(inputs, out, name=f"{base}_base")


def build_tcc_embedder(
    frame_shape=(32, 32, 3),
    num_context: int = 2,
    base: str = "small",
    base_filters=(32, 64, 128),
    conv_filters=(512, 512),
    fc_units=(512, 512),
    embedding_dim: int = 128,
    dropout: float = 0.1,
    l2: float = 1e-5,
    seed: int = 0,
) -> keras.Model:
    """Context clip `[num_context, H, W, 3]` -> embedding `[embedding_dim]` (see the module docstring).

    Reference sizes: `base="resnet50v2"` at 224x224, `num_context=2`,
    `conv_filters=(512, 512)`, `fc_units=(512, 512)`, `embedding_dim=128`.
    """
    if num_context < 1:
        raise ValueError(f"num_context must be >= 1, got {num_context}")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    frame_base = build_frame_base(frame_shape, base, base_filters, l2, seed)
    clip = keras.Input((num_context, *frame_shape), name="clip")
    x = layers.TimeDistributed(frame_base, name="per_frame")(clip)  # [k, h, w, c]
    for i, f in enumerate(conv_filters):
        x = layers.Conv3D(f, 3, padding="same", kernel_regularizer=_reg(l2), bias_regularizer=_reg(l2),
                          kernel_initializer=keras.initializers.HeNormal(seed=seed + 100 + i),
                          name=f"context_conv{i}")(x)  # fmt: skip
        x = layers.BatchNormalization(name=f"context_bn{i}")(x)
        x = layers.ReLU(name=f"context_relu{i}")(x)
    x = layers.GlobalMaxPooling3D(name="max_pool")(x)
    for i, units in enumerate(fc_units):
        x = layers.Dropout(dropout, seed=seed + 200 + i, name=f"fc_dropout{i}")(x)
        x = layers.Dense(units, activation="relu", kernel_regularizer=_reg(l2), bias_regularizer=_reg(l2),
                         kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 300 + i),
                         name=f"fc{i}")(x)  # fmt: skip
    out = layers.Dense(embedding_dim, kernel_regularizer=_reg(l2), bias_regularizer=_reg(l2),
                       kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 400), name="embedding")(x)  # fmt: skip
    return keras.Model(clip, out, name="tcc_embedder")


def context_indices(steps, num_context: int, stride: int):
    """Frame indices `[..., T, k]` of each step's context: `max(0, t - (k - 1 - c) s)` for `c = 0..k-1`."""
    steps = tf.convert_to_tensor(steps)
    offsets = tf.range(num_context - 1, -1, -1, dtype=steps.dtype) * tf.cast(stride, steps.dtype)
    return tf.maximum(steps[..., None] - offsets, 0)


def gather_context(frames, steps, num_context: int, stride: int):
    """Context clips `[N, T, k, H, W, C]` of `frames [N, L, H, W, C]` at `steps [N, T]`."""
    idx = context_indices(steps, num_context, stride)
    return tf.gather(frames, idx, axis=1, batch_dims=1)


def embed_clips(embedder, clips, training=False):
    """`[N, T, k, H, W, C]` clips -> `[N, T, D]` embeddings (all clips in one batch)."""
    shape = tf.shape(clips)
    flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], 0))
    emb = embedder(flat, training=training)
    return tf.reshape(emb, tf.concat([shape[:2], [tf.shape(emb)[-1]]], 0))
