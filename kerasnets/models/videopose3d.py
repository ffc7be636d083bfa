"""VideoPose3D temporal convolutional model (Pavllo, Feichtenhofer, Grangier, Auli, CVPR 2019).

A 2-D keypoint sequence `[B, T, J_in, F]` (F = 2 coordinates) is flattened to
`J_in * F` channels and lifted to 3-D `[B, T', J_out, 3]` by a stack of
valid (unpadded) temporal convolutions (`kerasnets.layers.TemporalConvBlock`):

* `expand`: Conv1D(J_in F -> C, width w_0) + BN + ReLU + dropout;
* block i = 1..B: Conv1D(C -> C, width w_i, dilation d_i = w_0 ... w_{i-1})
  + BN + ReLU + dropout, Conv1D 1x1 + BN + ReLU + dropout, plus the input
  *sliced* to the kept frames (centre, or last frames when causal);
* `shrink`: Conv1D 1x1 (C -> 3 J_out) with bias.

The receptive field is `1 + sum_i (w_i - 1) d_i`: 27 frames for widths
(3, 3, 3), 81 for (3, 3, 3, 3), 243 for (3, 3, 3, 3, 3); the model outputs
`T' = T - RF + 1` frames, output `i` seeing inputs `i .. i + RF - 1` and
estimating the pose of frame `i + (RF - 1) / 2` (centre), or of frame
`i + RF - 1` when `causal=True` (real-time use: no future frames).

`build_strided_videopose3d(model)` builds the paper's optimised training
model on the *same layers* (shared weights): every convolution runs with
stride = its width and no dilation, so an input of exactly RF frames gives
the one output frame of the dilated model on that window at a fraction of
the cost (the reference trains with it and evaluates with the dilated one).
"""

from __future__ import annotations

import math

import keras

from kerasnets.layers.temporal_conv_block import TemporalConvBlock


def receptive_field(filter_widths) -> int:
    """`1 + sum_i (w_i - 1) prod_{j<i} w_j` frames."""
    widths = _check_widths(filter_widths)
    rf, dilation = 1, 1
    for w in widths:
        rf += (w - 1) * dilation
        dilation *= w
    return rf


def _check_widths(filter_widths) -> tuple[int, ...]:
    widths = tuple(int(w) for w in filter_widths)
    if not widths:
        raise ValueError("filter_widths must name at least one width")
    bad = [w for w in widths if w < 1 or w % 2 == 0]
    if bad:
        raise ValueError(f"filter widths must be odd and positive (the reference allows only odd), got {widths}")
    return widths


def temporal_blocks(model: keras.Model) -> list[TemporalConvBlock]:
    """The model's `TemporalConvBlock`s in order (expand first)."""
    blocks = [layer for layer in model.layers if isinstance(layer, TemporalConvBlock)]
    if not blocks:
        raise ValueError(f"model {model.name!r} has no TemporalConvBlock")
    return blocks


def model_receptive_field(model: keras.Model) -> int:
    """Receptive field of a model built by `build_videopose3d` (from its layers)."""
    return 1 + sum((b.kernel_size - 1) * b.dilation_rate for b in temporal_blocks(model))


def is_causal(model: keras.Model) -> bool:
    return any(b.causal for b in temporal_blocks(model))


def build_videopose3d(
    num_joints_in: int = 17,
    in_features: int = 2,
    num_joints_out: int = 17,
    filter_widths=(3, 3, 3, 3, 3),
    channels: int = 1024,
    dropout: float = 0.25,
    causal: bool = False,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    seed: int | None = None,
    name: str = "videopose3d",
) -> keras.Model:
    """The dilated temporal model, `[B, T, J_in, F] -> [B, T - RF + 1, J_out, 3]` for any `T >= RF`.

    Defaults are the paper's: widths 3,3,3,3,3 (243 frames), 1024 channels,
    dropout 0.25, BN momentum 0.1 (PyTorch) = 0.9 (Keras), eps 1e-5.
    """
    widths = _check_widths(filter_widths)
    for key, value in (("num_joints_in", num_joints_in), ("in_features", in_features),
                       ("num_joints_out", num_joints_out), ("channels", channels)):  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    inputs = keras.Input((None, num_joints_in, in_features), name="keypoints_2d")
    x = keras.layers.Reshape((-1, num_joints_in * in_features), name="flatten_joints")(inputs)
    common = dict(dropout=dropout, momentum=momentum, epsilon=epsilon)
    x = TemporalConvBlock(channels, widths[0], 1, residual=False, seed=seed, name="expand", **common)(x)
    dilation = widths[0]
    for i, w in enumerate(widths[1:], start=1):
        block_seed = None if seed is None else seed + 10 * i
        x = TemporalConvBlock(
            channels, w, dilation, residual=True, causal=causal, seed=block_seed, name=f"block_{i}", **common
        )(x)
        dilation *= w
    x = keras.layers.Conv1D(
        num_joints_out * 3,
        1,
        use_bias=True,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=seed),
        bias_initializer=keras.initializers.RandomUniform(
            -1.0 / math.sqrt(channels), 1.0 / math.sqrt(channels), seed=seed
        ),  # PyTorch's default bias init
        name="shrink",
    )(x)
    outputs = keras.layers.Reshape((-1, num_joints_out, 3), name="joints_3d")(x)
    return keras.Model(inputs, outputs, name=name)


def build_strided_videopose3d(model: keras.Model, name: str | None = None) -> keras.Model:
    """The optimised single-frame training model on `model`'s layers (weights shared).

    Input `[B, RF, J_in, F]` (exactly the receptive field), output `[B, 1, J_out, 3]`.
    """
    blocks = temporal_blocks(model)
    rf = model_receptive_field(model)
    _, _, joints_in, features = model.input_shape
    inputs = keras.Input((rf, joints_in, features), name="keypoints_2d")
    x = model.get_layer("flatten_joints")(inputs)
    for block in blocks:
        x = block(x, strided=True)
    x = model.get_layer("shrink")(x)
    outputs = model.get_layer("joints_3d")(x)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_strided")


def output_alignment(model: keras.Model) -> int:
    """Input frame (within the receptive field) an output frame estimates: `(RF-1)/2`, or `RF-1` if causal."""
    rf = model_receptive_field(model)
    return rf - 1 if is_causal(model) else (rf - 1) // 2


def padding_for_sequence(model: keras.Model) -> tuple[int, int]:
    """`(before, after)` edge padding that makes the output one frame per input frame, aligned.

    Non-causal: `(RF-1)/2` each side; causal: `RF-1` before, none after (the
    reference pads by `pad + causal_shift` and `pad - causal_shift`).
    """
    rf = model_receptive_field(model)
    before = output_alignment(model)
    return before, rf - 1 - before
