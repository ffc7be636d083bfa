"""HRNet for top-down pose estimation (Sun, Xiao, Liu, Wang, CVPR 2019, arXiv:1902.09212).

`build_hrnet(...)` builds the reference `pose_hrnet` (leoxiaobin/deep-high-
resolution-net.pytorch, `lib/models/pose_hrnet.py` + `w32_256x192` yaml) as a
functional Keras model, `images [N, H, W, 3] -> heatmaps [N, H/4, W/4, K]`:

* **stem**: two 3x3 stride-2 convs (64 channels) + BN + ReLU -> 1/4 resolution;
* **stage 1**: 4 bottleneck blocks (64 planes, expansion 4 -> 256 channels,
  1x1 projection shortcut on the first);
* **transitions**: a 3x3 conv (+BN+ReLU) where a branch's width changes, and
  a new branch at half the resolution from the last branch by 3x3 stride-2
  convs;
* **stages 2-4**: 1/4/3 modules with 2/3/4 parallel branches of widths
  `C, 2C, 4C, 8C`, 4 basic blocks per branch, then a **fusion**: output i
  sums every branch j, brought to i's resolution by a 1x1 conv + BN + nearest
  upsampling x2^(j-i) for j > i, by (i - j) 3x3 stride-2 convs (BN, ReLU
  between; the last maps to C_i, BN, no ReLU) for j < i; ReLU after the sum.
  The last module of stage 4 fuses only into the highest-resolution branch;
* **head**: 1x1 conv (with bias) to K heatmaps on the 1/4-resolution branch.

Convs have no bias and are initialised N(0, 0.001) as in the reference; BN
uses PyTorch's momentum 0.1 (Keras `momentum=0.9`) and eps 1e-5. W32
(`width=32`) has 28,536,113 parameters (README: 28.5M), W48 63,595,745
(63.6M).

On-device: every op is a TFLite builtin (CONV_2D, ADD, RELU folded into the
conv, RESIZE_NEAREST_NEIGHBOR). Upsampling uses `keras.layers.Resizing(...,
"nearest")` to the exact size of the target branch: it lowers to
RESIZE_NEAREST_NEIGHBOR (UpSampling2D lowers to RESHAPE + TILE), and it also
makes inputs whose side is not a multiple of 32 line up (with 'same' padding a
stride-2 conv rounds up, so a x2 upsample would overshoot). For sides that are
multiples of 32 it is exactly the reference's nearest x2^k upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

#: Reference configurations: (width C, modules per stage 2-4).
HRNET_W32 = dict(width=32, num_modules=(1, 4, 3))
HRNET_W48 = dict(width=48, num_modules=(1, 4, 3))

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def _init(seed, salt):
    return keras.initializers.RandomNormal(stddev=0.001, seed=None if seed is None else seed * 7919 + salt)


class _Namer:
    """Unique, readable layer names and per-layer init seeds."""

    def __init__(self, seed):
        self.seed = seed
        self.count = 0

    def conv(self, filters, kernel, stride, name, use_bias=False):
        self.count += 1
        return layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=use_bias,
            kernel_initializer=_init(self.seed, self.count),
            name=name,
        )


def _bn(name):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_bn(x, nm: _Namer, filters, kernel, stride, name, relu=True):
    x = nm.conv(filters, kernel, stride, name + "_conv")(x)
    x = _bn(name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if relu else x


def bottleneck_block(x, nm: _Namer, planes: int, name: str, expansion: int = 4):
    """1x1 -> 3x3 -> 1x1 (x4) residual block; 1x1 conv + BN shortcut when the width changes."""
    out_ch = planes * expansion
    shortcut = x
    if x.shape[-1] != out_ch:
        shortcut = conv_bn(x, nm, out_ch, 1, 1, name + "_down", relu=False)
    y = conv_bn(x, nm, planes, 1, 1, name + "_1")
    y = conv_bn(y, nm, planes, 3, 1, name + "_2")
    y = conv_bn(y, nm, out_ch, 1, 1, name + "_3", relu=False)
    y = layers.Add(name=name + "_add")([y, shortcut])
    return layers.ReLU(name=name + "_out")(y)


def basic_block(x, nm: _Namer, channels: int, name: str):
    """3x3 -> 3x3 residual block (identity shortcut; 1x1 + BN if the width changes)."""
    shortcut = x
    if x.shape[-1] != channels:
        shortcut = conv_bn(x, nm, channels, 1, 1, name + "_down", relu=False)
    y = conv_bn(x, nm, channels, 3, 1, name + "_1")
    y = conv_bn(y, nm, channels, 3, 1, name + "_2", relu=False)
    y = layers.Add(name=name + "_add")([y, shortcut])
    return layers.ReLU(name=name + "_out")(y)


def transition(branches: list, nm: _Namer, widths: Sequence[int], name: str) -> list:
    """Adapt `branches` to `widths` and add the new lower-resolution branch(es)."""
    out = []
    for i, ch in enumerate(widths):
        if i < len(branches):
            x = branches[i]
            out.append(x if x.shape[-1] == ch else conv_bn(x, nm, ch, 3, 1, f"{name}_b{i}"))
        else:
            x = branches[-1]
            steps = i + 1 - len(branches)
            for s in range(steps):
                filters = ch if s == steps - 1 else x.shape[-1]
                x = conv_bn(x, nm, filters, 3, 2, f"{name}_b{i}_{s}")
            out.append(x)
    return out


def fuse(branches: list, nm: _Namer, name: str, multi_scale_output: bool = True) -> list:
    """HRNet's exchange unit: every output branch sums all branches brought to its resolution."""
    n = len(branches)
    outputs = []
    for i in range(n if multi_scale_output else 1):
        target = branches[i]
        ch_i = target.shape[-1]
        terms = []
        for j in range(n):
            x = branches[j]
            if j == i:
                terms.append(x)
            elif j > i:
                x = conv_bn(x, nm, ch_i, 1, 1, f"{name}_f{i}{j}", relu=False)
                x = layers.Resizing(
                    int(target.shape[1]), int(target.shape[2]), interpolation="nearest", name=f"{name}_f{i}{j}_up"
                )(x)
                terms.append(x)
            else:
                for s in range(i - j):
                    last = s == i - j - 1
                    x = conv_bn(
                        x, nm, ch_i if last else x.shape[-1], 3, 2, f"{name}_f{i}{j}_{s}", relu=not last
                    )
                terms.append(x)
        y = layers.Add(name=f"{name}_sum{i}")(terms)
        outputs.append(layers.ReLU(name=f"{name}_relu{i}")(y))
    return outputs


