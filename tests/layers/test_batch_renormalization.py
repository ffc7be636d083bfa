"""BatchRenormalization: schedule, Algorithm 1 against NumPy, equality with Keras' fixed-clip renorm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import BatchRenormalization
from kerasnets.layers.batch_renormalization import renorm_clip_schedule
from kerasnets.testing import fresh_mirrored_strategy, run_layer_test


@pytest.fixture
def two_replicas():
    """MirroredStrategy over the two logical CPUs, with collective keys of its own (see fresh_mirrored_strategy)."""
    return fresh_mirrored_strategy()


def _np_renorm_step(x, mu, sigma, gamma, beta, r_max, d_max, momentum, eps):
    """One training step of Ioffe 2017, Algorithm 1, channels last."""
    axes = tuple(range(x.ndim - 1))
    mu_b = x.mean(axis=axes)
    sigma_b = np.sqrt(x.var(axis=axes) + eps)
    sigma_safe = np.maximum(sigma, np.sqrt(eps))
    r = np.clip(sigma_b / sigma_safe, 1.0 / r_max, r_max)
    d = np.clip((mu_b - mu) / sigma_safe, -d_max, d_max)
    y = gamma * ((x - mu_b) / sigma_b * r + d) + beta
    mu_new = mu + (1 - momentum) * (mu_b - mu)
    sigma_new = sigma + (1 - momentum) * (sigma_b - sigma)
    return y, mu_new, sigma_new, r, d


@pytest.mark.parametrize(
    "step, r_max, d_max",
    [
        (0, 1.0, 0.0),
        (4999, 1.0, 0.0),
        (5000, 1.0, 0.0),
        # 10k steps into the 35k-step r ramp and the 20k-step d ramp.
        (15000, 1.0 + 2.0 * 10000 / 35000, 5.0 * 10000 / 20000),
        (25000, 1.0 + 2.0 * 20000 / 35000, 5.0),
        (40000, 3.0, 5.0),
        (10**6, 3.0, 5.0),
    ],
)
def test_paper_schedule_values(step, r_max, d_max):
    got_r, got_d = renorm_clip_schedule(step)  # defaults = the paper's schedule
    assert float(got_r) == pytest.approx(r_max, rel=1e-6)
    assert float(got_d) == pytest.approx(d_max, rel=1e-6, abs=1e-7)


def test_schedule_jump_when_end_equals_warmup():
    r, d = renorm_clip_schedule(9, rmax=2.0, dmax=1.0, warmup_steps=10, rmax_end_step=10, dmax_end_step=5)
    assert (float(r), float(d)) == (1.0, 0.0)
    r, d = renorm_clip_schedule(10, rmax=2.0, dmax=1.0, warmup_steps=10, rmax_end_step=10, dmax_end_step=5)
    assert (float(r), float(d)) == (2.0, 1.0)


def test_step_counter_advances_only_in_training():
    layer = BatchRenormalization(warmup_steps=2, rmax_end_step=6, dmax_end_step=4, rmax=3.0, dmax=4.0)
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    layer(x, training=False)
    assert int(layer.renorm_step.numpy()) == 0
    for _ in range(4):
        layer(x, training=True)
    assert int(layer.renorm_step.numpy()) == 4
    r_max, d_max = layer.clip_values()
    assert float(r_max) == pytest.approx(1.0 + 2.0 * 2 / 4)
    assert float(d_max) == pytest.approx(4.0 * 2 / 2)
    assert layer.renorm_step.trainable is False


def test_algorithm_1_against_numpy_with_active_clipping():
    """Training outputs and moving mu/sigma follow Algorithm 1 while the schedule ramps."""
    rng = np.random.default_rng(1)
    momentum, eps = 0.8, 1e-3
    layer = BatchRenormalization(
        momentum=momentum, epsilon=eps, warmup_steps=1, rmax_end_step=3, dmax_end_step=2, rmax=1.5, dmax=0.4
    )
    shape = (6, 5, 5, 3)
    layer.build(shape)
    gamma = rng.normal(size=3).astype("float32")
    beta = rng.normal(size=3).astype("float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    mu, sigma = np.zeros(3), np.ones(3)
    clipped_r = clipped_d = False
    for step in range(5):
        # Scale and shift far from the moving stats, so r and d hit the clips.
        x = (rng.normal(size=shape) * 4.0 + 3.0).astype("float32")
        r_max, d_max = [float(v) for v in renorm_clip_schedule(step, rmax=1.5, dmax=0.4, warmup_steps=1,
                                                                rmax_end_step=3, dmax_end_step=2)]
        want, mu, sigma, r, d = _np_renorm_step(x, mu, sigma, gamma, beta, r_max, d_max, momentum, eps)
        got = keras.ops.convert_to_numpy(layer(x, training=True))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.moving_mean.numpy(), mu, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.moving_stddev.numpy(), sigma, rtol=1e-5, atol=1e-5)
        clipped_r |= bool(np.any(np.abs(r - r_max) < 1e-9)) and r_max > 1
        clipped_d |= bool(np.any(np.abs(np.abs(d) - d_max) < 1e-9)) and d_max > 0
    assert clipped_r and clipped_d, "the test data should exercise both clips"
    # Inference: gamma * (x - mu) / sigma + beta.
    x = rng.normal(size=shape).astype("float32")
    want = gamma * (x - mu) / sigma + beta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), want, rtol=1e-4, atol=1e-4)


def test_warmup_is_plain_batch_norm():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(16, 4)) * 3 + 1).astype("float32")
    layer = BatchRenormalization(epsilon=1e-3)  # step 0 < 5000 warm-up steps
    plain = keras.layers.BatchNormalization(epsilon=1e-3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, training=True)),
        keras.ops.convert_to_numpy(plain(x, training=True)),
        atol=1e-5,
    )


def test_equals_keras_fixed_clip_renorm_at_final_schedule():
    """Schedule held at its final values == keras BatchNormalization(renorm=True, fixed clips)."""
    rng = np.random.default_rng(3)
    rmax, dmax, momentum = 1.7, 0.6, 0.9
    mine = BatchRenormalization(
        momentum=momentum, rmax=rmax, dmax=dmax, warmup_steps=0, rmax_end_step=0, dmax_end_step=0
    )
    ref = keras.layers.BatchNormalization(
        momentum=momentum,
        renorm=True,
        renorm_momentum=momentum,
        renorm_clipping={"rmax": rmax, "rmin": 1.0 / rmax, "dmax": dmax},
    )
    for _ in range(6):
        x = (rng.normal(size=(12, 3, 3, 4)) * rng.uniform(0.2, 4.0) + rng.normal()).astype("float32")
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(mine(x, training=True)),
            keras.ops.convert_to_numpy(ref(x, training=True)),
            atol=1e-5,
        )
    np.testing.assert_allclose(mine.moving_mean.numpy(), ref.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(mine.moving_stddev.numpy(), ref.moving_stddev.numpy(), atol=1e-6)
    x = rng.normal(size=(5, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(mine(x, training=False)),
        keras.ops.convert_to_numpy(ref(x, training=False)),
        atol=1e-5,
    )


def test_r_and_d_get_no_gradient():
    """With r, d stop-gradient, d(y)/d(x) is r times the batch-norm gradient."""
    rng = np.random.default_rng(4)
    layer = BatchRenormalization(
        warmup_steps=0, rmax_end_step=0, dmax_end_step=0, rmax=10.0, dmax=10.0, center=False, scale=False
    )
    layer.build((10, 2))
    layer.moving_stddev.assign(np.array([2.0, 0.5], "float32"))
    x = tf.constant((rng.normal(size=(10, 2)) * 1.5).astype("float32"))
    w = tf.constant(rng.normal(size=(10, 2)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True) * w)
    grad = tape.gradient(loss, x).numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        mean, var = tf.nn.moments(x, axes=[0])
        loss = tf.reduce_sum((x - mean) / tf.sqrt(var + 1e-3) * w)
    grad_bn = tape.gradient(loss, x).numpy()
    r = np.sqrt(x.numpy().var(axis=0) + 1e-3) / np.array([2.0, 0.5])
    np.testing.assert_allclose(grad, grad_bn * r, rtol=1e-4, atol=1e-5)


def test_layer_contract():
    x = np.random.default_rng(5).normal(size=(8, 4, 4, 3)).astype("float32")
    out = run_layer_test(
        BatchRenormalization,
        {"momentum": 0.9, "warmup_steps": 1, "rmax_end_step": 10, "dmax_end_step": 5},
        x,
        expected_output_shape=(8, 4, 4, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=3,
    )
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    "kwargs",
    [{"rmax": 0.5}, {"dmax": -1.0}, {"momentum": 1.0}, {"epsilon": 0.0}, {"warmup_steps": -1}, {"rmax_end_step": 2.5}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        BatchRenormalization(**kwargs)


def test_bad_axis():
    with pytest.raises(ValueError, match="batch axis"):
        BatchRenormalization(axis=0)(np.zeros((2, 3), "float32"))


def test_two_replicas_count_one_step_and_share_moving_statistics(two_replicas):
    rng = np.random.default_rng(6)
    batch = rng.normal(size=(8, 3)).astype("float32")
    batch[4:] += 4.0
    with two_replicas.scope():
        layer = BatchRenormalization(momentum=0.5)
        layer.build((None, 3))
    halves = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: batch[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)]
    )

    @tf.function
    def step(v):
        two_replicas.run(lambda t: layer(t, training=True), args=(v,))

    step(halves)
    step(halves)
    assert [int(v.numpy()) for v in layer.renorm_step.value.values] == [2, 2]
    # Replica-mean of the per-replica updates; equal halves -> the global batch mean.
    mu = np.zeros(3)
    for _ in range(2):
        mu = mu + 0.5 * (batch.mean(0) - mu)
    for copy in layer.moving_mean.value.values:
        np.testing.assert_allclose(copy.numpy(), mu, rtol=1e-5, atol=1e-5)
