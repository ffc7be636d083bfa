"""SSD: Single Shot MultiBox Detector (Liu et al., ECCV 2016, arXiv:1512.02325).

`build_ssd(...)` builds the network as a functional Keras model,
`images [N, S, S, 3] -> (class_logits [N, A, K + 1], box_deltas [N, A, 4])`,
where `A` is the number of default boxes over all source feature maps (in the
order of `kerasnets.ops.anchors.ssd_default_boxes`) and class 0 is background:

* **base network**: VGG-style stages of 3x3 convs + ReLU with 2x2 max pooling
  between stages (`stage_widths`, `stage_depths`); the last stage's output is
  the first source map (VGG16's `conv4_3`, stride 8), L2-normalised with a
  learned per-channel scale initialised to 20 (`L2Normalization`, Sec. 3.1 /
  ParseNet) when the network has no BatchNorm;
* **top**: 2x2 max pool, the `conv5` stage (`top_widths`), a 3x3 stride-1 max
  pool, `fc6` as a 3x3 conv with dilation `fc_dilation` and `fc7` as a 1x1
  conv (`fc_width`): the second source map (stride 16);
* **extra feature layers**: per entry of `extras`, a 1x1 conv to half the
  width and a 3x3 conv with the given stride and padding: one more source map
  each (`conv8_2` ... `conv11_2`);
* **predictors** (Sec. 2.1): on every source map a 3x3 conv with
  `k (K + 1)` outputs (class scores) and one with `4 k` (offsets to the `k`
  default boxes of each location).

The paper's SSD300 (`build_ssd300_vgg16`, 26.3M parameters for 21 VOC
classes): VGG16 `conv1_1..conv4_3` (widths 64, 128, 256, 512; depths 2, 2,
3, 3; pooling with ceil mode), `conv5_1..5_3` (512), `pool5` 3x3 s1, `fc6`
1024 with dilation 6, `fc7` 1024, extras `conv8` (256 -> 512, s2), `conv9`
(128 -> 256, s2), `conv10`, `conv11` (128 -> 256, 3x3 valid): source maps of
38, 19, 10, 5, 3, 1 cells with 4, 6, 6, 6, 4, 4 default boxes per location =
8732 boxes. The reference starts from an ImageNet-trained VGG16 and has no
BatchNorm.

The default configuration of the `ssd` recipe is a reduced version of the same
layout for CPU training from scratch: narrower stages, one or two convs per
stage, BatchNorm after every conv (training a plain VGG from scratch without
ImageNet weights is slow to start) and no L2 normalisation then.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from kerasnets.ops.anchors import num_default_boxes_per_location
from kerasnets.saving import register

#: The paper's SSD300 VGG16 layout (arguments of `build_ssd`).
SSD300_VGG16 = dict(
    image_size=300,
    stage_widths=(64, 128, 256, 512),
    stage_depths=(2, 2, 3, 3),
    top_widths=(512, 512, 512),
    fc_width=1024,
    fc_dilation=6,
    extras=((512, 2, "same"), (256, 2, "same"), (256, 1, "valid"), (256, 1, "valid")),
    aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
    batch_norm=False,
)


@register
class L2Normalization(layers.Layer):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet; SSD's `conv4_3_norm`).

        y_c = gamma_c * x_c / sqrt(sum_c' x_c'^2 + eps)

    Args:
        scale: initial value of every `gamma_c` (SSD: 20).
        epsilon: added under the square root.

    Call arguments:
        inputs: `[..., C]` features.

    Reference: Liu, Rabinovich, Berg 2015, ParseNet, arXiv:1506.04579; SSD Sec. 3.1.
    """

    def __init__(self, scale: float = 20.0, epsilon: float = 1e-10, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.scale)
        )

    def call(self, inputs, training=None):
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(inputs), axis=-1, keepdims=True) + self.epsilon)
        return inputs / norm * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "epsilon": self.epsilon}


