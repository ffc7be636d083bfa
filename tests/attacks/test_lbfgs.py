"""Szegedy's box-constrained L-BFGS attack: objective, box, label change, distortion definitions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.attacks.lbfgs import _make_objective, choose_targets, lbfgs_attack
from kerasnets.data.image_classification import load_image_classification
from kerasnets.models.small_classifiers import build_mlp_classifier, predict_labels


pytestmark = pytest.mark.slow  # trains a small classifier once per module


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained a few epochs on the digits (about a second)."""
    (x_tr, y_tr), (x_te, y_te) = load_image_classification(max_train=600, max_test=100)
    keras.utils.set_random_seed(0)
    model = build_mlp_classifier((8, 8, 1), hidden=(32,))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_tr, y_tr, epochs=15, batch_size=64, verbose=0)
    keep = predict_labels(model, x_te) == y_te
    return model, x_te[keep][:5], y_te[keep][:5]


def _np_objective(model, x_adv, x, c, labels, targeted, norm):
    logits = model(x_adv).numpy().astype("float64")
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    p = np.exp(logp)
    r = (x_adv - x).reshape(len(x), -1).astype("float64")
    sq = (r**2).sum(1)
    dist = np.sqrt(sq + 1e-12) if norm == "l2" else sq
    idx = np.arange(len(x))
    loss = -logp[idx, labels] if targeted else -np.log(1.0 - p[idx, labels])
    return float(np.sum(c * dist + loss))


@pytest.mark.parametrize("norm", ["l2", "l2_squared"])
@pytest.mark.parametrize("targeted", [True, False])
def test_objective_is_c_norm_plus_loss(trained, norm, targeted):
    model, x, y = trained
    rng = np.random.default_rng(0)
    x_adv = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1).astype("float32")
    c = rng.uniform(0.1, 2.0, size=len(x))
    labels = (y + 3) % 10 if targeted else y
    f, g, _ = _make_objective(model, norm)(
        tf.constant(x_adv), tf.constant(x), tf.constant(c, tf.float32), tf.constant(labels, tf.int32), tf.constant(targeted)
    )
    expected = _np_objective(model, x_adv, x, c, labels, targeted, norm)
    assert float(f) == pytest.approx(expected, rel=1e-4)
    # gradient against central differences on a few coordinates
    flat = x_adv.reshape(-1).astype("float64")
    for i in (3, 70, 200):
        e = np.zeros_like(flat)
        e[i] = 1e-3
        up = _np_objective(model, (flat + e).reshape(x.shape).astype("float32"), x, c, labels, targeted, norm)
        dn = _np_objective(model, (flat - e).reshape(x.shape).astype("float32"), x, c, labels, targeted, norm)
        assert g.numpy().reshape(-1)[i] == pytest.approx((up - dn) / 2e-3, rel=0.05, abs=2e-3)


def test_targeted_examples_respect_the_box_and_reach_the_target(trained):
    model, x, y = trained
    targets = choose_targets(model, x, y, "random", seed=1)
    assert np.all(targets != y)
    res = lbfgs_attack(model, x, y, targets, search_steps=4, max_iterations=60)
    assert res.adversarial.min() >= 0.0 and res.adversarial.max() <= 1.0
    assert res.success.mean() >= 0.75
    ok = res.success
    np.testing.assert_array_equal(predict_labels(model, res.adversarial[ok]), targets[ok])
    np.testing.assert_array_equal(res.predictions[ok], targets[ok])
    # failed examples are returned unchanged
    np.testing.assert_array_equal(res.adversarial[~ok], x[~ok])
    # distortion definitions: L2 of r and the paper's sqrt(sum r^2 / n)
    r = (res.adversarial - x).reshape(len(x), -1)
    np.testing.assert_allclose(res.l2[ok], np.linalg.norm(r[ok], axis=1), rtol=1e-5)
    np.testing.assert_allclose(res.rms[ok], np.sqrt((r[ok] ** 2).sum(1) / 64), rtol=1e-5)
    s = res.summary()
    assert s["mean_distortion_rms"] == pytest.approx(np.mean(res.rms[ok]))
    assert 0 < s["mean_distortion_rms"] < 0.5


def test_untargeted_examples_change_the_label(trained):
    model, x, y = trained
    res = lbfgs_attack(model, x, y, None, search_steps=4, max_iterations=60)
    assert res.adversarial.min() >= 0.0 and res.adversarial.max() <= 1.0
    assert res.success.mean() >= 0.75
    assert np.all(predict_labels(model, res.adversarial[res.success]) != y[res.success])
    assert np.all(res.targets == -1)


def test_search_over_c_does_not_increase_the_distortion(trained):
    model, x, y = trained
    one = lbfgs_attack(model, x, y, None, initial_c=0.01, search_steps=1, max_iterations=40)
    many = lbfgs_attack(model, x, y, None, initial_c=0.01, search_steps=3, max_iterations=40)
    both = one.success & many.success
    assert both.any()
    assert np.all(many.l2[both] <= one.l2[both] + 1e-6)
    assert np.mean(many.l2[both]) < np.mean(one.l2[both])


def test_next_likely_targets_and_bad_arguments(trained):
    model, x, y = trained
    logits = model(x).numpy()
    logits[np.arange(len(y)), y] = -np.inf
    np.testing.assert_array_equal(choose_targets(model, x, y, "next_likely"), np.argmax(logits, 1))
    with pytest.raises(ValueError, match="target mode"):
        choose_targets(model, x, y, "worst")
    with pytest.raises(ValueError, match="norm"):
        lbfgs_attack(model, x, y, norm="l1")
    with pytest.raises(ValueError, match="box"):
        lbfgs_attack(model, x + 2.0, y)
    with pytest.raises(ValueError, match="labels"):
        lbfgs_attack(model, x, y[:-1])
