"""GhostBatchNormalization: per-ghost statistics against NumPy, moving stats, bad batch sizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import GhostBatchNormalization
from kerasnets.testing import fresh_mirrored_strategy, run_layer_test


@pytest.fixture
def two_replicas():
    """MirroredStrategy over the two logical CPUs, with collective keys of its own (see fresh_mirrored_strategy)."""
    return fresh_mirrored_strategy()


def _np_ghost_bn(x, g, gamma, beta, eps):
    """Each group of g consecutive examples normalized with its own moments (channels last)."""
    ghosts = x.reshape((-1, g) + x.shape[1:])
    axes = tuple(range(1, ghosts.ndim - 1))
    mean = ghosts.mean(axis=axes, keepdims=True)
    var = ghosts.var(axis=axes, keepdims=True)
    y = (ghosts - mean) / np.sqrt(var + eps) * gamma + beta
    return y.reshape(x.shape), mean.reshape(-1, x.shape[-1]), var.reshape(-1, x.shape[-1])


def test_per_ghost_statistics_and_moving_update():
    rng = np.random.default_rng(0)
    # Ghost batches with very different statistics, so a whole-batch BN would differ.
    x = np.concatenate(
        [rng.normal(loc=m, scale=s, size=(4, 3, 3, 2)) for m, s in [(0, 1), (5, 0.5), (-3, 2)]]
    ).astype("float32")
    momentum, eps = 0.7, 1e-3
    layer = GhostBatchNormalization(virtual_batch_size=4, momentum=momentum, epsilon=eps)
    layer.build(x.shape)
    gamma = np.array([1.5, -0.5], "float32")
    beta = np.array([0.2, 1.0], "float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    want, ghost_mean, ghost_var = _np_ghost_bn(x, 4, gamma, beta, eps)
    got = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    whole = keras.layers.BatchNormalization(epsilon=eps)
    assert np.abs(keras.ops.convert_to_numpy(whole(x, training=True)) * gamma + beta - got).max() > 0.1
    # Moving stats: one update from the averages of the ghost means and variances.
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - momentum) * ghost_mean.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), momentum + (1 - momentum) * ghost_var.mean(0), rtol=1e-5, atol=1e-5
    )
    # Inference: the moving statistics, as in keras BatchNormalization.
    x_test = rng.normal(size=(5, 3, 3, 2)).astype("float32")
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x_test, training=False)),
        (x_test - mm) / np.sqrt(mv + eps) * gamma + beta,
        rtol=1e-4,
        atol=1e-4,
    )


def test_one_ghost_equals_batch_norm():
    x = np.random.default_rng(1).normal(size=(8, 5)).astype("float32") * 3
    ghost = GhostBatchNormalization(virtual_batch_size=8)
    plain = keras.layers.BatchNormalization()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ghost(x, training=True)),
        keras.ops.convert_to_numpy(plain(x, training=True)),
        atol=1e-5,
    )
    np.testing.assert_allclose(ghost.moving_variance.numpy(), plain.moving_variance.numpy(), atol=1e-6)


def test_channels_first_axis():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3, 4, 4)).astype("float32")
    layer = GhostBatchNormalization(virtual_batch_size=2, axis=1, epsilon=1e-3)
    got = keras.ops.convert_to_numpy(layer(x, training=True))
    want, _, _ = _np_ghost_bn(np.moveaxis(x, 1, -1), 2, 1.0, 0.0, 1e-3)
    np.testing.assert_allclose(got, np.moveaxis(want, -1, 1), rtol=1e-4, atol=1e-4)


def test_batch_not_divisible_static():
    layer = GhostBatchNormalization(virtual_batch_size=4)
    with pytest.raises(ValueError, match="not a multiple of virtual_batch_size=4"):
        layer(np.zeros((6, 3), "float32"), training=True)
    # Inference has no ghost batches: any batch size works.
    assert layer(np.zeros((6, 3), "float32"), training=False).shape == (6, 3)


def test_batch_not_divisible_dynamic():
    layer = GhostBatchNormalization(virtual_batch_size=4)
    layer.build((None, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def step(x):
        return layer(x, training=True)

    assert step(tf.ones((8, 3))).shape == (8, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a multiple of virtual_batch_size=4"):
        step(tf.ones((6, 3)))


@pytest.mark.parametrize(
    "kwargs", [{"virtual_batch_size": 0}, {"virtual_batch_size": 2.5}, {"renorm": True}, {"synchronized": True}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        GhostBatchNormalization(**kwargs)


def test_layer_contract():
    x = np.random.default_rng(3).normal(size=(8, 4, 4, 3)).astype("float32")
    run_layer_test(
        GhostBatchNormalization,
        {"virtual_batch_size": 2, "momentum": 0.9},
        x,
        expected_output_shape=(8, 4, 4, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=2,
    )


def test_two_replicas_keep_moving_statistics_in_sync(two_replicas):
    """Unlike keras BN's "none" aggregation, each replica's copy holds the replica-mean update."""
    rng = np.random.default_rng(4)
    batch = rng.normal(size=(8, 3)).astype("float32")
    batch[4:] += 4.0
    with two_replicas.scope():
        layer = GhostBatchNormalization(virtual_batch_size=2, momentum=0.0)
        layer.build((None, 3))
    halves = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: batch[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)]
    )

    @tf.function
    def step(v):
        two_replicas.run(lambda t: layer(t, training=True), args=(v,))

    step(halves)
    _, ghost_mean, ghost_var = _np_ghost_bn(batch, 2, 1.0, 0.0, 1e-3)
    for copy in layer.moving_mean.value.values:
        np.testing.assert_allclose(copy.numpy(), ghost_mean.mean(0), rtol=1e-5, atol=1e-5)
    for copy in layer.moving_variance.value.values:
        np.testing.assert_allclose(copy.numpy(), ghost_var.mean(0), rtol=1e-5, atol=1e-5)
