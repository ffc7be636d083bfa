"""EdgePopupDense / EdgePopupConv2D: top-k count, frozen weights, straight-through scores, inits."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import EdgePopupConv2D
from kerasnets.layers import EdgePopupDense
from kerasnets.layers import _subnet
from kerasnets.testing import run_layer_test


# two_cpu_strategy: the shared fixture in tests/conftest.py (fresh collective keys per test).


def _built(layer, shape):
    layer.build(shape)
    return layer


@pytest.mark.parametrize("k", [0.05, 0.3, 0.5, 0.7, 0.9, 1.0])
@pytest.mark.parametrize(
    "layer,shape",
    [
        (lambda k: EdgePopupDense(7, k=k, seed=1), (None, 13)),
        (lambda k: EdgePopupConv2D(5, 3, k=k, seed=2), (None, 9, 9, 3)),
    ],
)
def test_exact_number_of_weights_kept_are_the_largest_scores(layer, shape, k):
    layer = _built(layer(k), shape)
    scores = keras.ops.convert_to_numpy(layer.scores).ravel()
    n = scores.size
    mask = keras.ops.convert_to_numpy(layer.mask()).ravel()
    # allenai GetSubnet: j = int((1 - k) * n) smallest |scores| zeroed.
    kept = n - int((1 - k) * n)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert int(mask.sum()) == kept
    expected = np.zeros(n)
    expected[np.argsort(np.abs(scores))[n - kept :]] = 1
    np.testing.assert_array_equal(mask, expected)
    # the effective kernel is W * mask exactly
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.effective_kernel()).ravel(),
        keras.ops.convert_to_numpy(layer.kernel).ravel() * expected,
    )


def test_kept_count_rule():
    assert _subnet.kept_count(10, 0.5) == 5
    assert _subnet.kept_count(7, 0.5) == 4  # int(3.5) = 3 zeroed
    assert _subnet.kept_count(100, 0.3) == 30
    assert _subnet.kept_count(10, 1.0) == 10


def _subnet_model(seed=0):
    inputs = keras.Input((8, 8, 2))
    x = EdgePopupConv2D(4, 3, k=0.5, padding="same", activation="relu", seed=seed)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = EdgePopupDense(3, k=0.3, seed=seed + 10)(x)
    return keras.Model(inputs, outputs)


def test_weights_frozen_only_scores_train():
    keras.utils.set_random_seed(0)
    model = _subnet_model()
    subnet_layers = [lyr for lyr in model.layers if isinstance(lyr, _subnet.SubnetLayer)]
    score_ids = {id(lyr.scores) for lyr in subnet_layers}
    assert {id(v) for v in model.trainable_weights} == score_ids
    kernels = [keras.ops.convert_to_numpy(lyr.kernel).copy() for lyr in subnet_layers]
    scores = [keras.ops.convert_to_numpy(lyr.scores).copy() for lyr in subnet_layers]
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=16)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    for layer, k0, s0 in zip(subnet_layers, kernels, scores):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.kernel), k0)
        assert np.abs(keras.ops.convert_to_numpy(layer.scores) - s0).max() > 0


def test_scores_get_straight_through_gradient_everywhere():
    layer = EdgePopupDense(6, k=0.3, seed=3)
    x = tf.constant(np.random.default_rng(2).normal(size=(5, 11)), tf.float32)
    c = tf.constant(np.random.default_rng(3).normal(size=(5, 6)), tf.float32)
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * c)
    grad = tape.gradient(loss, layer.scores).numpy()
    # Hand computation: dL/dW~ = x^T c; straight-through top-k and |.|:
    # dL/ds = dL/dW~ * W * sign(s), for kept AND pruned weights.
    w = layer.kernel.numpy()
    s = layer.scores.numpy()
    expected = (x.numpy().T @ c.numpy()) * w * np.sign(s)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    mask = layer.mask().numpy()
    assert (mask == 0).any() and (mask == 1).any()
    assert np.all(grad != 0), "every score (kept or pruned) must receive a gradient"
    # nothing flows into the frozen weights
    assert [id(v) for v in layer.trainable_weights] == [id(layer.scores)]


def test_conv_gradient_nonzero_everywhere():
    layer = EdgePopupConv2D(3, 3, k=0.5, seed=4)
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 6, 6, 2)), tf.float32)
    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x)))
    grad = tape.gradient(loss, layer.scores).numpy()
    assert np.all(grad != 0)


def _kernel(init, scale_fan, k=0.5, shape=(None, 400), units=500, seed=7):
    layer = EdgePopupDense(units, k=k, weight_init=init, scale_fan=scale_fan, seed=seed)
    layer.build(shape)
    return layer.kernel.numpy(), layer.scores.numpy()


@pytest.mark.parametrize("scale_fan,k", [(False, 0.5), (True, 0.5), (True, 0.3)])
def test_kaiming_normal_untruncated_std(scale_fan, k):
    w, _ = _kernel("kaiming_normal", scale_fan, k=k)
    fan = 400 * (k if scale_fan else 1.0)
    std = math.sqrt(2.0 / fan)
    assert abs(w.std() / std - 1) < 0.01
    assert abs(w.mean()) < 0.01 * std
    # untruncated: about 4.55% of N(0,1) samples lie beyond 2 sigma (HeNormal clips there)
    tail = np.mean(np.abs(w) > 2 * std)
    assert 0.04 < tail < 0.051
    assert np.abs(w).max() > 3.5 * std


@pytest.mark.parametrize("scale_fan,k", [(False, 0.5), (True, 0.5), (True, 0.2)])
def test_signed_kaiming_constant(scale_fan, k):
    w, _ = _kernel("signed_kaiming_constant", scale_fan, k=k)
    std = math.sqrt(2.0 / (400 * (k if scale_fan else 1.0)))
    np.testing.assert_allclose(np.abs(w), std, rtol=1e-6)
    assert abs(np.mean(w > 0) - 0.5) < 0.01


def test_unsigned_constant_and_conv_fan_in():
    layer = EdgePopupConv2D(8, (3, 5), weight_init="unsigned_kaiming_constant", seed=1)
    layer.build((None, 10, 10, 4))
    np.testing.assert_allclose(layer.kernel.numpy(), math.sqrt(2.0 / (3 * 5 * 4)), rtol=1e-6)


def test_scores_kaiming_uniform_a_sqrt5():
    _, s = _kernel("kaiming_normal", False)
    bound = 1.0 / math.sqrt(400)
    assert np.abs(s).max() <= bound
    assert np.abs(s).max() > 0.99 * bound
    assert abs(s.std() - bound / math.sqrt(3)) < 0.01 * bound


def test_seed_reproducible():
    a, sa = _kernel("kaiming_normal", False, seed=5)
    b, sb = _kernel("kaiming_normal", False, seed=5)
    c, _ = _kernel("kaiming_normal", False, seed=6)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(units=3, k=0.0), "fraction of weights kept"),
        (dict(units=3, k=1.5), "fraction of weights kept"),
        (dict(units=0), "units"),
        (dict(units=3, weight_init="he_normal"), "weight_init"),
        (dict(units=3, seed=1.5), "seed"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EdgePopupDense(**kwargs)


def test_bad_conv_arguments():
    with pytest.raises(ValueError, match="padding"):
        EdgePopupConv2D(3, 3, padding="causal")
    with pytest.raises(ValueError, match="rank-4"):
        EdgePopupConv2D(3, 3).build((None, 5, 3))
    # int() truncation keeps at least one weight for any k > 0
    layer = EdgePopupDense(2, k=0.01)
    layer.build((None, 3))
    assert int(layer.mask().numpy().sum()) == 1


def test_edge_popup_dense_layer_contract():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    run_layer_test(
        EdgePopupDense,
        dict(units=5, k=0.4, activation="relu", use_bias=True, seed=1, scores_regularizer="l2"),
        x,
        expected_output_shape=(4, 5),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=2,
    )


@pytest.mark.parametrize("padding,strides", [("same", 1), ("valid", 2)])
def test_edge_popup_conv2d_layer_contract(padding, strides):
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype("float32")
    layer = EdgePopupConv2D(4, 3, padding=padding, strides=strides)
    expected = tuple(layer.compute_output_shape((2, 7, 7, 3)))
    out = run_layer_test(
        EdgePopupConv2D,
        dict(filters=4, kernel_size=3, k=0.5, padding=padding, strides=strides, seed=2,
             weight_init="signed_kaiming_constant", scale_fan=True),
        x,
        expected_output_shape=expected,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=1,
    )
    assert out.shape == expected


def test_matches_conv_with_masked_kernel():
    layer = EdgePopupConv2D(4, 3, k=0.5, padding="same", seed=3)
    x = np.random.default_rng(5).normal(size=(2, 6, 6, 3)).astype("float32")
    y = layer(x).numpy()
    ref = tf.nn.conv2d(x, layer.kernel.numpy() * layer.mask().numpy(), 1, "SAME").numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)


@pytest.mark.slow
def test_mirrored_fit_matches_single_device(two_cpu_strategy):
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=8)

    def fit(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = _subnet_model(seed=3)
            model.compile(
                optimizer=keras.optimizers.SGD(0.5),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
        return [v.numpy() for v in model.weights]

    single = fit(tf.distribute.get_strategy())
    mirrored = fit(two_cpu_strategy)
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)
