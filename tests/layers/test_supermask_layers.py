"""SupermaskDense / SupermaskConv2D: Bernoulli(sigmoid) mask, straight-through gradient, eval masks, noise."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import SupermaskConv2D
from kerasnets.layers import SupermaskDense
from kerasnets.testing import run_layer_test
from kerasnets.distribute import replica_id


# two_cpu_strategy: the shared fixture in tests/conftest.py (fresh collective keys per test).


def _logit(p):
    return np.log(p / (1 - p))


def test_training_mask_is_bernoulli_of_sigmoid_scores():
    layer = SupermaskDense(300, seed=1, scores_initializer=keras.initializers.Constant(_logit(0.3)))
    layer.build((None, 200))
    m = layer.mask(training=True).numpy()
    assert set(np.unique(m)) == {0.0, 1.0}
    assert abs(m.mean() - 0.3) < 0.01  # 60k draws: sd 0.0019
    m2 = layer.mask(training=True).numpy()
    assert not np.array_equal(m, m2), "each training call draws a new mask"


def test_noise_reproducible_from_seed():
    def draws(seed):
        layer = SupermaskDense(4, seed=seed)
        layer.build((None, 5))
        return [layer.mask(training=True).numpy() for _ in range(3)]

    a, b, c = draws(3), draws(3), draws(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_straight_through_gradient_hand_computed():
    rng = np.random.default_rng(0)
    init = rng.normal(size=(7, 4)).astype("float32")
    layer = SupermaskDense(4, seed=2, scores_initializer=keras.initializers.Constant(init))
    x = tf.constant(rng.normal(size=(3, 7)), tf.float32)
    c = tf.constant(rng.normal(size=(3, 4)), tf.float32)
    layer.build(x.shape)
    state = layer.seed_generator.state.numpy().copy()
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * c)
    grad = tape.gradient(loss, layer.scores).numpy()
    # Replay the same sample to check the forward pass used W * m.
    layer.seed_generator.state.assign(state)
    m = layer.mask(training=True).numpy()
    np.testing.assert_allclose(y.numpy(), x.numpy() @ (layer.kernel.numpy() * m), rtol=1e-5, atol=1e-6)
    # dL/ds = (x^T c) * W * sigmoid'(s): the gradient goes straight through the sample to p.
    p = 1 / (1 + np.exp(-init))
    expected = (x.numpy().T @ c.numpy()) * layer.kernel.numpy() * p * (1 - p)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert np.all(grad != 0)


def test_eval_masks():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(5, 3)).astype("float32")
    p = 1 / (1 + np.exp(-s))
    w = None
    for mode in ("threshold", "expected", "sample"):
        layer = SupermaskDense(3, eval_mask=mode, seed=0, scores_initializer=keras.initializers.Constant(s))
        layer.build((None, 5))
        w = layer.kernel.numpy()
        m = layer.mask(training=False).numpy()
        if mode == "threshold":
            np.testing.assert_array_equal(m, (p > 0.5).astype("float32"))
            np.testing.assert_array_equal(layer.inference_mask().numpy(), m)
        elif mode == "expected":
            np.testing.assert_allclose(m, p, rtol=1e-6)
        else:
            assert set(np.unique(m)) <= {0.0, 1.0}
            with pytest.raises(ValueError, match="eval_mask='sample'"):
                layer.inference_mask()
    x = rng.normal(size=(2, 5)).astype("float32")
    layer = SupermaskDense(3, seed=0, scores_initializer=keras.initializers.Constant(s))
    np.testing.assert_allclose(layer(x).numpy(), x @ (layer.kernel.numpy() * (p > 0.5)), rtol=1e-5, atol=1e-6)
    assert w.shape == (5, 3)


def test_dynamic_scaling():
    s = np.array([[3.0, -3.0], [2.0, 1.0], [-1.0, -2.0]], "float32")
    layer = SupermaskDense(2, dynamic_scaling=True, scores_initializer=keras.initializers.Constant(s), seed=0)
    layer.build((None, 3))
    m = (s > 0).astype("float32")  # 3 of 6 kept -> factor 6/3
    np.testing.assert_allclose(layer.effective_kernel(training=False).numpy(), layer.kernel.numpy() * m * 2.0)


def test_kernel_frozen_under_training():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 1))
    x = SupermaskConv2D(3, 3, activation="relu", seed=5)(inputs)
    x = keras.layers.Flatten()(x)
    out = SupermaskDense(2, seed=6)(x)
    model = keras.Model(inputs, out)
    assert len(model.trainable_weights) == 2
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    model.compile(keras.optimizers.SGD(1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xs = np.random.default_rng(0).normal(size=(8, 6, 6, 1)).astype("float32")
    model.fit(xs, np.arange(8) % 2, epochs=2, batch_size=4, verbose=0)
    for b, w in zip(before, model.non_trainable_weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_replicas_draw_distinct_masks(two_cpu_strategy):
    with two_cpu_strategy.scope():
        layer = SupermaskDense(8, seed=3)
        layer.build((None, 8))

    @tf.function
    def draw():
        return two_cpu_strategy.run(lambda: (layer.mask(training=True), replica_id()))

    masks, ids = draw()
    a, b = [t.numpy() for t in two_cpu_strategy.experimental_local_results(masks)]
    assert sorted(int(i) for i in two_cpu_strategy.experimental_local_results(ids)) == [0, 1]
    assert not np.array_equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eval_mask"):
        SupermaskDense(3, eval_mask="round")
    with pytest.raises(ValueError, match="filters"):
        SupermaskConv2D(0, 3)


def test_supermask_dense_layer_contract():
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    run_layer_test(
        SupermaskDense,
        dict(units=3, seed=1, scores_initializer=keras.initializers.RandomNormal(seed=1), use_bias=True),
        x,
        expected_output_shape=(4, 3),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=2,
    )


def test_supermask_conv2d_layer_contract():
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype("float32")
    run_layer_test(
        SupermaskConv2D,
        dict(filters=3, kernel_size=2, padding="same", dynamic_scaling=True, seed=1,
             scores_initializer=keras.initializers.RandomNormal(seed=2), weight_init="signed_kaiming_constant"),
        x,
        expected_output_shape=(2, 6, 6, 3),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=1,
    )