class _Builder:
    """Conv (+ BN) + ReLU blocks with unique names, L2-regularised kernels and per-layer seeds."""

    def __init__(self, batch_norm: bool, l2: float, seed):
        self.batch_norm = batch_norm
        self.l2 = l2
        self.seed = seed
        self.count = 0

    def _init(self):
        self.count += 1
        return keras.initializers.GlorotUniform(seed=None if self.seed is None else self.seed * 7919 + self.count)

    def conv(self, x, filters, kernel, name, stride=1, padding="same", dilation=1, relu=True):
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, dilation_rate=dilation,
            use_bias=not self.batch_norm, kernel_initializer=self._init(),
            kernel_regularizer=keras.regularizers.L2(self.l2) if self.l2 else None, name=name,
        )(x)
        if self.batch_norm:
            x = layers.BatchNormalization(name=name + "_bn")(x)
        return layers.ReLU(name=name + "_relu")(x) if relu else x

    def head(self, x, filters, name):
        return layers.Conv2D(
            filters, 3, padding="same", kernel_initializer=self._init(),
            kernel_regularizer=keras.regularizers.L2(self.l2) if self.l2 else None, name=name,
        )(x)


def _check(name, values, positive=True):
    values = tuple(values)
    if not values or (positive and any(int(v) < 1 for v in values)):
        raise ValueError(f"{name} must be non-empty positive integers, got {values}")
    return values


def default_aspect_ratios(num_sources: int):
    """SSD300's pattern: `(2,)` on the first and last maps, `(2, 3)` in between."""
    if num_sources < 2:
        raise ValueError(f"SSD needs at least 2 source maps, got {num_sources}")
    return [(2.0,)] + [(2.0, 3.0)] * (num_sources - 2) + [(2.0,)]


