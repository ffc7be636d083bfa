"""Turn a trained edge-popup / supermask network into a plain pruned Keras model.

`to_pruned_model(model)` clones a functional or Sequential model, replacing
every `EdgePopupDense` / `SupermaskDense` by a `keras.layers.Dense` and every
`EdgePopupConv2D` / `SupermaskConv2D` by a `keras.layers.Conv2D` whose kernel
is the layer's inference kernel ``W * mask`` (zeros where pruned). Other layers
are cloned with their weights. The result needs no kerasnets code: it saves to
SavedModel / `.keras` and converts to TFLite with builtin ops only, and its
outputs equal the original model's inference outputs (``training=False``) up to
float round-off.
"""

from __future__ import annotations

import keras
import numpy as np


def _subnet_types():
    from kerasnets.layers import _subnet

    return _subnet.SubnetLayer, _subnet.DenseMixin, _subnet.Conv2DMixin


def _plain_layer(layer):
    """The plain Keras layer that replaces subnet `layer` (unbuilt, same name)."""
    _, dense_mixin, conv_mixin = _subnet_types()
    common = dict(
        activation=layer.activation,
        use_bias=layer.use_bias,
        name=layer.name,
        dtype=layer.dtype_policy,
    )
    if isinstance(layer, dense_mixin):
        return keras.layers.Dense(layer.units, **common)
    if isinstance(layer, conv_mixin):
        return keras.layers.Conv2D(
            layer.filters,
            layer.kernel_size,
            strides=layer.strides,
            padding=layer.padding,
            data_format=layer.data_format,
            dilation_rate=layer.dilation_rate,
            **common,
        )
    raise TypeError(f"no plain equivalent for {type(layer).__name__}")  # pragma: no cover


def pruned_weights(layer) -> list[np.ndarray]:
    """``[W * mask]`` (plus the frozen bias) of a subnet layer, as the plain layer's weights."""
    kernel = keras.ops.convert_to_numpy(layer.kernel) * keras.ops.convert_to_numpy(layer.inference_mask())
    weights = [kernel.astype(layer.kernel.dtype)]
    if layer.use_bias:
        weights.append(keras.ops.convert_to_numpy(layer.bias))
    return weights


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def to_pruned_model(model: keras.Model) -> keras.Model:
    """A copy of `model` with every subnet layer replaced by a plain `Dense` / `Conv2D`.

    Args:
        model: a built functional or Sequential Keras model (nested functional
            / Sequential sub-models are converted recursively).

    Returns:
        A new `keras.Model` with the same inputs, outputs and layer names;
        its weights are copies (later training of `model` does not change it).

    Raises:
        ValueError: `model` is a subclassed model (its graph cannot be
            cloned), or a `Supermask*` layer uses ``eval_mask="sample"`` (no
            fixed kernel exists).
    """
    subnet_layer, _, _ = _subnet_types()
    if not isinstance(model, keras.Model) or not _is_graph_model(model):
        raise ValueError(
            f"to_pruned_model needs a functional or Sequential keras.Model, got {type(model).__name__}; "
            "for a subclassed model, convert the functional network it wraps"
        )
    if not model.built:
        raise ValueError("to_pruned_model needs a built model (call it once or give it an Input)")

    def clone(layer):
        if isinstance(layer, subnet_layer):
            layer.inference_mask()  # raises early for eval_mask="sample"
            return _plain_layer(layer)
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            return to_pruned_model(layer)
        return layer.__class__.from_config(layer.get_config())

    pruned = keras.models.clone_model(model, clone_function=clone)
    originals = {layer.name: layer for layer in model.layers}
    for new in pruned.layers:
        old = originals.get(new.name)
        if old is None or isinstance(old, keras.Model):
            continue  # nested models came back converted with their weights
        if isinstance(old, subnet_layer):
            new.set_weights(pruned_weights(old))
        elif old.weights:
            new.set_weights(old.get_weights())
    return pruned
