"""GAT generator and trainer: bound, input gradient, one alternating step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.models.gat import GATTrainer, build_gat_generator, input_gradient, normalize_gradient
from kerasnets.models.small_classifiers import build_cnn_classifier, build_mlp_classifier, sparse_ce


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 10, size=n).astype("int32")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_generator_respects_the_bound(norm):
    gen = build_gat_generator((8, 8, 1), (8,), epsilon=0.05, norm=norm)
    delta = np.random.default_rng(0).normal(scale=100.0, size=(5, 8, 8, 1)).astype("float32")
    out = gen(delta).numpy()
    assert out.shape == delta.shape
    if norm == "linf":
        assert np.abs(out).max() <= 0.05 + 1e-7
    else:
        assert np.linalg.norm(out.reshape(5, -1), axis=1).max() <= 0.05 + 1e-6


def test_input_gradient_is_per_example_and_normalized():
    keras.utils.set_random_seed(0)
    clf = build_mlp_classifier((8, 8, 1), hidden=(16,))
    x, y = _batch()
    g = input_gradient(clf, tf.constant(x), y).numpy()
    for i in (0, 3):
        xi = tf.constant(x[i : i + 1])
        with tf.GradientTape() as tape:
            tape.watch(xi)
            loss = tf.reduce_sum(sparse_ce(y[i : i + 1], clf(xi)))
        np.testing.assert_allclose(g[i], tape.gradient(loss, xi).numpy()[0], rtol=1e-5, atol=1e-7)
    n = normalize_gradient(tf.constant(g)).numpy()
    np.testing.assert_allclose(np.abs(n).reshape(len(x), -1).max(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.sign(n), np.sign(g))
    assert not normalize_gradient(tf.zeros((2, 3))).numpy().any()


def test_one_step_raises_the_adversarial_loss_and_trains_both_classifiers():
    keras.utils.set_random_seed(0)
    clf = build_cnn_classifier((8, 8, 1), filters=(4,), dense=8)
    base = build_cnn_classifier((8, 8, 1), filters=(4,), dense=8, name="base")
    base.set_weights(clf.get_weights())
    gen = build_gat_generator((8, 8, 1), (8,), epsilon=0.1)
    trainer = GATTrainer(clf, gen, base, c_g=0.0, generator_learning_rate=1e-2)
    x, y = _batch(16)
    x_t = tf.constant(x)

    def adv_loss():
        p = trainer.perturbation(x_t, y)
        return float(tf.reduce_mean(sparse_ce(y, clf(tf.clip_by_value(x_t + p, 0, 1)))))

    clf_before = [w.copy() for w in clf.get_weights()]
    before = adv_loss()
    logs = trainer.train_step((x_t, tf.constant(y)))
    assert set(logs) >= {"loss_classifier", "loss_generator", "perturbation_l2", "loss_baseline"}
    # the classifier and baseline started equal and took different steps (GAT also sees x + G)
    assert any(not np.allclose(a, b) for a, b in zip(clf.get_weights(), base.get_weights()))
    assert any(not np.allclose(a, b) for a, b in zip(clf.get_weights(), clf_before))
    assert float(logs["perturbation_l2"]) <= 0.1 * 8 + 1e-6  # linf 0.1 over 64 pixels
    # against the classifier it was trained on, the generator's step raised the adversarial loss
    clf.set_weights(clf_before)
    assert adv_loss() > before


def test_bad_hyper_parameters():
    clf = build_mlp_classifier((8, 8, 1), hidden=(4,))
    gen = build_gat_generator((8, 8, 1), (4,))
    with pytest.raises(ValueError, match="alpha"):
        GATTrainer(clf, gen, alpha=2.0)
    with pytest.raises(ValueError, match="c_g"):
        GATTrainer(clf, gen, c_g=-1.0)
