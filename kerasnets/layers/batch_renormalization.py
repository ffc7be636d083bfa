"""Batch Renormalization (Ioffe 2017) with the paper's r_max / d_max ramp schedule."""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers

from kerasnets.saving import register


def renorm_clip_schedule(
    step,
    *,
    rmax: float = 3.0,
    dmax: float = 5.0,
    warmup_steps: int = 5000,
    rmax_end_step: int = 40000,
    dmax_end_step: int = 25000,
):
    """`(r_max, d_max)` at training step `step` (0-based count of training calls).

    `r_max = 1` and `d_max = 0` (plain batch norm) for `step < warmup_steps`, then
    linear ramps reaching `rmax` at `rmax_end_step` and `dmax` at `dmax_end_step`,
    constant afterwards. `step` may be a Python number or a tensor.
    """
    step = ops.cast(step, "float32")

    def ramp(end_step):
        if end_step <= warmup_steps:  # a jump straight to the final value at warmup_steps
            return ops.cast(step >= warmup_steps, "float32")
        return ops.clip((step - warmup_steps) / float(end_step - warmup_steps), 0.0, 1.0)

    r_max = 1.0 + (rmax - 1.0) * ramp(rmax_end_step)
    d_max = dmax * ramp(dmax_end_step)
    return r_max, d_max


