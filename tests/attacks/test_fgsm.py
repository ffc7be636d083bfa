"""FGSM against a hand-computed linear-softmax case."""

import keras
import numpy as np
import pytest

from kerasnets.attacks import fgsm, fgsm_accuracy


def _linear_model(w, b):
    inputs = keras.Input(shape=(w.shape[0],))
    dense = keras.layers.Dense(w.shape[1])
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([w, b])
    return model


def test_fgsm_matches_hand_gradient_sign_and_clips():
    # logits = x W + b; dCE/dx = W (softmax - onehot)
    w = np.array([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]], "float32")
    b = np.array([0.1, 0.0, -0.1], "float32")
    model = _linear_model(w, b)
    x = np.array([[0.5, 0.5], [0.02, 0.99]], "float32")
    y = np.array([0, 2])
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ w.T
    eps = 0.1
    expected = np.clip(x + eps * np.sign(grad), 0.0, 1.0)
    got = fgsm(model, x, y, eps).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0
    # without the box the step is exactly eps in every coordinate
    free = fgsm(model, x, y, eps, clip=None).numpy()
    np.testing.assert_allclose(np.abs(free - x), eps, atol=1e-6)


def test_fgsm_accuracy_at_zero_eps_is_clean_accuracy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype("float32")
    model = _linear_model(w, np.zeros(3, "float32"))
    x = rng.uniform(size=(20, 4)).astype("float32")
    y = rng.integers(0, 3, size=20)
    clean = np.mean(np.argmax(x @ w, 1) == y)
    assert fgsm_accuracy(model, x, y, 0.0, batch_size=7) == pytest.approx(clean)
    # a large step on a linear model never helps the true class
    assert fgsm_accuracy(model, x, y, 0.5, clip=None) <= clean


def test_negative_eps_is_rejected():
    model = _linear_model(np.ones((2, 2), "float32"), np.zeros(2, "float32"))
    with pytest.raises(ValueError, match="eps"):
        fgsm(model, np.zeros((1, 2), "float32"), [0], -0.1)
