"""Ghost Batch Normalization (Hoffer, Hubara, Soudry 2017): BN statistics per small ghost batch."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from kerasnets.saving import register


@register
class GhostBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization whose training statistics come from ghost batches.

    In training, the (per-replica) batch of `B` examples is split into
    `G = B / virtual_batch_size` consecutive ghost batches of
    `virtual_batch_size` examples, and each example is normalized with the
    moments of its own ghost batch `g` (biased variance, over the examples of
    `g` and every axis but `axis`):

        y = gamma * (x - mu_g) / sqrt(var_g + epsilon) + beta

    The moving statistics are updated once per call from the averages of the
    ghost statistics (as `tf_keras`' `virtual_batch_size` does):

        moving_mean <- momentum * moving_mean + (1 - momentum) * mean_g(mu_g)
        moving_var  <- momentum * moving_var  + (1 - momentum) * mean_g(var_g)

    Inference uses the moving statistics, exactly like
    `keras.layers.BatchNormalization`; the weights (`gamma`, `beta`,
    `moving_mean`, `moving_variance`) are the same, so weights load both ways
    and `fold_batch_norm` folds this layer too.

    A training batch whose size is not a multiple of `virtual_batch_size`
    raises a `ValueError` when the batch size is static, an
    `InvalidArgumentError` at run time otherwise (drop the remainder in the
    input pipeline, e.g. `dataset.batch(n, drop_remainder=True)`).
    `virtual_batch_size=None` is plain batch norm.

    Args:
        virtual_batch_size: examples per ghost batch (the paper uses 128 within
            large batches); `None` disables ghost batches.
        axis, momentum, epsilon, center, scale, *_initializer, *_regularizer,
        *_constraint: as in `keras.layers.BatchNormalization`. Batch
            renormalization and `synchronized=True` are not combined with ghost
            batches (each replica already forms its own ghost batches).

    Call arguments:
        inputs: a tensor of any rank >= 2, batch first.
        training: ghost-batch statistics (and moving-average updates) if true;
            moving statistics otherwise.

    Reference:
        Hoffer, Hubara, Soudry 2017, "Train longer, generalize better: closing
        the generalization gap in large batch training of neural networks",
        NeurIPS, section 4 (Ghost Batch Normalization, Algorithm 1).
    """

    def __init__(self, virtual_batch_size=None, **kwargs):
        if kwargs.get("renorm"):
            raise ValueError("GhostBatchNormalization does not support renorm=True")
        if kwargs.get("synchronized"):
            raise ValueError("GhostBatchNormalization does not support synchronized=True")
        super().__init__(**kwargs)
        if virtual_batch_size is not None:
            if int(virtual_batch_size) != virtual_batch_size or virtual_batch_size < 1:
                raise ValueError(f"virtual_batch_size must be a positive integer or None, got {virtual_batch_size}")
            virtual_batch_size = int(virtual_batch_size)
        self.virtual_batch_size = virtual_batch_size
        # Ghost batches are what this layer is for; masks are not supported.
        self.supports_masking = False

    def add_weight(self, *args, **kwargs):
        # Replica-mean aggregation for the moving statistics, so that under
        # tf.distribute every replica's copy stays equal (Keras' own BN creates
        # them with aggregation "none" and the copies drift apart per replica).
        if kwargs.get("name") in ("moving_mean", "moving_variance") and kwargs.get("aggregation", "none") == "none":
            kwargs["aggregation"] = "mean"
        return super().add_weight(*args, **kwargs)

    def inference_affine(self):
        """`(scale, offset)` per channel with `y = x * scale + offset` in inference (BN folding)."""
        scale = ops.rsqrt(ops.cast(self.moving_variance, "float32") + self.epsilon)
        if self.gamma is not None:
            scale = scale * ops.cast(self.gamma, "float32")
        offset = -ops.cast(self.moving_mean, "float32") * scale
        if self.beta is not None:
            offset = offset + ops.cast(self.beta, "float32")
        return scale, offset

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise NotImplementedError("GhostBatchNormalization does not support masks")
        if not (training and self.trainable) or self.virtual_batch_size is None:
            return super().call(inputs, training=training)

        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, compute_dtype)
        rank = len(x.shape)
        axis = self.axis % rank
        g = self.virtual_batch_size
        batch = x.shape[0]
        if batch is not None:
            if batch % g:
                raise ValueError(
                    f"GhostBatchNormalization: batch size {batch} is not a multiple of "
                    f"virtual_batch_size={g}"
                )
        else:
            dynamic = ops.shape(x)[0]
            check = tf.debugging.assert_equal(
                dynamic % g,
                tf.zeros_like(dynamic),
                message=f"GhostBatchNormalization: the batch size is not a multiple of virtual_batch_size={g}",
            )
            with tf.control_dependencies([check]):
                x = tf.identity(x)
        shape = ops.shape(x)
        # [B, ...] -> [G, g, ...]; the feature axis moves one place right.
        ghosts = ops.reshape(x, (-1, g) + tuple(shape[1:]))
        reduce_axes = [i for i in range(1, rank + 1) if i != axis + 1]
        mean, variance = ops.moments(ghosts, axes=reduce_axes, keepdims=True)
        normalized = (ghosts - mean) * ops.rsqrt(variance + self.epsilon)
        channel_shape = [1] * (rank + 1)
        channel_shape[axis + 1] = -1
        if self.scale:
            normalized = normalized * ops.reshape(ops.cast(self.gamma, compute_dtype), channel_shape)
        if self.center:
            normalized = normalized + ops.reshape(ops.cast(self.beta, compute_dtype), channel_shape)
        outputs = ops.reshape(normalized, shape)

        ghost_mean = ops.reshape(ops.mean(mean, axis=0), (-1,))
        ghost_variance = ops.reshape(ops.mean(variance, axis=0), (-1,))
        moving_mean = ops.cast(self.moving_mean, compute_dtype)
        moving_variance = ops.cast(self.moving_variance, compute_dtype)
        self.moving_mean.assign(moving_mean * self.momentum + ghost_mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + ghost_variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        for key in ("renorm", "renorm_clipping", "renorm_momentum", "synchronized"):
            config.pop(key, None)
        return {**config, "virtual_batch_size": self.virtual_batch_size}
