"""BEGAN's losses, k_t controller and convergence measure against hand-computed values."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses.boundary_equilibrium import (
    boundary_equilibrium_losses,
    convergence_measure,
    reconstruction_loss,
    update_k,
)


def test_reconstruction_loss_is_mean_l1():
    x = np.array([0.5, -1.0, 0.25, 1.0, 0.0, 0.0, 0.0, 0.0], "float32").reshape(2, 2, 2, 1)
    rec = np.array([0.0, -0.5, 0.75, 1.0, 0.1, -0.1, 0.3, 0.0], "float32").reshape(2, 2, 2, 1)
    # image 0: |diffs| 0.5 0.5 0.5 0 -> 0.375; image 1: 0.1 0.1 0.3 0 -> 0.125; all: 0.25
    assert float(reconstruction_loss(x, rec)) == pytest.approx(0.25, abs=1e-7)
    np.testing.assert_allclose(reconstruction_loss(x, rec, axis=(1, 2, 3)), [0.375, 0.125], atol=1e-7)
    # eta = 1: the loss is linear in the error (an L2 loss would give 4x, not 2x).
    assert float(reconstruction_loss(x, x + 2 * (rec - x))) == pytest.approx(0.5, abs=1e-6)


def test_reconstruction_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3)))


def test_player_losses():
    loss_d, loss_g = boundary_equilibrium_losses(
        tf.constant(0.3), tf.constant(0.2), tf.constant(0.25), tf.constant(0.4)
    )
    assert float(loss_d) == pytest.approx(0.3 - 0.4 * 0.2)  # L(x) - k_t L(G(z_D))
    assert float(loss_g) == pytest.approx(0.25)  # L(G(z_G))


def test_k_t_is_a_constant_for_the_gradient():
    real, fake, k = tf.Variable(0.3), tf.Variable(0.2), tf.Variable(0.4)
    with tf.GradientTape() as tape:
        loss_d, _ = boundary_equilibrium_losses(real, fake, fake, k)
    d_real, d_fake, d_k = tape.gradient(loss_d, [real, fake, k])
    assert float(d_real) == pytest.approx(1.0)
    assert float(d_fake) == pytest.approx(-0.4)
    assert d_k is None


@pytest.mark.parametrize(
    "k, real, fake, gamma, lambda_k, expected",
    [
        (0.5, 0.4, 0.1, 0.5, 0.001, 0.5 + 0.001 * (0.2 - 0.1)),  # inside [0, 1]
        (0.0, 0.6, 0.1, 0.5, 0.001, 0.0002),  # from k_0 = 0 upwards
        (0.9999, 1.0, 0.0, 1.0, 0.001, 1.0),  # 1.0009 clipped at 1
        (0.0, 0.1, 0.5, 0.5, 0.001, 0.0),  # -0.00045 clipped at 0
        (0.3, 0.2, 0.3, 0.7, 0.5, 0.3 + 0.5 * (0.14 - 0.3)),  # large gain, gamma 0.7
    ],
)
def test_update_k(k, real, fake, gamma, lambda_k, expected):
    got = update_k(tf.constant(k), tf.constant(real), tf.constant(fake), gamma, lambda_k)
    assert float(got) == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    "real, fake, gamma, expected",
    [
        (0.4, 0.1, 0.5, 0.4 + 0.1),  # gamma L(x) > L(G(z))
        (0.4, 0.5, 0.5, 0.4 + 0.3),  # below: the absolute value matters
        (0.4, 0.2, 0.5, 0.4),  # at equilibrium M = L(x)
        (0.2, 0.05, 0.3, 0.2 + 0.01),
    ],
)
def test_convergence_measure(real, fake, gamma, expected):
    assert float(convergence_measure(tf.constant(real), tf.constant(fake), gamma)) == pytest.approx(expected, abs=1e-7)
