"""TCC losses: closed-form two-frame cases and an independent NumPy loop over all pairs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import tcc


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _numpy_tcc(embs, steps, seq_lens, loss_type, tau=0.1, smoothing=0.1, lam=0.001, delta=0.1, similarity="l2"):
    """Loop transcription of the reference's deterministic alignment, frame by frame."""
    b, m, d = embs.shape
    terms = []
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            u, v = embs[i], embs[j]
            t = steps[i] / seq_lens[i]
            for start in range(m):
                if similarity == "l2":
                    s = np.array([-np.sum((u[start] - v[k]) ** 2) for k in range(m)]) / d / tau
                else:
                    s = np.array([u[start] @ v[k] for k in range(m)]) / d / tau
                soft = _softmax(s) @ v
                if similarity == "l2":
                    logits = np.array([-np.sum((soft - u[k]) ** 2) for k in range(m)]) / d / tau
                else:
                    logits = np.array([soft @ u[k] for k in range(m)]) / d / tau
                beta = _softmax(logits)
                if loss_type == "classification":
                    target = np.full(m, smoothing / m)
                    target[start] += 1 - smoothing
                    terms.append(-np.sum(target * np.log(beta)))
                    continue
                mu = beta @ t
                err = t[start] - mu
                if loss_type == "regression_mse_var":
                    var = beta @ (t - mu) ** 2
                    terms.append(err**2 / var + lam * np.log(var))
                elif loss_type == "regression_mse":
                    terms.append(err**2)
                else:
                    a = abs(err)
                    terms.append(0.5 * a**2 if a <= delta else delta * a - 0.5 * delta**2)
    return float(np.mean(terms))


def test_two_frame_classification_by_hand():
    # U = V = (0, 1), D = 1, tau = 1: sim(0, v) = (0, -1), so the soft neighbour of u_0 is
    # v~ = e^-1 / (1 + e^-1); cycling back, logits = (-v~^2, -(v~ - 1)^2).
    embs = np.array([[[0.0], [1.0]], [[0.0], [1.0]]])
    a = math.exp(-1) / (1 + math.exp(-1))
    l0, l1 = -(a**2), -((a - 1) ** 2)
    ce0 = -l0 + math.log(math.exp(l0) + math.exp(l1))  # row 0, label 0
    # Row 1 is the mirror image (u_1 = 1): the same cross-entropy by symmetry.
    got = tcc.temporal_cycle_consistency_loss(embs, loss_type="classification", temperature=1.0, label_smoothing=0.0)
    assert float(got) == pytest.approx(ce0, rel=1e-6)
    # Label smoothing 0.1 over 2 classes: targets (0.95, 0.05).
    p0 = math.exp(l0) / (math.exp(l0) + math.exp(l1))
    smoothed = -(0.95 * math.log(p0) + 0.05 * math.log(1 - p0))
    got = tcc.temporal_cycle_consistency_loss(embs, loss_type="classification", temperature=1.0, label_smoothing=0.1)
    assert float(got) == pytest.approx(smoothed, rel=1e-6)


def test_two_frame_variance_regression_by_hand():
    embs = np.array([[[0.0], [1.0]], [[0.0], [1.0]]])
    a = math.exp(-1) / (1 + math.exp(-1))
    l0, l1 = -(a**2), -((a - 1) ** 2)
    b1 = math.exp(l1) / (math.exp(l0) + math.exp(l1))  # weight on frame 1 when starting at frame 0
    t = (0.0, 0.5)  # steps (0, 1) over a video of 2 frames
    mu = b1 * t[1]
    var = (1 - b1) * (t[0] - mu) ** 2 + b1 * (t[1] - mu) ** 2
    row0 = (t[0] - mu) ** 2 / var + 0.001 * math.log(var)
    # Starting at frame 1 the weights mirror: beta = (b1, 1 - b1).
    mu1 = (1 - b1) * t[1]
    var1 = b1 * (t[0] - mu1) ** 2 + (1 - b1) * (t[1] - mu1) ** 2
    row1 = (t[1] - mu1) ** 2 / var1 + 0.001 * math.log(var1)
    got = tcc.temporal_cycle_consistency_loss(embs, loss_type="regression_mse_var", temperature=1.0)
    assert float(got) == pytest.approx((row0 + row1) / 2, rel=1e-5)


