"""Shared machinery of the masked-random-weight layers (edge-popup and Zhou supermasks).

A *subnet layer* holds a frozen random kernel ``W`` (``trainable=False``) and a
trainable score tensor ``S`` of the same shape. The forward pass uses the
effective kernel ``W * m(S)`` where ``m`` is a binary mask:

* edge-popup (Ramanujan et al. 2020): ``m = topk(|S|, k)``, the ``k`` fraction
  of entries with the largest ``|S|`` in this layer;
* supermask (Zhou et al. 2019): ``m ~ Bernoulli(sigmoid(S))``.

Both masks are made differentiable with a straight-through estimator written
as ``hard + (x - stop_gradient(x))``: the forward value is exactly ``hard``
(no float round-off), the gradient w.r.t. ``x`` is the identity.

The public layers (`EdgePopupDense`, `EdgePopupConv2D`, `SupermaskDense`,
`SupermaskConv2D`) subclass `EdgePopupLayer` / `SupermaskLayer` below and add
only the linear op (matmul or convolution).
"""

from __future__ import annotations

import math
import random

import keras
import numpy as np
from keras import ops

WEIGHT_INITS = ("kaiming_normal", "signed_kaiming_constant", "unsigned_kaiming_constant")
SUPERMASK_EVAL_MASKS = ("threshold", "expected", "sample")


# --------------------------------------------------------------------------- masks


def kept_count(n: int, k: float) -> int:
    """Entries kept by `topk_mask` out of `n`: ``n - int((1 - k) * n)``.

    This is the allenai/hidden-networks ``GetSubnet`` rule: ``j = int((1-k)*n)``
    entries with the smallest scores are zeroed (Python float arithmetic and
    truncation, so e.g. ``k=0.5, n=7`` keeps 4).
    """
    return n - int((1.0 - k) * n)


def topk_mask(values, k: float):
    """Binary mask keeping the `k` fraction of largest `values`, straight-through gradient.

    Forward: 1 at the ``kept_count(n, k)`` largest entries of `values`
    (ties broken by position), 0 elsewhere. Backward: the identity, so every
    entry, kept or not, receives the upstream gradient.
    """
    shape = tuple(values.shape)
    n = int(np.prod(shape))
    kept = kept_count(n, k)
    flat = ops.reshape(values, (n,))
    if kept == n:
        hard = ops.ones_like(flat)
    else:
        _, idx = ops.top_k(ops.stop_gradient(flat), kept, sorted=False)
        hard = ops.scatter(ops.expand_dims(idx, -1), ops.ones((kept,), values.dtype), (n,))
    hard = ops.reshape(hard, shape)
    return hard + (values - ops.stop_gradient(values))


def bernoulli_mask(probabilities, uniform_noise):
    """``Bernoulli(p)`` sample (``u < p``) with straight-through gradient w.r.t. `p`."""
    hard = ops.cast(ops.less(uniform_noise, probabilities), probabilities.dtype)
    return hard + (probabilities - ops.stop_gradient(probabilities))


# --------------------------------------------------------------------------- inits


def kaiming_std(fan_in: int, fan_scale: float = 1.0) -> float:
    """``gain / sqrt(fan)`` with the ReLU gain sqrt(2) and ``fan = fan_in * fan_scale``."""
    return math.sqrt(2.0 / (fan_in * fan_scale))


def fan_in_of(shape) -> int:
    """Fan-in of a Dense ``(in, out)`` or conv ``(*kernel, in, out)`` kernel (as PyTorch/Keras)."""
    return int(np.prod(shape[:-1]))


def frozen_kernel_initializer(kind: str, fan_scale: float, seed):
    """Initializer of the frozen random weights (untruncated, unlike `keras.initializers.HeNormal`).

    * ``kaiming_normal``: ``W ~ N(0, std^2)``;
    * ``signed_kaiming_constant``: ``W = ±std`` with a fair random sign;
    * ``unsigned_kaiming_constant``: ``W = std`` everywhere;

    with ``std = sqrt(2 / (fan_in * fan_scale))``.
    """
    if kind not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {kind!r}")

    def init(shape, dtype=None):
        dtype = dtype or "float32"
        std = kaiming_std(fan_in_of(shape), fan_scale)
        if kind == "kaiming_normal":
            return keras.random.normal(shape, stddev=std, dtype=dtype, seed=seed)
        if kind == "signed_kaiming_constant":
            coin = keras.random.uniform(shape, dtype=dtype, seed=seed)
            return ops.where(coin < 0.5, -std, std)
        return ops.full(shape, std, dtype=dtype)

    return init


