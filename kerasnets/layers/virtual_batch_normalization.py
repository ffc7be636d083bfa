"""Virtual Batch Normalization (Salimans et al. 2016): reference-batch statistics mixed with each example."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import constraints, initializers, ops, regularizers

from kerasnets.saving import register


@register
class VirtualBatchNormalization(keras.layers.Layer):
    """Virtual batch normalization: each example normalized by a fixed reference batch plus itself.

    With the reference batch's per-channel mean `mu_ref` and mean square
    `m2_ref` (over its `N` examples and every axis but `axis` and, for each
    example `x`, its own per-channel mean `mu_x` and mean square `m2_x` over the
    non-batch, non-feature axes (for `[B, C]` inputs simply `x` and `x^2`), the
    example's statistics are the reference's with `x` added at weight
    `1 / (N + 1)`:

        c     = 1 / (N + 1)
        mu    = (1 - c) * mu_ref + c * mu_x
        m2    = (1 - c) * m2_ref + c * m2_x
        var   = m2 - mu^2
        y     = gamma * (x - mu) / sqrt(var + epsilon) + beta

    The reference batch itself is normalized with its own statistics only
    (`mu_ref`, `var_ref = m2_ref - mu_ref^2`), as in the paper and
    openai/improved-gan (`imagenet/model.py`, class `VBN`, where the
    defaults `epsilon = 1e-5`, `gamma ~ N(1, 0.02)` come from too).

    Two ways to supply the reference batch:

    * `reference_size=N` (openai/improved-gan semantics, for generators): in
      training the first `N` examples of every batch *are* the reference batch
      (e.g. `G(concat([z_ref, z]))` with a fixed `z_ref`), so the reference
      statistics are recomputed on each step with the current weights and
      gradients flow through them. The reference rows get their own
      statistics, the other rows the mixed ones. Each training call also
      stores the reference statistics in the non-trainable weights; in
      inference (`training=False`) the batch holds no reference rows and every
      example is normalized with the stored statistics (those of the last
      training step), so a served generator needs no reference batch. Under
      `tf.distribute` every replica's batch starts with the same reference
      rows (prepend them inside the replica step), so all replicas compute
      and store the same reference statistics.
    * `reference_size=None` (statistics fixed at the start): the first
      training call whose reference is unset takes its inputs as the reference
      batch (normalizing them with their own statistics) and stores their
      statistics; alternatively call `set_reference(batch)` with this layer's
      inputs. Calling a whole model once with `training=True` on the reference
      batch initializes every such layer consistently (each sees the
      reference batch as normalized by the layers before it). Later calls,
      training or not, use the mixed statistics; the stored statistics do not
      follow later weight updates (unlike the first mode). Under
      `tf.distribute` each replica's share of the first global batch
      contributes (replica-mean aggregation), so the reference is the global
      batch. Before a reference exists `N = 0`, i.e. each example is
      normalized with its own statistics.

    Args:
        axis: the feature axis (channels).
        epsilon: added to the variance.
        center: learn the offset `beta`.
        scale: learn the scale `gamma`.
        reference_size: number of leading reference examples in each training
            batch, or `None` to store the statistics of the first training
            batch (or of `set_reference`).
        beta_initializer: default zeros.
        gamma_initializer: default `RandomNormal(1.0, 0.02)` as in openai/improved-gan.
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint:
            as in `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: a tensor of rank >= 2, batch first.
        training: see the two modes above.

    Reference:
        Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen 2016, "Improved
        Techniques for Training GANs", arXiv:1606.03498, section 3.4.
    """

    def __init__(
        self,
        axis=-1,
        epsilon=1e-5,
        center=True,
        scale=True,
        reference_size=None,
        beta_initializer="zeros",
        gamma_initializer=None,
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if float(epsilon) <= 0.0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if reference_size is not None:
            if int(reference_size) != reference_size or reference_size < 1:
                raise ValueError(f"reference_size must be a positive integer or None, got {reference_size}")
            reference_size = int(reference_size)
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.reference_size = reference_size
        if gamma_initializer is None:
            gamma_initializer = initializers.RandomNormal(mean=1.0, stddev=0.02)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = None
        self.beta = None

    def build(self, input_shape):
        rank = len(input_shape)
        if rank < 2:
            raise ValueError(f"VirtualBatchNormalization needs inputs of rank >= 2, got shape {input_shape}")
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"axis {self.axis} is not a feature axis of inputs of shape {input_shape}")
        axis = self.axis % rank
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"the feature axis {self.axis} of {input_shape} must be known")
        self._rank = rank
        self._batch_axes = [i for i in range(rank) if i != axis]
        self._example_axes = [i for i in range(1, rank) if i != axis]
        self._broadcast_shape = [1] * rank
        self._broadcast_shape[axis] = channels
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape, name="gamma", initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer, constraint=self.gamma_constraint, autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape, name="beta", initializer=self.beta_initializer,
                regularizer=self.beta_regularizer, constraint=self.beta_constraint, autocast=False,
            )
        self.reference_mean = self.add_weight(
            shape=shape, name="reference_mean", initializer="zeros",
            trainable=False, autocast=False, aggregation="mean",
        )
        self.reference_mean_sq = self.add_weight(
            shape=shape, name="reference_mean_sq", initializer="zeros",
            trainable=False, autocast=False, aggregation="mean",
        )
        # N, the number of reference examples (0 = no reference yet).
        self.reference_count = self.add_weight(
            shape=(), name="reference_count", initializer="zeros",
            trainable=False, autocast=False, aggregation="mean",
        )

    # ----------------------------------------------------------------- helpers
    def _reference_moments(self, x):
        mean = ops.mean(x, axis=self._batch_axes)
        mean_sq = ops.mean(ops.square(x), axis=self._batch_axes)
        return mean, mean_sq

    def _affine(self, normalized, dtype):
        if self.scale:
            normalized = normalized * ops.reshape(ops.cast(self.gamma, dtype), self._broadcast_shape)
        if self.center:
            normalized = normalized + ops.reshape(ops.cast(self.beta, dtype), self._broadcast_shape)
        return normalized

    def _own(self, x, mean, mean_sq):
        """Normalize `x` with per-channel statistics `mean`, `mean_sq` (`[C]`)."""
        mean = ops.reshape(mean, self._broadcast_shape)
        var = ops.maximum(ops.reshape(mean_sq, self._broadcast_shape) - ops.square(mean), 0.0)
        return (x - mean) * ops.rsqrt(var + self.epsilon)

    def _mixed(self, x, ref_mean, ref_mean_sq, count):
        """Normalize each example of `x` with the reference statistics plus itself."""
        c = 1.0 / (count + 1.0)
        if self._example_axes:
            own_mean = ops.mean(x, axis=self._example_axes, keepdims=True)
            own_mean_sq = ops.mean(ops.square(x), axis=self._example_axes, keepdims=True)
        else:
            own_mean, own_mean_sq = x, ops.square(x)
        mean = (1.0 - c) * ops.reshape(ref_mean, self._broadcast_shape) + c * own_mean
        mean_sq = (1.0 - c) * ops.reshape(ref_mean_sq, self._broadcast_shape) + c * own_mean_sq
        var = ops.maximum(mean_sq - ops.square(mean), 0.0)
        return (x - mean) * ops.rsqrt(var + self.epsilon)

    # -------------------------------------------------------------------- call
    def call(self, inputs, training=None):
        dtype = keras.backend.result_type(inputs.dtype, "float32")
        x = ops.cast(inputs, dtype)
        stored_mean = ops.cast(self.reference_mean, dtype)
        stored_mean_sq = ops.cast(self.reference_mean_sq, dtype)
        stored_count = ops.cast(self.reference_count, dtype)
        training = bool(training) and self.trainable

        if self.reference_size is not None and training:
            n = self.reference_size
            if x.shape[0] is not None and x.shape[0] <= n:
                raise ValueError(
                    f"VirtualBatchNormalization(reference_size={n}) needs training batches of more than "
                    f"{n} examples (reference first, then the live examples); got {x.shape[0]}"
                )
            reference, live = x[:n], x[n:]
            ref_mean, ref_mean_sq = self._reference_moments(reference)
            out_ref = self._own(reference, ref_mean, ref_mean_sq)
            out_live = self._mixed(live, ref_mean, ref_mean_sq, float(n))
            self.reference_mean.assign(ops.stop_gradient(ref_mean))
            self.reference_mean_sq.assign(ops.stop_gradient(ref_mean_sq))
            self.reference_count.assign(ops.cast(n, self.reference_count.dtype))
            normalized = ops.concatenate([out_ref, out_live], axis=0)
        elif self.reference_size is None and training:
            # Capture the first training batch as the reference (without a
            # data-dependent branch, so it runs inside strategy.run).
            is_set = stored_count > 0.0
            batch_mean, batch_mean_sq = self._reference_moments(x)
            batch_mean = ops.stop_gradient(batch_mean)
            batch_mean_sq = ops.stop_gradient(batch_mean_sq)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            batch_count = ops.cast(ops.shape(x)[0] * replicas, dtype)
            ref_mean = ops.where(is_set, stored_mean, batch_mean)
            ref_mean_sq = ops.where(is_set, stored_mean_sq, batch_mean_sq)
            count = ops.where(is_set, stored_count, batch_count)
            self.reference_mean.assign(ref_mean)
            self.reference_mean_sq.assign(ref_mean_sq)
            self.reference_count.assign(count)
            normalized = ops.where(
                is_set,
                self._mixed(x, stored_mean, stored_mean_sq, stored_count),
                self._own(x, batch_mean, batch_mean_sq),
            )
        else:
            normalized = self._mixed(x, stored_mean, stored_mean_sq, stored_count)
        return ops.cast(self._affine(normalized, dtype), self.compute_dtype)

    # --------------------------------------------------------------- reference
    def set_reference(self, reference_batch):
        """Store the statistics of `reference_batch` (this layer's inputs) as the reference."""
        reference_batch = np.asarray(keras.ops.convert_to_numpy(reference_batch), dtype="float64")
        if not self.built:
            self.build(reference_batch.shape)
        if reference_batch.ndim != self._rank:
            raise ValueError(f"reference batch has rank {reference_batch.ndim}, the layer expects {self._rank}")
        if reference_batch.shape[0] < 1:
            raise ValueError("the reference batch is empty")
        axes = tuple(self._batch_axes)
        self.reference_mean.assign(reference_batch.mean(axis=axes).astype("float32"))
        self.reference_mean_sq.assign(np.square(reference_batch).mean(axis=axes).astype("float32"))
        self.reference_count.assign(float(reference_batch.shape[0]))

    def reset_reference(self):
        """Forget the stored reference (the next training call captures a new one)."""
        self.reference_count.assign(0.0)

    @property
    def has_reference(self) -> bool:
        return self.built and float(keras.ops.convert_to_numpy(self.reference_count)) > 0.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "reference_size": self.reference_size,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