@pytest.mark.parametrize("loss_type", tcc.LOSS_TYPES)
@pytest.mark.parametrize("similarity", tcc.SIMILARITIES)
def test_all_pairs_match_a_numpy_loop(loss_type, similarity):
    rng = np.random.default_rng(0)
    embs = rng.normal(size=(3, 4, 5))
    steps = np.sort(rng.choice(30, size=(3, 4), replace=False), axis=1)
    seq_lens = np.array([30, 35, 32])
    want = _numpy_tcc(embs, steps, seq_lens, loss_type, similarity=similarity)
    got = tcc.temporal_cycle_consistency_loss(
        tf.constant(embs, tf.float64), steps, seq_lens, loss_type=loss_type, similarity=similarity
    )
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_similarity_is_scaled_by_dimension_and_temperature():
    a = np.array([[1.0, 2.0, 0.0]])
    b = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    l2 = tcc.scaled_similarity(a, b, "l2", 0.5).numpy()
    np.testing.assert_allclose(l2, [[-6.0 / 3 / 0.5, -2.0 / 3 / 0.5]])
    cos = tcc.scaled_similarity(a, b, "cosine", 0.5).numpy()
    np.testing.assert_allclose(cos, [[0.0, 3.0 / 3 / 0.5]])


def test_cycle_sees_the_other_video_as_a_set_and_rewards_coverage():
    # Two videos moving along the same curve at different speeds.
    t1, t2 = np.linspace(0, 1, 12), np.linspace(0, 1, 12) ** 1.5
    curve = lambda t: np.stack([np.cos(3 * t), np.sin(3 * t), t], -1) * 4.0  # noqa: E731
    aligned = np.stack([curve(t1), curve(t2)])
    shuffled = aligned.copy()
    shuffled[1] = shuffled[1][np.random.default_rng(1).permutation(12)]
    collapsed = aligned.copy()
    collapsed[1] = collapsed[1].mean(0)  # the second video stands still
    for loss_type in ("classification", "regression_mse_var"):
        good = float(tcc.temporal_cycle_consistency_loss(aligned[::-1], loss_type=loss_type))
        # U -> V -> U only sees V's frames as a set (soft nearest neighbours), so the
        # pair (aligned[1] -> shuffled[1]) is unchanged and (shuffled[1] -> ...) is a relabelling.
        one_way = tcc.cycle_back_logits(aligned[0], shuffled[1]).numpy()
        np.testing.assert_allclose(one_way, tcc.cycle_back_logits(aligned[0], aligned[1]).numpy(), rtol=1e-6)
        bad = float(tcc.temporal_cycle_consistency_loss(collapsed, loss_type=loss_type))
        assert good < bad


def test_gradients_are_finite():
    embs = tf.Variable(np.random.default_rng(2).normal(size=(2, 6, 8)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tcc.temporal_cycle_consistency_loss(embs)
    grad = tf.convert_to_tensor(tape.gradient(loss, embs))
    assert np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).sum() > 0


def test_keras_loss_class_equals_the_function_and_round_trips():
    rng = np.random.default_rng(3)
    embs = rng.normal(size=(3, 5, 4)).astype("float32")
    times = np.sort(rng.uniform(size=(3, 5)), axis=1).astype("float32")
    loss = tcc.TemporalCycleConsistencyLoss(variance_lambda=0.01)
    want = tcc.temporal_cycle_consistency_loss(embs, times, np.ones(3), variance_lambda=0.01)
    assert float(loss(times, embs)) == pytest.approx(float(want), rel=1e-6)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, tcc.TemporalCycleConsistencyLoss) and clone.variance_lambda == 0.01


def test_bad_inputs_are_value_errors():
    with pytest.raises(ValueError, match=">= 2 videos"):
        tcc.temporal_cycle_consistency_loss(np.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match="loss_type"):
        tcc.temporal_cycle_consistency_loss(np.zeros((2, 4, 3)), loss_type="triplet")
    with pytest.raises(ValueError, match="batch, frames, dim"):
        tcc.temporal_cycle_consistency_loss(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="similarity"):
        tcc.scaled_similarity(np.zeros((2, 3)), np.zeros((2, 3)), "dot")
    with pytest.raises(ValueError, match="loss_type"):
        tcc.TemporalCycleConsistencyLoss(loss_type="mse")