def kaiming_uniform_scores(seed=None):
    """PyTorch's ``kaiming_uniform_(a=sqrt(5))``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)


# --------------------------------------------------------------------------- linear ops


def dense_apply(inputs, kernel):
    return ops.matmul(inputs, kernel)


def conv_output_length(length, kernel, stride, padding, dilation):
    if length is None:
        return None
    span = (kernel - 1) * dilation + 1
    if padding == "same":
        return (length + stride - 1) // stride
    return (length - span + stride) // stride


def normalize_tuple(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or any(v < 1 for v in value):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return value


# --------------------------------------------------------------------------- base layers


class SubnetLayer(keras.layers.Layer):
    """Base: ``y = activation(op(x, W * mask(S)) + b)`` with frozen ``W`` (and ``b``), trainable ``S``.

    Subclasses define `_kernel_shape(input_shape)`, `_apply(inputs, kernel)` and
    `mask(training)`; the public layers document the arguments.
    """

    def __init__(
        self,
        *,
        activation=None,
        use_bias=False,
        weight_init="kaiming_normal",
        scale_fan=False,
        scores_initializer=None,
        scores_regularizer=None,
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.weight_init = weight_init
        self.scale_fan = bool(scale_fan)
        self.scores_initializer = keras.initializers.get(scores_initializer) if scores_initializer is not None else None
        self.scores_regularizer = keras.regularizers.get(scores_regularizer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        # Like Keras' initializers: an unseeded layer draws its init seed from
        # Python's RNG (seeded by `keras.utils.set_random_seed`) here, so
        # `build` also works when traced inside a subclassed model's call.
        self._init_seed = seed if seed is not None else random.randint(1, 2**31 - 2)

    # ---- hooks for subclasses
    def _kernel_shape(self, input_shape):  # pragma: no cover - abstract
        raise NotImplementedError

    def _apply(self, inputs, kernel):  # pragma: no cover - abstract
        raise NotImplementedError

    def _fan_scale(self) -> float:
        """Factor on the fan in the weight std when ``scale_fan=True``."""
        return 1.0

    def _default_scores_initializer(self):
        raise NotImplementedError  # pragma: no cover - abstract

    def mask(self, training=None):
        """The binary (straight-through) mask used by the forward pass."""
        raise NotImplementedError  # pragma: no cover - abstract

    def inference_mask(self):
        """The deterministic mask used at inference and by `to_pruned_model`."""
        return ops.stop_gradient(self.mask(training=False))

    # ---- Keras layer API
    def build(self, input_shape):
        shape = self._kernel_shape(input_shape)
        fan_scale = self._fan_scale() if self.scale_fan else 1.0
        self.kernel = self.add_weight(
            name="kernel",
            shape=shape,
            initializer=frozen_kernel_initializer(self.weight_init, fan_scale, self._init_seed),
            trainable=False,
        )
        scores_init = self.scores_initializer or self._default_scores_initializer()
        self.scores = self.add_weight(
            name="scores",
            shape=shape,
            initializer=scores_init,
            regularizer=self.scores_regularizer,
            trainable=True,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(shape[-1],), initializer=self.bias_initializer, trainable=False
            )
        else:
            self.bias = None

    def effective_kernel(self, training=None):
        """``W * mask``: the kernel the forward pass multiplies with."""
        return ops.multiply(ops.stop_gradient(self.kernel), self.mask(training))

    def call(self, inputs, training=None):
        outputs = self._apply(inputs, self.effective_kernel(training))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "weight_init": self.weight_init,
            "scale_fan": self.scale_fan,
            "scores_initializer": (
                keras.initializers.serialize(self.scores_initializer) if self.scores_initializer is not None else None
            ),
            "scores_regularizer": keras.regularizers.serialize(self.scores_regularizer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "seed": self.seed,
        }


class EdgePopupLayer(SubnetLayer):
    """Edge-popup mask: ``topk(|S|, k)`` per layer, straight-through to all scores."""

    def __init__(self, *, k=0.5, **kwargs):
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < float(k) <= 1.0:
            raise ValueError(f"k (fraction of weights kept) must be in (0, 1], got {k!r}")
        super().__init__(**kwargs)
        self.k = float(k)

    def _fan_scale(self):
        return self.k

    def _default_scores_initializer(self):
        return kaiming_uniform_scores(self._init_seed + 1)

    def build(self, input_shape):
        n = int(np.prod(self._kernel_shape(input_shape)))
        if kept_count(n, self.k) < 1:
            raise ValueError(f"k={self.k} keeps no weight of the {n} in layer '{self.name}'")
        super().build(input_shape)

    def mask(self, training=None):
        # Eq. (edge-popup): the k fraction of largest |s_uv| are used; the
        # gradient dL/ds_uv = dL/dI_v * w_uv * Z_u passes straight through top-k
        # and through |.| (times sign(s)).
        return topk_mask(ops.abs(self.scores), self.k)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


class SupermaskLayer(SubnetLayer):
    """Zhou et al. supermask: ``m ~ Bernoulli(sigmoid(S))`` in training, straight-through."""

    def __init__(self, *, eval_mask="threshold", dynamic_scaling=False, **kwargs):
        if eval_mask not in SUPERMASK_EVAL_MASKS:
            raise ValueError(f"eval_mask must be one of {SUPERMASK_EVAL_MASKS}, got {eval_mask!r}")
        super().__init__(**kwargs)
        self.eval_mask = eval_mask
        self.dynamic_scaling = bool(dynamic_scaling)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def _fan_scale(self):
        # Expected kept fraction at initialisation is unknown in general; the
        # scaled variant uses p = 0.5 (the Bernoulli mean at scores = 0).
        return 0.5

    def _default_scores_initializer(self):
        # Zhou et al.: mask logits initialised to a constant (sigmoid_bias = 0 -> p = 0.5).
        return keras.initializers.Zeros()

    def _noise(self):
        from kerasnets.distribute import replica_seed

        import tensorflow as tf

        return tf.random.stateless_uniform(tuple(self.scores.shape), seed=replica_seed(self.seed_generator))

    def mask(self, training=None):
        p = ops.sigmoid(self.scores)
        if training or self.eval_mask == "sample":
            m = bernoulli_mask(p, ops.cast(self._noise(), p.dtype))
        elif self.eval_mask == "threshold":
            m = ops.cast(ops.greater(p, 0.5), p.dtype)
        else:  # expected
            m = p
        if self.dynamic_scaling:
            # Zhou et al. "dynamic weight rescaling": W * size(m) / sum(m).
            total = ops.cast(ops.size(m), m.dtype)
            m = m * ops.stop_gradient(total / ops.maximum(ops.sum(m), 1.0))
        return m

    def inference_mask(self):
        if self.eval_mask == "sample":
            raise ValueError(
                f"layer '{self.name}' samples its mask at inference (eval_mask='sample'); "
                "a fixed pruned kernel needs eval_mask='threshold' or 'expected'"
            )
        return super().inference_mask()

    def get_config(self):
        return {**super().get_config(), "eval_mask": self.eval_mask, "dynamic_scaling": self.dynamic_scaling}


class DenseMixin:
    """Dense op for subnet layers: ``x @ (W * m)`` over the last axis."""

    def _init_dense(self, units):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = units

    def _kernel_shape(self, input_shape):
        last = input_shape[-1]
        if last is None:
            raise ValueError(f"{type(self).__name__} needs a known last input dimension, got shape {input_shape}")
        return (int(last), self.units)

    def _apply(self, inputs, kernel):
        return dense_apply(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _dense_config(self):
        return {"units": self.units}


class Conv2DMixin:
    """2-D convolution op for subnet layers (NHWC or NCHW), kernel ``(kh, kw, cin, cout)``."""

    def _init_conv(self, filters, kernel_size, strides, padding, dilation_rate, data_format):
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, "kernel_size")
        self.strides = normalize_tuple(strides, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError("strides > 1 together with dilation_rate > 1 is not supported")
        self.padding = padding
        self.data_format = data_format

    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def _kernel_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{type(self).__name__} expects rank-4 inputs, got shape {input_shape}")
        channels = input_shape[self._channel_axis()]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel dimension, got shape {input_shape}")
        return self.kernel_size + (int(channels), self.filters)

    def _apply(self, inputs, kernel):
        return ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            spatial = input_shape[1:3]
        else:
            spatial = input_shape[2:4]
        out = tuple(
            conv_output_length(spatial[i], self.kernel_size[i], self.strides[i], self.padding, self.dilation_rate[i])
            for i in range(2)
        )
        if self.data_format == "channels_last":
            return (input_shape[0],) + out + (self.filters,)
        return (input_shape[0], self.filters) + out

    def _conv_config(self):
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "data_format": self.data_format,
        }
