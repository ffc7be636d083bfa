"""ResNet backbones with C4 and FPN outputs for two-stage detectors (Faster / Mask R-CNN).

`build_resnet_backbone(...)` returns a functional model `images -> [C2, C3, C4, C5]`
(strides 4, 8, 16, 32; "C_l" is the output of ResNet stage conv_l), truncated at
`last_stage`:

* stem: 7x7 stride-2 conv (`width` channels) + norm + ReLU + 3x3 stride-2 max-pool;
* stages 2..5: `blocks[i]` residual blocks, the first of stages 3..5 with stride 2
  (1x1 projection shortcut where the shape changes). `block="bottleneck"` is
  the ImageNet ResNet-50/101 block (1x1, 3x3, 1x1 with 4x expansion; stride on
  the 3x3 as in torchvision / Detectron2), `block="basic"` two 3x3 convs.

Paper layouts (He et al. 2016 / Mask R-CNN Sec. 3, "Network Architecture"):

| name | block | blocks per stage 2-5 | width |
|---|---|---|---|
| ResNet-50 | bottleneck | 3, 4, 6, 3 | 64 (256..2048 channels) |
| ResNet-101 | bottleneck | 3, 4, 23, 3 | 64 |

`RESNET_LAYOUTS` holds them. In the **C4** layout (Faster R-CNN with ResNet,
Mask R-CNN's "ResNet-C4") the RPN and RoI pooling run on C4 (stride 16) and
stage 5 becomes the RoI head; the **FPN** layout (`build_fpn`, Lin et al.
2017) builds P2..P5 from C2..C5 with a top-down pathway and lateral 1x1 convs,
P6 by stride-2 subsampling of P5 (RPN only). The CPU defaults of the recipes
are a small basic-block ResNet (`blocks=(1, 1, 1, 1)`, `width=16`).

Normalisation: the papers fine-tune an ImageNet model with *frozen* BN; from
scratch on a few images per batch, batch statistics are noisy, so the
default here is GroupNorm (Wu & He 2018 train Mask R-CNN from scratch with
it); `norm="batch"` is available. Convs use He-normal (untruncated)
initialisation and the coupled L2 `weight_decay` (kernel regulariser `wd/2`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

RESNET_LAYOUTS = {
    "resnet50": dict(block="bottleneck", blocks=(3, 4, 6, 3), width=64),
    "resnet101": dict(block="bottleneck", blocks=(3, 4, 23, 3), width=64),
}
NORMS = ("group", "batch")
BLOCKS = ("basic", "bottleneck")


def he_normal(seed=None):
    """N(0, 2 / fan_in), untruncated (`keras.initializers.HeNormal` is truncated)."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=seed)


class _Seeds:
    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def next(self):
        if self.seed is None:
            return None
        self.count += 1
        return (int(self.seed) * 7919 + self.count) % (2**31 - 1)


def _regularizer(weight_decay):
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def conv(x, filters, kernel, stride, name, seeds, weight_decay=0.0, use_bias=False, kernel_initializer=None):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=use_bias,
        kernel_initializer=kernel_initializer or he_normal(seeds.next()),
        kernel_regularizer=_regularizer(weight_decay), name=name,
    )(x)


