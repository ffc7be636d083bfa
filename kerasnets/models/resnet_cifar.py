"""ResNets for CIFAR-10 (He et al. 2015, section 4.2): depth 6n+2, 0.27M to 19.4M weights.

    3x3 conv, 16  ->  stage 1: n blocks, 16 filters, 32x32
                  ->  stage 2: n blocks, 32 filters, 16x16 (first block stride 2)
                  ->  stage 3: n blocks, 64 filters,  8x8  (first block stride 2)
                  ->  global average pooling -> fully connected (num_classes)

Every block is two 3x3 convolutions with batch normalization, `y = relu(F(x) + shortcut(x))`
with `F(x) = BN(conv(relu(BN(conv(x)))))`. Shortcuts are identities except where
the shape changes (the first block of stages 2 and 3):

* option "A" (the paper's CIFAR choice): parameter-free, subsample by 2 and
  zero-pad the new channels (`kerasnets.layers.ZeroPadShortcut`);
* option "B": a 1x1 convolution with stride 2 followed by batch normalization.

Choices the paper leaves open, and what we do:

* Initialisation: "as in [13]" (He et al. 2015, Delving Deep), i.e. N(0, 2/fan_in)
  with fan_in = k*k*C_in (the forward-pass case of their eq. 10), *untruncated*
  (`keras.initializers.HeNormal` is a truncated normal, so it is not used). The
  classifier uses the same initialiser.
* Weight decay 1e-4 as in the paper's SGD (coupled: the gradient gets `wd * w`):
  `kernel_regularizer=L2(wd / 2)` on every convolution and the classifier
  kernel, so the loss gains `wd / 2 * sum(w**2)`. Keras' optimizer
  `weight_decay=` is decoupled and would not match. BN scale/offset and the
  classifier bias are not decayed.
* Batch normalization: momentum 0.9, epsilon 1e-5 (the Torch/PyTorch reference
  implementations); `sync_bn=True` computes the batch statistics over all
  replicas (`BatchNormalization(synchronized=True)`), so a MirroredStrategy run
  normalises exactly like one device on the same global batch. Without it, Keras 3
  keeps one copy of the moving statistics per replica (its BN variables are not
  mean-aggregated); replica 0's copy is the one checkpointed and exported.

Parameter counts (trainable, 10 classes, option A) equal the paper's Table 6:
ResNet-20 269,722; -32 464,154; -44 658,586; -56 853,018; -110 1,727,962;
option B adds 2,752 weights to ResNet-20.
"""

from __future__ import annotations

import keras

from kerasnets.layers.zero_pad_shortcut import ZeroPadShortcut

PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)
STAGE_FILTERS = (16, 32, 64)
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def he_normal(seed=None):
    """He et al. (2015) initialiser N(0, 2 / fan_in), untruncated."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


class _Seeds:
    """Distinct, reproducible initialiser seeds per layer (None: Keras' global RNG)."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def next(self):
        if self.seed is None:
            return None
        self.count += 1
        return (int(self.seed) * 7919 + self.count) % (2**31 - 1)


def blocks_per_stage(depth: int) -> int:
    """`n` of a depth-`6n+2` CIFAR ResNet; a clear `ValueError` for any other depth."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an int of the form 6n+2 (e.g. {PAPER_DEPTHS}), got {depth!r}")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, ...; the paper uses "
            f"{', '.join(map(str, PAPER_DEPTHS))}), got {depth}"
        )
    return (depth - 2) // 6


def _conv(filters, kernel_size, strides, weight_decay, name, seed=None):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=he_normal(seed),
        kernel_regularizer=keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None,
        name=name,
    )


def _batch_norm(sync_bn, name):
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=sync_bn, name=name
    )


def shortcut(x, filters, strides, kind, weight_decay=1e-4, sync_bn=False, name="shortcut", seeds=None):
    """Identity, or option A/B when the block changes the shape (`strides` > 1 or more filters)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    if kind == "A":
        return ZeroPadShortcut(filters, strides, name=f"{name}_pad")(x)
    if kind == "B":
        seed = seeds.next() if seeds is not None else None
        x = _conv(filters, 1, strides, weight_decay, name=f"{name}_conv", seed=seed)(x)
        return _batch_norm(sync_bn, name=f"{name}_bn")(x)
    raise ValueError(f"shortcut must be 'A' or 'B', got {kind!r}")


def basic_block(
    x, filters, strides=1, shortcut_kind="A", weight_decay=1e-4, sync_bn=False, name="block", seeds=None
):
    """`relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x))` (paper Fig. 2, left)."""
    seeds = seeds or _Seeds(None)
    skip = shortcut(x, filters, strides, shortcut_kind, weight_decay, sync_bn, name=f"{name}_shortcut", seeds=seeds)
    y = _conv(filters, 3, strides, weight_decay, name=f"{name}_conv1", seed=seeds.next())(x)
    y = _batch_norm(sync_bn, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, weight_decay, name=f"{name}_conv2", seed=seeds.next())(y)
    y = _batch_norm(sync_bn, name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, skip])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def stage(
    x, filters, num_blocks, strides, shortcut_kind="A", weight_decay=1e-4, sync_bn=False, name="stage", seeds=None
):
    """`num_blocks` basic blocks; the first one subsamples by `strides`."""
    for i in range(num_blocks):
        x = basic_block(
            x,
            filters,
            strides if i == 0 else 1,
            shortcut_kind,
            weight_decay,
            sync_bn,
            name=f"{name}_block{i + 1}",
            seeds=seeds,
        )
    return x


def build_resnet_cifar(
    depth: int = 20,
    num_classes: int = 10,
    input_shape=(32, 32, 3),
    shortcut: str = "A",
    weight_decay: float = 1e-4,
    sync_bn: bool = False,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """The CIFAR ResNet of depth `6n+2` as a functional model (inputs -> logits).

    Args:
        depth: 20, 32, 44, 56, 110, 1202 in the paper; any `6n+2 >= 8` is built.
        num_classes: classifier width (10 for CIFAR-10).
        input_shape: HWC of the (already preprocessed) inputs.
        shortcut: `"A"` (zero-padding, parameter-free) or `"B"` (1x1 projection
            where the shape changes).
        weight_decay: coupled L2 coefficient `wd`; the model's `losses` then
            hold `wd / 2 * ||w||^2` for every kernel. 0 disables it.
        sync_bn: batch statistics over all replicas.
        seed: makes the initial weights reproducible (each layer gets its own
            seed derived from it); None uses Keras' global random state.
        name: model name (default `resnet{depth}`).

    Returns:
        A `keras.Model` returning unnormalised logits `[batch, num_classes]`.
    """
    n = blocks_per_stage(depth)
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _conv(STAGE_FILTERS[0], 3, 1, weight_decay, name="stem_conv", seed=seeds.next())(inputs)
    x = _batch_norm(sync_bn, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate(STAGE_FILTERS):
        x = stage(
            x, filters, n, 1 if i == 0 else 2, shortcut, weight_decay, sync_bn, name=f"stage{i + 1}", seeds=seeds
        )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=he_normal(seeds.next()),
        kernel_regularizer=keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None,
        name="logits",
    )(x)
    return keras.Model(inputs, logits, name=name or f"resnet{depth}")