def hr_module(branches: list, nm: _Namer, num_blocks: int, name: str, multi_scale_output: bool = True) -> list:
    """Parallel basic-block branches followed by a fusion."""
    out = []
    for b, x in enumerate(branches):
        for k in range(num_blocks):
            x = basic_block(x, nm, x.shape[-1], f"{name}_b{b}_blk{k}")
        out.append(x)
    if len(out) == 1:
        return out
    return fuse(out, nm, name, multi_scale_output=multi_scale_output)


def build_hrnet(
    input_shape=(256, 192, 3),
    num_keypoints: int = 17,
    width: int = 32,
    num_modules: Sequence[int] = (1, 4, 3),
    num_blocks: int = 4,
    stem_channels: int = 64,
    stage1_planes: int = 64,
    stage1_blocks: int = 4,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """HRNet `images -> heatmaps` at 1/4 resolution (pose_hrnet of the reference code).

    Args:
        input_shape: `(H, W, 3)`; H and W multiples of 4 (of 32 for exactly
            the reference's x2 upsampling).
        num_keypoints: heatmap channels (COCO: 17).
        width: C, the width of the highest-resolution branch (W32: 32, W48: 48);
            branch b has `C * 2**b` channels.
        num_modules: modules in stages 2, 3, 4 (paper: 1, 4, 3). Fewer stages
            are allowed (`(1, 1)` stops after stage 3).
        num_blocks: basic blocks per branch in each module (paper: 4).
        stem_channels, stage1_planes, stage1_blocks: stem width (64), stage-1
            bottleneck planes (64 -> 256 channels) and blocks (4).
        seed: weight-initialisation seed.
    """
    h, w = int(input_shape[0]), int(input_shape[1])
    if h % 4 or w % 4 or h < 32 or w < 32:
        raise ValueError(f"HRNet input height and width must be multiples of 4 and >= 32, got {h}x{w}")
    if width < 1 or num_blocks < 1 or not num_modules or any(m < 1 for m in num_modules):
        raise ValueError(f"bad HRNet size: width={width}, num_modules={tuple(num_modules)}, num_blocks={num_blocks}")
    nm = _Namer(seed)
    images = keras.Input(shape=tuple(input_shape), name="images")
    x = conv_bn(images, nm, stem_channels, 3, 2, "stem1")
    x = conv_bn(x, nm, stem_channels, 3, 2, "stem2")
    for k in range(stage1_blocks):
        x = bottleneck_block(x, nm, stage1_planes, f"stage1_blk{k}")
    branches = [x]
    for s, modules in enumerate(num_modules):
        stage = s + 2
        widths = [width * 2**b for b in range(stage)]
        branches = transition(branches, nm, widths, f"transition{stage - 1}")
        for m in range(modules):
            last = s == len(num_modules) - 1 and m == modules - 1
            branches = hr_module(branches, nm, num_blocks, f"stage{stage}_m{m}", multi_scale_output=not last)
    heatmaps = nm.conv(num_keypoints, 1, 1, "final_layer", use_bias=True)(branches[0])
    return keras.Model(images, heatmaps, name=name or f"hrnet_w{width}")