def norm_layer(x, kind, name):
    if kind == "batch":
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)
    if kind == "group":
        channels = int(x.shape[-1])
        groups = min(32, max(1, channels // 4))
        while channels % groups:
            groups -= 1
        return keras.layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)(x)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def _conv_norm(x, filters, kernel, stride, name, seeds, norm, weight_decay, relu=True):
    x = conv(x, filters, kernel, stride, name + "_conv", seeds, weight_decay)
    x = norm_layer(x, norm, name + "_norm")
    return keras.layers.ReLU(name=name + "_relu")(x) if relu else x


def residual_block(x, planes, stride, block, name, seeds, norm="group", weight_decay=0.0):
    """One basic (`planes` out) or bottleneck (`4 * planes` out) block: `relu(F(x) + shortcut(x))`."""
    out_channels = planes * 4 if block == "bottleneck" else planes
    if stride != 1 or int(x.shape[-1]) != out_channels:
        skip = _conv_norm(x, out_channels, 1, stride, name + "_proj", seeds, norm, weight_decay, relu=False)
    else:
        skip = x
    if block == "bottleneck":
        y = _conv_norm(x, planes, 1, 1, name + "_a", seeds, norm, weight_decay)
        y = _conv_norm(y, planes, 3, stride, name + "_b", seeds, norm, weight_decay)
        y = _conv_norm(y, out_channels, 1, 1, name + "_c", seeds, norm, weight_decay, relu=False)
    elif block == "basic":
        y = _conv_norm(x, planes, 3, stride, name + "_a", seeds, norm, weight_decay)
        y = _conv_norm(y, planes, 3, 1, name + "_b", seeds, norm, weight_decay, relu=False)
    else:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    return keras.layers.ReLU(name=name + "_out")(keras.layers.Add(name=name + "_add")([y, skip]))


def build_resnet_backbone(
    input_shape,
    blocks: Sequence[int] = (1, 1, 1, 1),
    width: int = 16,
    block: str = "basic",
    last_stage: int = 5,
    norm: str = "group",
    weight_decay: float = 0.0,
    seed: int | None = None,
    name: str = "resnet_backbone",
) -> keras.Model:
    """ResNet feature extractor `images -> [C2, ..., C_last_stage]` (strides 4, 8, 16, 32).

    Args:
        input_shape: `(H, W, 3)` of the preprocessed images.
        blocks: residual blocks in stages 2..5 (ResNet-50: 3, 4, 6, 3).
        width: channels of the stem and planes of stage 2, doubled per stage (64 in the paper).
        block: `"basic"` or `"bottleneck"`.
        last_stage: 4 for the C4 layout (stride 16 output), 5 for FPN.
        norm: `"group"` (default, see module docstring) or `"batch"`.
        weight_decay: coupled L2 coefficient (the paper's 1e-4).
        seed: reproducible initial weights.
    """
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 4 or any(b < 1 for b in blocks):
        raise ValueError(f"blocks must be 4 positive ints (stages 2-5), got {blocks}")
    if block not in BLOCKS:
        raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
    if last_stage not in (2, 3, 4, 5):
        raise ValueError(f"last_stage must be in 2..5, got {last_stage}")
    if int(width) < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    seeds = _Seeds(seed)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = _conv_norm(inputs, width, 7, 2, "stem", seeds, norm, weight_decay)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    outputs = []
    for stage in range(2, last_stage + 1):
        planes = width * 2 ** (stage - 2)
        for i in range(blocks[stage - 2]):
            stride = 2 if (i == 0 and stage > 2) else 1
            x = residual_block(x, planes, stride, block, f"c{stage}_block{i + 1}", seeds, norm, weight_decay)
        outputs.append(x)
    return keras.Model(inputs, outputs, name=name)


def build_fpn(
    backbone: keras.Model,
    channels: int = 256,
    extra_p6: bool = True,
    weight_decay: float = 0.0,
    seed: int | None = None,
    name: str = "resnet_fpn",
) -> keras.Model:
    """FPN over a `[C2..C5]` backbone: `images -> [P2, P3, P4, P5(, P6)]`, all with `channels`.

    `P5 = conv3x3(lateral(C5))`; `P_l = conv3x3(lateral(C_l) + upsample2x(M_{l+1}))`
    (nearest upsampling, 1x1 lateral convs, 3x3 output convs, no norm or ReLU,
    as in the FPN paper); `P6 = maxpool(1x1, stride 2)(P5)` for the RPN's
    largest anchors (Lin et al. 2017, Sec. 4.1). The paper uses `channels=256`.
    """
    seeds = _Seeds(seed)
    cs = list(backbone.outputs)
    if len(cs) < 2:
        raise ValueError("FPN needs a backbone with at least two output stages")
    laterals = [conv(c, channels, 1, 1, f"fpn_lateral{i + 2}", seeds, weight_decay, use_bias=True)
                for i, c in enumerate(cs)]
    merged = [None] * len(cs)
    merged[-1] = laterals[-1]
    for i in range(len(cs) - 2, -1, -1):
        up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up{i + 3}")(merged[i + 1])
        if tuple(up.shape[1:3]) != tuple(laterals[i].shape[1:3]):
            up = keras.layers.Resizing(int(laterals[i].shape[1]), int(laterals[i].shape[2]), "nearest",
                                       name=f"fpn_fit{i + 3}")(merged[i + 1])
        merged[i] = keras.layers.Add(name=f"fpn_merge{i + 2}")([laterals[i], up])
    outs = [conv(m, channels, 3, 1, f"fpn_out{i + 2}", seeds, weight_decay, use_bias=True)
            for i, m in enumerate(merged)]
    if extra_p6:
        outs.append(keras.layers.MaxPooling2D(1, 2, padding="same", name="fpn_p6")(outs[-1]))
    return keras.Model(backbone.inputs, outs, name=name)
