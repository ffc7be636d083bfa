"""Conv2/4/6/8 of Frankle & Carbin (2019) as used by edge-popup and supermask papers.

VGG-like stacks of 3x3 "same" convolutions with ReLU, two per block and a 2x2
max-pool after each block, widths 64, 128, 256, 512 for blocks 1-4 (Conv2 =
block 1, Conv4 = blocks 1-2, Conv6 = 1-3, Conv8 = 1-4), then a head of three
fully connected layers 256-256-classes (ReLU between; the reference code
writes them as 1x1 convolutions on the flattened features, which is the same
map). No batch norm and no biases (allenai/hidden-networks `models/frankle.py`).
`width_mult` scales every width (the repo's Conv4Wide/Conv6Wide).

`conv_type` picks the layers:

* ``"edge_popup"``: `EdgePopupConv2D` / `EdgePopupDense` (frozen random
  weights, learned top-k scores), every layer including first and last;
* ``"supermask"``: `SupermaskConv2D` / `SupermaskDense` (Zhou et al.);
* ``"dense"``: ordinary `Conv2D` / `Dense` trained as usual (the baseline),
  untruncated Kaiming-normal init.

Weight decay is the coupled L2 of PyTorch's SGD (``loss += wd/2 * sum(x^2)``)
on what trains: the scores of the subnet layers, the kernels of the dense net.
"""

from __future__ import annotations

import keras

from kerasnets.layers import EdgePopupConv2D, EdgePopupDense, SupermaskConv2D, SupermaskDense

CONV_TYPES = ("edge_popup", "supermask", "dense")
BLOCK_WIDTHS = (64, 128, 256, 512)
HEAD_WIDTHS = (256, 256)


def blocks_for_depth(depth: int) -> int:
    """Conv2 -> 1 block, Conv4 -> 2, Conv6 -> 3, Conv8 -> 4."""
    if depth not in (2, 4, 6, 8):
        raise ValueError(f"depth must be 2, 4, 6 or 8 (Conv2/4/6/8), got {depth!r}")
    return depth // 2


def _scaled(width: int, width_mult: float) -> int:
    return max(1, int(round(width * width_mult)))


def _layer_factories(conv_type, *, k, weight_init, scale_fan, weight_decay, eval_mask, seed):
    """(conv(filters, name), dense(units, activation, name)) for `conv_type`."""
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
    counter = [0]

    def next_seed():
        counter[0] += 1
        return None if seed is None else seed * 1000 + counter[0]

    if conv_type == "dense":
        def init():
            return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=next_seed())

        def conv(filters, name):
            return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", use_bias=False,
                                       kernel_initializer=init(), kernel_regularizer=regularizer, name=name)

        def dense(units, activation, name):
            return keras.layers.Dense(units, activation=activation, use_bias=False, kernel_initializer=init(),
                                      kernel_regularizer=regularizer, name=name)

        return conv, dense

    common = dict(weight_init=weight_init, scale_fan=scale_fan, scores_regularizer=regularizer)
    if conv_type == "edge_popup":
        conv_cls, dense_cls = EdgePopupConv2D, EdgePopupDense
        common["k"] = k
    elif conv_type == "supermask":
        conv_cls, dense_cls = SupermaskConv2D, SupermaskDense
        common["eval_mask"] = eval_mask
    else:
        raise ValueError(f"conv_type must be one of {CONV_TYPES}, got {conv_type!r}")

    def conv(filters, name):
        return conv_cls(filters, 3, padding="same", activation="relu", seed=next_seed(), name=name, **common)

    def dense(units, activation, name):
        return dense_cls(units, activation=activation, seed=next_seed(), name=name, **common)

    return conv, dense


def build_conv_net(
    depth: int = 6,
    *,
    conv_type: str = "edge_popup",
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    width_mult: float = 1.0,
    k: float = 0.5,
    weight_init: str = "signed_kaiming_constant",
    scale_fan: bool = True,
    weight_decay: float = 0.0,
    eval_mask: str = "threshold",
    preprocessing=None,
    seed: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Functional Conv`depth` network returning logits.

    Args:
        depth: 2, 4, 6 or 8.
        conv_type: ``"edge_popup"``, ``"supermask"`` or ``"dense"``.
        input_shape: HWC; every block halves H and W, so they must be
            divisible by ``2 ** (depth // 2)``.
        num_classes: logits.
        width_mult: multiplies every conv and hidden FC width.
        k: fraction of weights kept (edge-popup only).
        weight_init, scale_fan: frozen-weight init of the subnet layers (see
            `EdgePopupDense`); ignored for ``"dense"`` (untruncated Kaiming normal).
        weight_decay: coupled L2 coefficient (``wd/2 * sum(x^2)`` in the loss).
        eval_mask: inference mask of supermask layers.
        preprocessing: optional layer applied to the inputs first (e.g. a
            `keras.layers.Normalization` with the data's statistics).
        seed: derives one seed per layer (None: unseeded).
        name: model name.
    """
    blocks = blocks_for_depth(depth)
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
    h, w = input_shape[0], input_shape[1]
    if h % 2**blocks or w % 2**blocks:
        raise ValueError(f"Conv{depth} halves the image {blocks} times; input {h}x{w} must be divisible by {2**blocks}")
    conv, dense = _layer_factories(
        conv_type, k=k, weight_init=weight_init, scale_fan=scale_fan, weight_decay=weight_decay,
        eval_mask=eval_mask, seed=seed,
    )
    inputs = keras.Input(tuple(input_shape), name="images")
    x = preprocessing(inputs) if preprocessing is not None else inputs
    for b in range(blocks):
        width = _scaled(BLOCK_WIDTHS[b], width_mult)
        x = conv(width, f"block{b + 1}_conv1")(x)
        x = conv(width, f"block{b + 1}_conv2")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b + 1}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(HEAD_WIDTHS):
        x = dense(_scaled(units, width_mult), "relu", f"fc{i + 1}")(x)
    logits = dense(num_classes, None, "logits")(x)
    return keras.Model(inputs, logits, name=name or f"conv{depth}_{conv_type}")
