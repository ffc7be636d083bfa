"""VirtualBatchNormalization: reference statistics mixed with each example at weight 1/(N+1)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import VirtualBatchNormalization
from kerasnets.testing import fresh_mirrored_strategy, run_layer_test


@pytest.fixture
def two_replicas():
    """MirroredStrategy over the two logical CPUs, with collective keys of its own (see fresh_mirrored_strategy)."""
    return fresh_mirrored_strategy()


EPS = 1e-5


def _np_reference(ref):
    axes = tuple(range(ref.ndim - 1))
    return ref.mean(axis=axes), np.square(ref).mean(axis=axes), ref.shape[0]


def _np_mixed(x, ref_mean, ref_mean_sq, n, eps=EPS):
    """Salimans et al. 2016: each example's stats = N/(N+1) reference + 1/(N+1) itself (channels last)."""
    c = 1.0 / (n + 1.0)
    axes = tuple(range(1, x.ndim - 1))
    own_mean = x.mean(axis=axes, keepdims=True) if axes else x
    own_mean_sq = np.square(x).mean(axis=axes, keepdims=True) if axes else np.square(x)
    mean = (1 - c) * ref_mean + c * own_mean
    var = (1 - c) * ref_mean_sq + c * own_mean_sq - mean**2
    return (x - mean) / np.sqrt(var + eps)


def _np_own(x, eps=EPS):
    axes = tuple(range(x.ndim - 1))
    return (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps)


def _unit_affine(layer):
    layer.gamma.assign(np.ones(layer.gamma.shape, "float32"))


@pytest.mark.parametrize("shape", [(7, 3), (5, 4, 4, 2)])
def test_set_reference_then_mixed_statistics(shape):
    rng = np.random.default_rng(0)
    ref = (rng.normal(size=shape) * 2 + 1).astype("float32")
    x = (rng.normal(size=(3,) + shape[1:]) * 0.5 - 1).astype("float32")
    layer = VirtualBatchNormalization()
    layer.set_reference(ref)
    _unit_affine(layer)
    ref_mean, ref_mean_sq, n = _np_reference(ref.astype("float64"))
    np.testing.assert_allclose(layer.reference_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.reference_mean_sq.numpy(), ref_mean_sq, rtol=1e-5, atol=1e-6)
    assert float(layer.reference_count.numpy()) == n
    want = _np_mixed(x.astype("float64"), ref_mean, ref_mean_sq, n)
    for training in (False, True):  # a set reference is used in both modes
        got = keras.ops.convert_to_numpy(layer(x, training=training))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # Each example is normalized independently of the rest of its batch.
    one = keras.ops.convert_to_numpy(layer(x[:1], training=True))
    np.testing.assert_allclose(one, want[:1], rtol=1e-4, atol=1e-4)


def test_first_training_call_captures_reference():
    rng = np.random.default_rng(1)
    ref = (rng.normal(size=(6, 4)) * 3 + 2).astype("float32")
    x = rng.normal(size=(4, 4)).astype("float32")
    layer = VirtualBatchNormalization(center=False, scale=False)
    layer(x, training=False)  # inference before any reference: no capture
    assert not layer.has_reference
    # The reference batch is normalized with its own statistics only.
    got_ref = keras.ops.convert_to_numpy(layer(ref, training=True))
    np.testing.assert_allclose(got_ref, _np_own(ref.astype("float64")), rtol=1e-4, atol=1e-4)
    assert layer.has_reference
    ref_mean, ref_mean_sq, n = _np_reference(ref.astype("float64"))
    got = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(got, _np_mixed(x.astype("float64"), ref_mean, ref_mean_sq, n), rtol=1e-4, atol=1e-4)
    # Fixed: a later training batch does not replace the reference.
    np.testing.assert_allclose(layer.reference_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-6)
    layer.reset_reference()
    layer(x, training=True)
    np.testing.assert_allclose(layer.reference_mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)


def test_joint_batch_mode_openai_semantics():
    """reference_size=N: first N rows are the reference (own stats), the rest get mixed stats."""
    rng = np.random.default_rng(2)
    n = 5
    ref = (rng.normal(size=(n, 3, 3, 2)) + 3).astype("float32")
    live = rng.normal(size=(4, 3, 3, 2)).astype("float32")
    layer = VirtualBatchNormalization(reference_size=n)
    layer.build(ref.shape)
    _unit_affine(layer)
    out = keras.ops.convert_to_numpy(layer(np.concatenate([ref, live]), training=True))
    ref_mean, ref_mean_sq, _ = _np_reference(ref.astype("float64"))
    np.testing.assert_allclose(out[:n], _np_own(ref.astype("float64")), rtol=1e-4, atol=1e-4)
    want_live = _np_mixed(live.astype("float64"), ref_mean, ref_mean_sq, n)
    np.testing.assert_allclose(out[n:], want_live, rtol=1e-4, atol=1e-4)
    # The step stored the reference statistics; inference uses them (no reference rows).
    np.testing.assert_allclose(layer.reference_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-6)
    got = keras.ops.convert_to_numpy(layer(live, training=False))
    np.testing.assert_allclose(got, want_live, rtol=1e-4, atol=1e-4)


