"""Salimans et al. 2016 loss terms against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import improved_gan as ig


def test_feature_matching_squared_l2_of_batch_means():
    real = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")  # mean (2, 3)
    fake = np.array([[0.0, 1.0], [2.0, 1.0]], "float32")  # mean (1, 1)
    assert float(ig.feature_matching_loss(real, fake)) == pytest.approx(1.0 + 4.0)
    assert float(ig.feature_matching_loss(real, fake, norm="l1")) == pytest.approx(1.0 + 2.0)
    # Conv features are flattened per example.
    assert float(ig.feature_matching_loss(real.reshape(2, 1, 2), fake.reshape(2, 1, 2))) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="norm"):
        ig.feature_matching_loss(real, fake, norm="l3")


def test_one_sided_label_smoothing_targets_and_values():
    real_logits = tf.constant([0.0, 2.0])
    fake_logits = tf.constant([0.0, -1.0])
    real_loss, fake_loss = ig.one_sided_label_smoothing_losses(real_logits, fake_logits, real_target=0.9)

    def bce(target, logit):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    assert float(real_loss) == pytest.approx(np.mean([bce(0.9, 0.0), bce(0.9, 2.0)]), rel=1e-6)
    # Fakes keep target 0: the same as plain BCE with label 0.
    assert float(fake_loss) == pytest.approx(np.mean([bce(0.0, 0.0), bce(0.0, -1.0)]), rel=1e-6)
    # A real logit of logit(0.9) is the optimum of the smoothed real term.
    with tf.GradientTape() as tape:
        x = tf.Variable([math.log(0.9 / 0.1)])
        loss, _ = ig.one_sided_label_smoothing_losses(x, tf.constant([0.0]))
    assert abs(float(tape.gradient(loss, x)[0])) < 1e-6


def test_k_plus_one_probability_is_z_over_z_plus_one():
    logits = np.array([[0.5, -1.0, 2.0], [-3.0, -3.0, -3.0]], "float32")
    z = np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(ig.k_plus_one_real_probability(logits).numpy(), z / (z + 1), rtol=1e-6)


def test_semi_supervised_losses_hand_case():
    lab = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
    y = np.array([0, 0])
    unl = np.array([[0.0, 0.0]], "float32")
    fake = np.array([[1.0, -1.0]], "float32")
    sup, unsup = ig.semi_supervised_losses(lab, y, unl, fake)
    # L_sup = -mean log softmax(l)[y]
    p0 = math.exp(1) / (math.exp(1) + 1)
    p1 = 1 / (1 + math.exp(2))
    assert float(sup) == pytest.approx(-(math.log(p0) + math.log(p1)) / 2, rel=1e-6)
    # L_unsup = -log D(x_unl) - log(1 - D(G(z))), D = Z/(Z+1)
    z_unl, z_fake = 2.0, math.exp(1) + math.exp(-1)
    assert float(unsup) == pytest.approx(-math.log(z_unl / (z_unl + 1)) - math.log(1 / (z_fake + 1)), rel=1e-6)
    z = math.exp(1) + math.exp(-1)
    assert float(ig.k_plus_one_generator_loss(fake)) == pytest.approx(-math.log(z / (z + 1)), rel=1e-6)


def test_historical_averaging_running_mean_of_past_values():
    v = tf.Variable([1.0, 2.0])
    w = tf.Variable([[3.0]])
    ha = ig.HistoricalAveraging(weight=2.0)
    ha.track([v, w])
    assert float(ha([v, w])) == 0.0  # nothing recorded yet
    ha.record([v, w])  # average (1, 2), (3)
    v.assign([3.0, 2.0])
    w.assign([[5.0]])
    assert float(ha([v, w])) == pytest.approx(2.0 * ((3 - 1) ** 2 + 0 + (5 - 3) ** 2))
    ha.record([v, w])  # average (2, 2), (4)
    np.testing.assert_allclose(ha.averages[0].numpy(), [2.0, 2.0])
    np.testing.assert_allclose(ha.averages[1].numpy(), [[4.0]])
    # Gradient pulls theta toward the average: d/dtheta 2*||theta - avg||^2 = 4 (theta - avg).
    with tf.GradientTape() as tape:
        penalty = ha([v, w])
    np.testing.assert_allclose(tape.gradient(penalty, v).numpy(), [4.0, 0.0])
    assert ig.HistoricalAveraging.from_config(ha.get_config()).weight == 2.0
