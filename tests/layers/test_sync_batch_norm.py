"""Keras' BatchNormalization(synchronized=True) under 2 replicas uses the global batch's statistics.

kerasnets does not wrap synchronized BN: `keras.layers.BatchNormalization(synchronized=True)`
(TF backend) all-reduces the sum, sum of squares and count over replicas. These tests pin
that behavior down so users can rely on it, and show what happens without it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.testing import fresh_mirrored_strategy


@pytest.fixture
def two_replicas():
    """MirroredStrategy over the two logical CPUs, with collective keys of its own (see fresh_mirrored_strategy)."""
    return fresh_mirrored_strategy()


EPS = 1e-3


def _global_batch(rng):
    x = rng.normal(size=(8, 3, 3, 2)).astype("float32")
    x[4:] = x[4:] * 3.0 + 5.0  # replica 1's half has different statistics
    return x


def _run_two_replicas(strategy, layer, batch):
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: batch[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)]
    )

    @tf.function
    def step(v):
        return strategy.run(lambda t: layer(t, training=True), args=(v,))

    out = step(halves)
    return np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])


def _build(strategy, synchronized):
    with strategy.scope():
        layer = keras.layers.BatchNormalization(momentum=0.0, epsilon=EPS, synchronized=synchronized)
        layer.build((None, 3, 3, 2))
    return layer


def test_synchronized_uses_global_batch_statistics(two_replicas):
    assert two_replicas.num_replicas_in_sync == 2
    batch = _global_batch(np.random.default_rng(0))
    layer = _build(two_replicas, synchronized=True)
    out = _run_two_replicas(two_replicas, layer, batch)
    mean, var = batch.mean(axis=(0, 1, 2)), batch.var(axis=(0, 1, 2))
    np.testing.assert_allclose(out, (batch - mean) / np.sqrt(var + EPS), rtol=1e-4, atol=1e-4)
    # momentum 0: the moving statistics are the global batch's, on every replica.
    for replica_mean, replica_var in zip(layer.moving_mean.value.values, layer.moving_variance.value.values):
        np.testing.assert_allclose(replica_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(replica_var.numpy(), var, rtol=1e-4, atol=1e-4)


def test_unsynchronized_uses_per_replica_statistics(two_replicas):
    batch = _global_batch(np.random.default_rng(0))
    layer = _build(two_replicas, synchronized=False)
    out = _run_two_replicas(two_replicas, layer, batch)
    halves = [batch[:4], batch[4:]]
    want = np.concatenate([(h - h.mean(axis=(0, 1, 2))) / np.sqrt(h.var(axis=(0, 1, 2)) + EPS) for h in halves])
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    global_mean = batch.mean(axis=(0, 1, 2))
    assert np.abs(layer.moving_mean.numpy() - global_mean).max() > 1.0
    # Keras creates the moving statistics with aggregation "none": each replica keeps its own
    # half's statistics and reading the variable returns replica 0's copy.
    copies = [v.numpy() for v in layer.moving_mean.value.values]
    np.testing.assert_allclose(copies[0], halves[0].mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(copies[1], halves[1].mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_synchronized_gradients_match_single_device(two_replicas):
    """One SGD step of Dense+sync-BN on 2 replicas == the same step on the whole batch on 1 device."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4)).astype("float32")
    x[4:] += 3.0
    y = rng.normal(size=(8, 2)).astype("float32")

    def make(synchronized):
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(2, kernel_initializer="ones"),
             keras.layers.BatchNormalization(synchronized=synchronized)]
        )
        return model

    single = make(False)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(single(x, training=True) - y))
    want = [g.numpy() for g in tape.gradient(loss, single.trainable_variables)]

    with two_replicas.scope():
        model = make(True)
    data = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: (x[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)],
                     y[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)])
    )

    @tf.function
    def grads(batch):
        def replica(xb, yb):
            with tf.GradientTape() as tape:
                # Per-replica mean over half the batch; summed over 2 replicas / 2 = global mean.
                loss = tf.reduce_mean(tf.square(model(xb, training=True) - yb)) / 2.0
            g = tape.gradient(loss, model.trainable_variables)
            return [tf.distribute.get_replica_context().all_reduce("sum", t) for t in g]

        return two_replicas.run(replica, args=batch)

    got = [two_replicas.experimental_local_results(g)[0].numpy() for g in grads(data)]
    for g_got, g_want in zip(got, want):
        np.testing.assert_allclose(g_got, g_want, rtol=1e-4, atol=1e-5)
