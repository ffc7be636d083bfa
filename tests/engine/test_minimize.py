"""kerasnets.optimization.minimize: regularisation added, replica scaling, loss scaling."""

import keras
import numpy as np
import tensorflow as tf

from kerasnets.optimization import minimize


def _model(weights=None):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.1))])
    if weights is not None:
        for v, w in zip(model.trainable_variables, weights):
            v.assign(w)
    return model


def test_one_sgd_step_includes_the_regularisation_loss():
    model = _model()
    start = [v.numpy().copy() for v in model.trainable_variables]
    x = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    opt = keras.optimizers.SGD(0.1)
    opt.build(model.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x) ** 2)
    total = minimize(tape, loss, model.trainable_variables, opt, model=model)

    # Hand-derived: d/dW mean((xW+b)^2) + 0.1*sum(W^2) over the 4x2 outputs.
    w, b = start
    out = x.numpy() @ w + b
    grad_w = 2 * x.numpy().T @ out / out.size + 2 * 0.1 * w
    grad_b = 2 * out.sum(0) / out.size
    np.testing.assert_allclose(float(total), (out**2).mean() + 0.1 * (w**2).sum(), rtol=1e-5)
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), w - 0.1 * grad_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.trainable_variables[1].numpy(), b - 0.1 * grad_b, rtol=1e-5, atol=1e-6)


def test_loss_scale_optimizer_gives_the_same_step():
    plain, scaled_model = _model(), None
    start = [v.numpy().copy() for v in plain.trainable_variables]
    scaled_model = _model(start)
    x = tf.ones((4, 3))
    results = []
    for model, opt in ((plain, keras.optimizers.SGD(0.1)),
                       (scaled_model, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)))):
        opt.build(model.trainable_variables)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        minimize(tape, loss, model.trainable_variables, opt, model=model)
        results.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradients_are_divided_by_the_replica_count(two_cpu_strategy):
    with two_cpu_strategy.scope():
        model = _model()
        opt = keras.optimizers.SGD(0.1)
        opt.build(model.trainable_variables)
    start = [v.numpy().copy() for v in model.trainable_variables]
    x = tf.constant(np.arange(24, dtype="float32").reshape(8, 3) / 10)

    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(batch) ** 2)
        return minimize(tape, loss, model.trainable_variables, opt, model=model)

    dataset = tf.data.Dataset.from_tensors(x)
    batch = next(iter(two_cpu_strategy.experimental_distribute_dataset(dataset)))
    tf.function(lambda b: two_cpu_strategy.run(step, args=(b,)))(batch)

    reference = _model(start)
    ref_opt = keras.optimizers.SGD(0.1)
    ref_opt.build(reference.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(reference(x) ** 2)
    minimize(tape, loss, reference.trainable_variables, ref_opt, model=reference)
    for a, b in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
