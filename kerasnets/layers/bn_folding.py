"""Fold inference-mode batch normalization into the preceding Dense / Conv kernel and bias.

For a linear layer `z = x * W + b` followed by batch normalization in inference
mode, `y = gamma * (z - mean) / sqrt(var + epsilon) + beta`, the pair is one
linear layer with, per output channel,

    s  = gamma / sqrt(var + epsilon)
    W' = W * s              (broadcast over the output-channel axis of the kernel)
    b' = beta + (b - mean) * s

so the BN disappears from the graph (fewer ops in a SavedModel or a TFLite
flatbuffer, no `MUL`/`ADD` pair after a fully connected layer).
`BatchRenormalization` folds the same way with `s = gamma / moving_stddev`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras.src.models.functional import Functional  # the class of keras.Model(inputs, outputs)

from kerasnets.layers.batch_renormalization import BatchRenormalization

_CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE_TYPES = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
# Conv*Transpose subclass Conv*: their kernels keep the output channels elsewhere.
_TRANSPOSE_TYPES = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


@dataclasses.dataclass
class FoldReport:
    """What `fold_batch_norm` did: `folded` pairs `(linear layer, BN layer)` and
    `unfolded` pairs `(BN layer, reason)`, by layer name (nested models prefixed)."""

    folded: list = dataclasses.field(default_factory=list)
    unfolded: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"folded {len(self.folded)} batch norm layer(s)"]
        lines += [f"  {bn} -> {lin}" for lin, bn in self.folded]
        if self.unfolded:
            lines.append(f"left {len(self.unfolded)} unfolded:")
            lines += [f"  {bn}: {why}" for bn, why in self.unfolded]
        return "\n".join(lines)


def _is_bn(layer) -> bool:
    return isinstance(layer, (keras.layers.BatchNormalization, BatchRenormalization))


def bn_inference_affine(layer):
    """`(scale, offset)` float64 arrays with `BN(x) = x * scale + offset` in inference mode."""
    if isinstance(layer, BatchRenormalization):
        stddev = np.asarray(layer.moving_stddev.numpy(), "float64")
        scale = 1.0 / stddev
    else:
        var = np.asarray(layer.moving_variance.numpy(), "float64")
        scale = 1.0 / np.sqrt(var + layer.epsilon)
    mean = np.asarray(layer.moving_mean.numpy(), "float64")
    if layer.gamma is not None:
        scale = scale * np.asarray(layer.gamma.numpy(), "float64")
    offset = -mean * scale
    if layer.beta is not None:
        offset = offset + np.asarray(layer.beta.numpy(), "float64")
    return scale, offset


def _producer_problem(layer, bn, rank: int):
    """Why `layer -> bn` cannot be folded (None if it can)."""
    if isinstance(layer, _TRANSPOSE_TYPES) or not isinstance(
        layer, (keras.layers.Dense,) + _CONV_TYPES + _DEPTHWISE_TYPES
    ):
        return f"preceded by {type(layer).__name__} '{layer.name}' (only Dense, Conv1D/2D/3D, DepthwiseConv1D/2D fold)"
    if layer.activation not in (None, keras.activations.linear):
        return f"'{layer.name}' has a non-linear activation between it and the BN"
    if getattr(layer, "quantization_mode", None):
        return f"'{layer.name}' is quantized"
    if getattr(layer, "lora_enabled", False):
        return f"'{layer.name}' has LoRA enabled"
    bn_axis = bn.axis % rank
    if isinstance(layer, keras.layers.Dense):
        channel_axis = rank - 1
    else:
        channel_axis = 1 if layer.data_format == "channels_first" else rank - 1
    if bn_axis != channel_axis:
        return f"BN axis {bn.axis} is not the output-channel axis of '{layer.name}'"
    return None


def _folded_weights(layer, bn):
    """Kernel and bias of `layer` with `bn` folded in (in the layer's variable dtype)."""
    kernel = np.asarray(layer.kernel.numpy(), "float64")
    bias = np.asarray(layer.bias.numpy(), "float64") if layer.use_bias else 0.0
    scale, offset = bn_inference_affine(bn)
    if isinstance(layer, _DEPTHWISE_TYPES):
        # kernel [..., in, multiplier]; output channel c * multiplier + m.
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:
        kernel = kernel * scale  # output channels on the last axis (Dense [in, out], Conv [..., in, out])
    bias = bias * scale + offset
    dtype = layer.kernel.dtype
    return kernel.astype(dtype), np.asarray(bias).astype(dtype)


def _folded_layer(layer):
    config = layer.get_config()
    config["use_bias"] = True
    return layer.__class__.from_config(config)


def _copy(layer):
    """Fresh layer of the same config (weights are copied once it is built)."""
    if isinstance(layer, (keras.Sequential, keras.Model)):
        raise AssertionError("nested models are folded recursively")
    return layer.__class__.from_config(layer.get_config())


# --------------------------------------------------------------------- public


def fold_batch_norm(model, *, return_report: bool = False):
    """A copy of `model` with each inference-mode BN folded into the linear layer before it.

    Folds `Dense`, `Conv1D/2D/3D` and `DepthwiseConv1D/2D` (any `data_format`,
    with or without bias, linear activation) immediately followed by
    `keras.layers.BatchNormalization` (also `GhostBatchNormalization`) or
    `BatchRenormalization` on the channel axis, when the linear layer's output
    feeds only that BN and neither layer is shared. Works on `Sequential` and
    Functional models, recursing into nested ones. Every other BN is kept as is
    and listed, with the reason, in the report (e.g. BN after an activation,
    after a concatenation, at the model input, or a BN whose call is pinned to
    `training=True`). The original model is not modified; the copy holds its own
    weights. Folding assumes inference: the copy's behavior under
    `training=True` differs (no batch statistics).

    Args:
        model: a built `keras.Sequential` or Functional `keras.Model`.
        return_report: also return a `FoldReport`.

    Returns:
        The folded `keras.Model`, or `(model, FoldReport)`.
    """
    report = FoldReport()
    folded = _fold(model, report, prefix="")
    return (folded, report) if return_report else folded


def _fold(model, report: FoldReport, prefix: str):
    if isinstance(model, keras.Sequential):
        return _fold_sequential(model, report, prefix)
    if isinstance(model, Functional):
        return _fold_functional(model, report, prefix)
    raise ValueError(
        f"fold_batch_norm needs a Sequential or Functional model; '{model.name}' is a subclassed "
        f"{type(model).__name__} whose graph is unknown"
    )


def _child(layer, report, prefix):
    """Copy of one layer: nested models are folded recursively, others cloned by config."""
    if isinstance(layer, keras.Model):
        return _fold(layer, report, prefix + layer.name + "/"), True
    return _copy(layer), False


def _fold_sequential(model, report, prefix):
    if not model.built or not model.inputs:
        raise ValueError(f"Sequential model '{model.name}' must be built with a known input shape before folding")
    layers = list(model.layers)
    new_layers, copies = [], []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and _is_bn(nxt) and not isinstance(layer, keras.Model):
            problem = _producer_problem(layer, nxt, len(nxt.input.shape))
            if problem is None:
                new = _folded_layer(layer)
                new_layers.append(new)
                copies.append((new, _folded_weights(layer, nxt), None))
                report.folded.append((prefix + layer.name, prefix + nxt.name))
                i += 2
                continue
        if _is_bn(layer):
            prev = layers[i - 1] if i else None
            why = "first layer of the model" if prev is None else _producer_problem(prev, layer, len(layer.input.shape))
            report.unfolded.append((prefix + layer.name, why))
        new, nested = _child(layer, report, prefix)
        new_layers.append(new)
        if not nested:
            copies.append((new, None, layer))
        i += 1
    spec = model.inputs[0]
    folded = keras.Sequential([keras.Input(batch_shape=spec.shape, dtype=spec.dtype)] + new_layers, name=model.name)
    _assign(copies)
    return folded


def _assign(copies):
    for new, weights, old in copies:
        new.set_weights(list(weights) if weights is not None else old.get_weights())


def _fold_functional(model, report, prefix):
    # Input side first (larger depth = closer to the inputs), for a readable report.
    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True) for node in model._nodes_by_depth[depth]]
    uses_of_op: dict[int, int] = {}
    consumers: dict[tuple, int] = {}
    for node in nodes:
        if node.operation is None or node.is_input:
            continue
        uses_of_op[id(node.operation)] = uses_of_op.get(id(node.operation), 0) + 1
        for tensor in node.input_tensors:
            key = _tensor_key(tensor)
            consumers[key] = consumers.get(key, 0) + 1
    for tensor in model.outputs:
        key = _tensor_key(tensor)
        consumers[key] = consumers.get(key, 0) + 1

    fold_into: dict[int, object] = {}  # id(linear layer) -> BN layer
    dropped: set[int] = set()
    for node in nodes:
        bn = node.operation
        if node.is_input or not _is_bn(bn):
            continue
        name = prefix + bn.name
        if uses_of_op.get(id(bn), 0) != 1:
            report.unfolded.append((name, "the BN layer is shared (called more than once)"))
            continue
        if node.arguments.kwargs.get("training") is True:
            report.unfolded.append((name, "called with training=True in the graph"))
            continue
        if len(node.input_tensors) != 1:
            report.unfolded.append((name, "called with a mask or several inputs"))
            continue
        tensor = node.input_tensors[0]
        producer = tensor._keras_history.operation
        if producer is None or isinstance(producer, keras.layers.InputLayer):
            report.unfolded.append((name, "first layer of the model"))
            continue
        if isinstance(producer, keras.Model):
            report.unfolded.append((name, f"preceded by the nested model '{producer.name}'"))
            continue
        problem = _producer_problem(producer, bn, len(tensor.shape))
        if problem is None and uses_of_op.get(id(producer), 0) != 1:
            problem = f"'{producer.name}' is shared (called more than once)"
        if problem is None and consumers.get(_tensor_key(tensor), 0) != 1:
            problem = f"the output of '{producer.name}' is also used elsewhere"
        if problem is not None:
            report.unfolded.append((name, problem))
            continue
        fold_into[id(producer)] = bn
        dropped.add(id(bn))
        report.folded.append((prefix + producer.name, name))

    copies = []

    def clone_function(layer):
        if id(layer) in dropped:
            return layer  # never called: call_function skips it
        if not isinstance(layer, keras.layers.Layer):
            return layer  # stateless keras.ops operation
        if id(layer) in fold_into:
            new = _folded_layer(layer)
            copies.append((new, _folded_weights(layer, fold_into[id(layer)]), None))
            return new
        new, nested = _child(layer, report, prefix)
        if not nested:
            copies.append((new, None, layer))
        return new

    def call_function(layer, *args, **kwargs):
        if id(layer) in dropped:
            return args[0]
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone_function, call_function=call_function)
    _assign(copies)
    return folded


def _tensor_key(tensor):
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)