def test_joint_batch_mode_gradient_flows_through_reference():
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(6, 3)).astype("float32"))
    layer = VirtualBatchNormalization(reference_size=4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=True)[4:] ** 3)  # loss on the live rows only
    grad = tape.gradient(loss, x).numpy()
    assert np.abs(grad[:4]).sum() > 0, "reference statistics should pass gradients (openai semantics)"


def test_joint_batch_mode_needs_live_rows():
    layer = VirtualBatchNormalization(reference_size=4)
    with pytest.raises(ValueError, match="more than 4"):
        layer(np.zeros((4, 2), "float32"), training=True)


@pytest.mark.slow
def test_generator_trains_with_vbn():
    """A small generator G(concat[z_ref, z]) with VBN trains and exports without the reference."""
    rng = np.random.default_rng(4)
    n_ref = 8
    z = keras.Input((4,))
    h = keras.layers.Dense(16, use_bias=False)(z)
    h = VirtualBatchNormalization(reference_size=n_ref)(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Dense(8, use_bias=False)(h)
    h = VirtualBatchNormalization(reference_size=n_ref)(h)
    out = keras.layers.Dense(2)(keras.layers.ReLU()(h))
    generator = keras.Model(z, out)
    z_ref = tf.constant(rng.normal(size=(n_ref, 4)).astype("float32"))
    target = tf.constant([[1.0, -1.0]])
    opt = keras.optimizers.Adam(0.01)

    @tf.function
    def step(z_live):
        with tf.GradientTape() as tape:
            y = generator(tf.concat([z_ref, z_live], 0), training=True)[n_ref:]
            loss = tf.reduce_mean(tf.square(y - target))
        grads = tape.gradient(loss, generator.trainable_variables)
        opt.apply_gradients(zip(grads, generator.trainable_variables))
        return loss

    losses = [float(step(tf.constant(rng.normal(size=(16, 4)).astype("float32")))) for _ in range(60)]
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    # Serving: live z only, normalized with the stored reference statistics.
    served = generator(rng.normal(size=(3, 4)).astype("float32"), training=False)
    assert np.isfinite(keras.ops.convert_to_numpy(served)).all()


def test_capture_under_two_replicas_uses_global_batch(two_replicas):
    rng = np.random.default_rng(5)
    batch = (rng.normal(size=(8, 3)) * [1.0, 2.0, 3.0] + [0.0, 5.0, -5.0]).astype("float32")
    batch[4:] += 2.0  # the replicas' halves differ
    with two_replicas.scope():
        layer = VirtualBatchNormalization(center=False, scale=False)
        layer.build((None, 3))
    values = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: batch[4 * ctx.replica_id_in_sync_group : 4 * (ctx.replica_id_in_sync_group + 1)]
    )

    @tf.function
    def run(v):
        return two_replicas.run(lambda t: layer(t, training=True), args=(v,))

    run(values)
    ref_mean, ref_mean_sq, n = _np_reference(batch.astype("float64"))
    for replica_value in layer.reference_mean.value.values:
        np.testing.assert_allclose(replica_value.numpy(), ref_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.reference_mean_sq.numpy(), ref_mean_sq, rtol=1e-5, atol=1e-4)
    assert float(layer.reference_count.numpy()) == n


@pytest.mark.parametrize("reference_size", [None, 3])
def test_layer_contract(reference_size):
    x = np.random.default_rng(6).normal(size=(8, 4, 4, 3)).astype("float32")
    run_layer_test(
        VirtualBatchNormalization,
        {"reference_size": reference_size},
        x,
        expected_output_shape=(8, 4, 4, 3),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=3,
    )


def test_set_reference_survives_keras_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    inp = keras.Input((3,))
    layer = VirtualBatchNormalization()
    model = keras.Model(inp, layer(inp))
    layer.set_reference(rng.normal(size=(10, 3)) * 4)
    x = rng.normal(size=(2, 3)).astype("float32")
    path = str(tmp_path / "vbn.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
    assert restored.layers[-1].has_reference


@pytest.mark.parametrize("kwargs", [{"reference_size": 0}, {"reference_size": 1.5}, {"epsilon": 0.0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        VirtualBatchNormalization(**kwargs)
