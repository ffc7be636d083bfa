"""BoundedPerturbation (GAT generator output): epsilon * tanh and the L2-ball projection."""

import numpy as np
import pytest

from kerasnets.layers.bounded_perturbation import BoundedPerturbation
from kerasnets.testing import run_layer_test


def test_layer_contract():
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 1)).astype("float32")
    out = run_layer_test(
        BoundedPerturbation, {"epsilon": 0.2, "norm": "l2"}, x, expected_output_shape=(3, 4, 4, 1),
        expected_num_trainable_weights=0,
    )
    assert out.shape == x.shape


def test_linf_is_epsilon_tanh_and_bounded():
    x = np.array([[-50.0, -0.3, 0.0, 0.7, 80.0]], "float32")
    out = np.asarray(BoundedPerturbation(0.1, "linf")(x))
    np.testing.assert_allclose(out, 0.1 * np.tanh(x), rtol=1e-6)
    assert np.abs(out).max() <= 0.1


def test_l2_projects_large_outputs_onto_the_ball_and_keeps_small_ones():
    rng = np.random.default_rng(1)
    big = rng.normal(scale=10.0, size=(4, 8, 8, 1)).astype("float32")
    out = np.asarray(BoundedPerturbation(0.5, "l2")(big))
    norms = np.linalg.norm(out.reshape(4, -1), axis=1)
    np.testing.assert_allclose(norms, 0.5, rtol=1e-5)  # tanh of large values has norm >> 0.5
    t = np.tanh(big).reshape(4, -1)
    np.testing.assert_allclose(out.reshape(4, -1), t * (0.5 / np.linalg.norm(t, axis=1, keepdims=True)), rtol=1e-5)
    small = np.full((2, 3), 0.01, "float32")
    np.testing.assert_allclose(np.asarray(BoundedPerturbation(0.5, "l2")(small)), np.tanh(small), rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="epsilon"):
        BoundedPerturbation(0.0)
    with pytest.raises(ValueError, match="norm"):
        BoundedPerturbation(0.1, "l1")
