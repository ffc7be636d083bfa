"""MinibatchDiscrimination against a NumPy loop over the paper's formula."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import MinibatchDiscrimination
from kerasnets.testing import run_layer_test


def _reference(x, t, bias=None):
    n, a = x.shape
    _, b, c = t.shape
    m = np.einsum("na,abc->nbc", x, t)
    o = np.zeros((n, b))
    for i in range(n):
        for j in range(n):
            if j == i:
                continue  # self excluded
            for k in range(b):
                o[i, k] += np.exp(-np.sum(np.abs(m[i, k] - m[j, k])))
    if bias is not None:
        o += bias
    return np.concatenate([x, o], axis=1)


@pytest.mark.parametrize("use_bias", [False, True])
def test_matches_numpy_loops(use_bias):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    layer = MinibatchDiscrimination(
        num_kernels=3, kernel_dim=2, use_bias=use_bias,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=1),
        bias_initializer=keras.initializers.Constant(-1.0),
    )
    y = layer(x).numpy()
    bias = layer.bias.numpy() if use_bias else None
    ref = _reference(x.astype("float64"), layer.kernel.numpy().astype("float64"), bias)
    assert y.shape == (6, 7)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    # closeness values are not trivially 0 or n-1
    assert 0.1 < y[:, 4:].mean() < 4.9 or use_bias


def test_self_term_excluded():
    layer = MinibatchDiscrimination(num_kernels=2, kernel_dim=3)
    single = layer(np.ones((1, 5), "float32")).numpy()
    np.testing.assert_array_equal(single[:, 5:], 0.0)
    # identical examples: each sees n-1 others at distance 0
    same = layer(np.ones((4, 5), "float32")).numpy()
    np.testing.assert_allclose(same[:, 5:], 3.0)


def test_gradient_flows_to_inputs_and_kernel():
    layer = MinibatchDiscrimination(num_kernels=4, kernel_dim=3)
    x = tf.constant(np.random.default_rng(2).normal(size=(5, 6)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x)[:, 6:] ** 2)
    assert np.abs(tape.gradient(loss, layer.kernel).numpy()).sum() > 0
    assert np.isfinite(tape.gradient(loss, x).numpy()).all()


def test_bad_input():
    with pytest.raises(ValueError, match=r"\[N, A\]"):
        MinibatchDiscrimination(2, 2).build((None, 4, 4))
    with pytest.raises(ValueError, match="num_kernels"):
        MinibatchDiscrimination(0, 2)


def test_layer_contract():
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    run_layer_test(
        MinibatchDiscrimination,
        dict(num_kernels=4, kernel_dim=3, use_bias=True),
        x,
        expected_output_shape=(8, 9),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


def test_statistic_is_per_replica_under_mirrored_strategy(two_cpu_strategy):
    """Documented behaviour: each replica compares its examples with its own share of the batch only."""
    with two_cpu_strategy.scope():
        layer = MinibatchDiscrimination(num_kernels=3, kernel_dim=2,
                                        kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=3))
        layer.build((None, 4))
    x = np.random.default_rng(5).normal(size=(8, 4)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    batch = next(iter(two_cpu_strategy.experimental_distribute_dataset(dataset)))
    out = two_cpu_strategy.run(tf.function(layer), args=(batch,))
    halves = [t.numpy() for t in two_cpu_strategy.experimental_local_results(out)]
    kernel = layer.kernel.numpy().astype("float64")
    np.testing.assert_allclose(halves[0], _reference(x[:4].astype("float64"), kernel), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(halves[1], _reference(x[4:].astype("float64"), kernel), rtol=1e-5, atol=1e-6)