def build_ssd(
    image_size: int = 128,
    num_classes: int = 3,
    *,
    stage_widths: Sequence[int] = (16, 32, 64, 128),
    stage_depths: Sequence[int] = (1, 1, 2, 2),
    top_widths: Sequence[int] = (128,),
    fc_width: int = 256,
    fc_dilation: int = 1,
    extras: Sequence = ((128, 2, "same"), (128, 2, "same"), (128, 2, "same")),
    aspect_ratios: Sequence | None = None,
    batch_norm: bool = True,
    l2_normalize_first: bool | None = None,
    weight_decay: float = 5e-4,
    seed: int | None = 0,
    name: str = "ssd",
) -> keras.Model:
    """The SSD network (see the module docstring); `build_ssd(**SSD300_VGG16, num_classes=20)` is the paper's.

    Args:
        image_size: square input side S.
        num_classes: K object classes (the class head has K + 1 outputs per box).
        stage_widths, stage_depths: VGG stages up to the first source map
            (2x2 max pooling between them).
        top_widths: the convs after the next pooling (VGG16's conv5_x).
        fc_width, fc_dilation: `fc6` (3x3, dilated) and `fc7` (1x1) width.
        extras: `(width, stride, padding)` of each extra source layer (a 1x1
            conv to `width // 2` first).
        aspect_ratios: per source map, the ratios `r` used as `r` and `1/r`
            (default: `(2,)` on the first and last map, `(2, 3)` elsewhere, as
            SSD300).
        batch_norm: BatchNorm after every base/extra conv (not in the paper).
        l2_normalize_first: L2-normalise the first source map with a learned
            scale (default: when there is no BatchNorm, as the paper).
        weight_decay: coupled L2 weight decay `lambda` (gradient `+ lambda w`,
            Caffe's `weight_decay`); kernels get `L2(lambda / 2)`.
        seed: initialiser seed.

    Returns:
        A functional model with outputs `[class_logits, box_deltas]`; the
        source maps are the layers named `source_0`, `source_1`, ...
        (`ssd_feature_sizes`).
    """
    stage_widths = _check("stage_widths", stage_widths)
    stage_depths = _check("stage_depths", stage_depths)
    if len(stage_widths) != len(stage_depths):
        raise ValueError(f"stage_widths ({len(stage_widths)}) and stage_depths ({len(stage_depths)}) differ in length")
    top_widths = tuple(top_widths)
    num_sources = 2 + len(extras)
    if aspect_ratios is None:
        aspect_ratios = default_aspect_ratios(num_sources)
    if len(aspect_ratios) != num_sources:
        raise ValueError(f"aspect_ratios needs one entry per source map ({num_sources}), got {len(aspect_ratios)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if l2_normalize_first is None:
        l2_normalize_first = not batch_norm
    b = _Builder(batch_norm, weight_decay / 2.0, seed)

    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    for s, (width, depth) in enumerate(zip(stage_widths, stage_depths)):
        if s:
            x = layers.MaxPooling2D(2, padding="same", name=f"pool{s}")(x)
        for i in range(depth):
            x = b.conv(x, width, 3, f"conv{s + 1}_{i + 1}")
    first = L2Normalization(20.0, name="source_0_norm")(x) if l2_normalize_first else x
    sources = [layers.Identity(name="source_0")(first)]
    x = layers.MaxPooling2D(2, padding="same", name=f"pool{len(stage_widths)}")(x)
    for i, width in enumerate(top_widths):
        x = b.conv(x, width, 3, f"conv{len(stage_widths) + 1}_{i + 1}")
    if top_widths:
        x = layers.MaxPooling2D(3, strides=1, padding="same", name=f"pool{len(stage_widths) + 1}")(x)
    x = b.conv(x, fc_width, 3, "fc6", dilation=fc_dilation)
    x = b.conv(x, fc_width, 1, "fc7")
    sources.append(layers.Identity(name="source_1")(x))
    for e, extra in enumerate(extras):
        width, stride, padding = extra
        n = len(stage_widths) + 4 + e
        x = b.conv(x, max(int(width) // 2, 1), 1, f"conv{n}_1")
        x = b.conv(x, int(width), 3, f"conv{n}_2", stride=int(stride), padding=padding)
        sources.append(layers.Identity(name=f"source_{e + 2}")(x))

    class_outputs, box_outputs = [], []
    for level, (source, ratios) in enumerate(zip(sources, aspect_ratios)):
        if source.shape[1] is None or source.shape[1] < 1:
            raise ValueError(f"source map {level} has no cells for image_size={image_size}; use fewer extras")
        k = num_default_boxes_per_location(ratios)
        cls = b.head(source, k * (num_classes + 1), f"class_head_{level}")
        box = b.head(source, k * 4, f"box_head_{level}")
        class_outputs.append(layers.Reshape((-1, num_classes + 1), name=f"class_reshape_{level}")(cls))
        box_outputs.append(layers.Reshape((-1, 4), name=f"box_reshape_{level}")(box))
    class_logits = layers.Concatenate(axis=1, name="class_logits")(class_outputs)
    box_deltas = layers.Concatenate(axis=1, name="box_deltas")(box_outputs)
    model = keras.Model(inputs, [class_logits, box_deltas], name=name)
    return model


def ssd_feature_sizes(model: keras.Model) -> list[tuple[int, int]]:
    """`(H, W)` of every source map of a `build_ssd` model, in order."""
    sizes = []
    i = 0
    names = {layer.name for layer in model.layers}
    while f"source_{i}" in names:
        shape = model.get_layer(f"source_{i}").output.shape
        sizes.append((int(shape[1]), int(shape[2])))
        i += 1
    if not sizes:
        raise ValueError(f"model '{model.name}' has no 'source_0' layer: not built by build_ssd")
    return sizes


def build_ssd300_vgg16(num_classes: int = 20, **kwargs) -> keras.Model:
    """The paper's SSD300 with a VGG16 base (8732 default boxes); weights are untrained."""
    return build_ssd(num_classes=num_classes, **{**SSD300_VGG16, **kwargs})