@register
class BatchRenormalization(keras.layers.Layer):
    """Batch Renormalization with a scheduled correction clip (Ioffe 2017).

    In training, with batch moments `mu_B`, `sigma_B = sqrt(var_B + epsilon)` and the
    moving averages `mu`, `sigma` (Algorithm 1 of the paper):

        r = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
        d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
        y = gamma * ((x - mu_B) / sigma_B * r + d) + beta
        mu    <- mu    + (1 - momentum) * (mu_B - mu)
        sigma <- sigma + (1 - momentum) * (sigma_B - sigma)

    `r` and `d` use the moving averages from *before* this batch's update. In
    inference, `y = gamma * (x - mu) / sigma + beta`. `var_B` is the biased batch
    variance over every axis but `axis`.

    The clip bounds follow the paper's schedule (section 4): `r_max = 1`,
    `d_max = 0` (plain batch norm) for the first `warmup_steps` training steps,
    then linear ramps to `rmax` (reached at `rmax_end_step`) and `dmax` (reached
    at `dmax_end_step`); see `renorm_clip_schedule`. The paper trains with
    `r_max: 1 -> 3` by ~40k steps and `d_max: 0 -> 5` by ~25k steps after 5k
    warm-up steps and `alpha = 0.01` (`momentum=0.99`). The step is the
    layer's own counter `renorm_step` (non-trainable int64, first-replica
    aggregation so each synchronous step counts once under `tf.distribute`),
    advanced by one on each training call.

    Relation to Keras: `keras.layers.BatchNormalization(renorm=True,
    renorm_clipping={"rmin": 1/rmax, "rmax": rmax, "dmax": dmax})` (Keras >=
    3.14) is the same computation with *fixed* clips and two sets of moving
    statistics (`renorm_mean`/`renorm_stddev` with `renorm_momentum` for r, d;
    `moving_mean`/`moving_stddev` with `momentum` for inference). The paper keeps
    one set; this layer does too. With `warmup_steps = rmax_end_step =
    dmax_end_step = 0` and `momentum == renorm_momentum` the two layers give the
    same outputs and moving statistics (tested).

    Args:
        axis: the feature axis (channels), e.g. -1 for NHWC.
        momentum: moving-average momentum; the paper's update rate is `1 - momentum`.
        epsilon: added to the batch variance: `sigma_B = sqrt(var_B + epsilon)`.
        center: learn the offset `beta`.
        scale: learn the scale `gamma`.
        rmax: final `r_max` (>= 1).
        dmax: final `d_max` (>= 0).
        warmup_steps: steps with `r_max = 1`, `d_max = 0`.
        rmax_end_step: step at which `r_max` reaches `rmax`.
        dmax_end_step: step at which `d_max` reaches `dmax`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_stddev_initializer: initializers (zeros, ones, zeros, ones).
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint:
            as in `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: a tensor of any rank >= 2.
        training: batch statistics with the renorm correction (and moving-average
            and step updates) if true; moving statistics otherwise.

    Reference:
        Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch Dependence
        in Batch-Normalized Models", arXiv:1702.03275, Algorithm 1.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        rmax=3.0,
        dmax=5.0,
        warmup_steps=5000,
        rmax_end_step=40000,
        dmax_end_step=25000,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_stddev_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if float(epsilon) <= 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if float(rmax) < 1.0:
            raise ValueError(f"rmax must be >= 1, got {rmax}")
        if float(dmax) < 0.0:
            raise ValueError(f"dmax must be >= 0, got {dmax}")
        for key, value in (
            ("warmup_steps", warmup_steps),
            ("rmax_end_step", rmax_end_step),
            ("dmax_end_step", dmax_end_step),
        ):
            if int(value) != value or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.rmax = float(rmax)
        self.dmax = float(dmax)
        self.warmup_steps = int(warmup_steps)
        self.rmax_end_step = int(rmax_end_step)
        self.dmax_end_step = int(dmax_end_step)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_stddev_initializer = initializers.get(moving_stddev_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"BatchRenormalization needs inputs of rank >= 2, got shape {input_shape}")
        if not -rank <= self.axis < rank:
            raise ValueError(f"axis {self.axis} is out of range for inputs of shape {input_shape}")
        axis = self.axis % rank
        if axis == 0:
            raise ValueError("axis 0 is the batch axis; pick the feature axis")
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"the feature axis {self.axis} of {input_shape} must be known")
        self._reduction_axes = [i for i in range(rank) if i != axis]
        self._broadcast_shape = [1] * rank
        self._broadcast_shape[axis] = channels
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                autocast=False,
            )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.moving_stddev = self.add_weight(
            shape=shape,
            name="moving_stddev",
            initializer=self.moving_stddev_initializer,
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.renorm_step = self.add_weight(
            shape=(),
            name="renorm_step",
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )

    def clip_values(self, step=None):
        """`(r_max, d_max)` at `step` (default: the layer's current step)."""
        if step is None:
            step = self.renorm_step
        return renorm_clip_schedule(
            step,
            rmax=self.rmax,
            dmax=self.dmax,
            warmup_steps=self.warmup_steps,
            rmax_end_step=self.rmax_end_step,
            dmax_end_step=self.dmax_end_step,
        )

    def inference_affine(self):
        """`(scale, offset)` per channel with `y = x * scale + offset` in inference (BN folding)."""
        scale = 1.0 / ops.maximum(ops.cast(self.moving_stddev, "float32"), 1e-12)
        if self.gamma is not None:
            scale = scale * ops.cast(self.gamma, "float32")
        offset = -ops.cast(self.moving_mean, "float32") * scale
        if self.beta is not None:
            offset = offset + ops.cast(self.beta, "float32")
        return scale, offset

    def call(self, inputs, training=None):
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, compute_dtype)
        moving_mean = ops.reshape(ops.cast(self.moving_mean, compute_dtype), self._broadcast_shape)
        moving_stddev = ops.reshape(ops.cast(self.moving_stddev, compute_dtype), self._broadcast_shape)
        gamma = ops.reshape(ops.cast(self.gamma, compute_dtype), self._broadcast_shape) if self.scale else 1.0
        beta = ops.reshape(ops.cast(self.beta, compute_dtype), self._broadcast_shape) if self.center else 0.0

        if training and self.trainable:
            mean, variance = ops.moments(x, axes=self._reduction_axes, keepdims=True)
            stddev = ops.sqrt(variance + self.epsilon)
            # Same guard as Keras: sigma never below sqrt(eps) (sigma_B never is).
            sigma = ops.maximum(moving_stddev, ops.sqrt(ops.cast(self.epsilon, compute_dtype)))
            r_max, d_max = self.clip_values()
            r_max = ops.cast(r_max, compute_dtype)
            d_max = ops.cast(d_max, compute_dtype)
            r = ops.stop_gradient(ops.clip(stddev / sigma, 1.0 / r_max, r_max))
            d = ops.stop_gradient(ops.clip((mean - moving_mean) / sigma, -d_max, d_max))
            outputs = gamma * ((x - mean) / stddev * r + d) + beta

            decay = 1.0 - self.momentum
            self.moving_mean.assign(
                ops.reshape(moving_mean + decay * (mean - moving_mean), self.moving_mean.shape)
            )
            self.moving_stddev.assign(
                ops.reshape(moving_stddev + decay * (stddev - moving_stddev), self.moving_stddev.shape)
            )
            self.renorm_step.assign_add(ops.cast(1, "int64"))
        else:
            outputs = gamma * (x - moving_mean) / moving_stddev + beta
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rmax": self.rmax,
            "dmax": self.dmax,
            "warmup_steps": self.warmup_steps,
            "rmax_end_step": self.rmax_end_step,
            "dmax_end_step": self.dmax_end_step,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_stddev_initializer": initializers.serialize(self.moving_stddev_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
