"""GAN metrics against closed forms and independent computations."""

import numpy as np
import pytest
import scipy.linalg

from kerasnets.metrics import gan


def test_inception_score_of_confident_uniform_classifier_equals_k():
    k = 10
    probs = np.eye(k)[np.arange(1000) % k]  # each sample certain, classes balanced
    score, std = gan.classifier_score(probs, splits=10)
    assert score == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_of_collapsed_or_unsure_classifier_is_one():
    assert gan.classifier_score(np.tile(np.eye(10)[3], (100, 1)), splits=5)[0] == pytest.approx(1.0, abs=1e-6)
    assert gan.classifier_score(np.full((100, 10), 0.1), splits=5)[0] == pytest.approx(1.0, abs=1e-6)


def test_inception_score_hand_case():
    # One split, two samples: p1 = (0.9, 0.1), p2 = (0.2, 0.8); marginal (0.55, 0.45).
    p = np.array([[0.9, 0.1], [0.2, 0.8]])
    m = p.mean(0)
    kl = [sum(pi * np.log(pi / mi) for pi, mi in zip(row, m)) for row in p]
    assert gan.classifier_score(p, splits=1)[0] == pytest.approx(np.exp(np.mean(kl)), rel=1e-9)


def test_inception_score_splits_as_the_reference_code():
    # improved-gan's get_inception_score: part = preds[i * N // splits:(i + 1) * N // splits], computed here
    # independently with scipy's KL divergence; at N=999 and 10 splits np.array_split's parts differ.
    import scipy.stats

    rng = np.random.default_rng(0)
    # Peaked, uneven probabilities: the split scores depend on which samples fall in which split.
    p = rng.dirichlet(np.full(10, 0.2), size=999) * rng.uniform(0.5, 1.5, (999, 1))
    p = p / p.sum(1, keepdims=True)
    n, splits = len(p), 10
    parts = [p[i * n // splits : (i + 1) * n // splits] for i in range(splits)]
    assert [len(x) for x in parts] == [99] + [100] * 9  # np.array_split: [100] * 9 + [99]
    scores = [np.exp(np.mean([scipy.stats.entropy(row, part.mean(0)) for row in part])) for part in parts]
    mean, std = gan.classifier_score(p, splits=splits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-9)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_matches_scipy_otherwise():
    rng = np.random.RandomState(0)
    a = rng.randn(500, 8) @ rng.randn(8, 8)
    assert gan.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.randn(400, 8) * 1.5 + 0.7
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(ca + cb - 2 * covmean)
    assert gan.frechet_distance(a, b, eps=0.0) == pytest.approx(expected, rel=1e-6)


def test_fid_mean_shift_closed_form_and_singular_covariance():
    rng = np.random.RandomState(1)
    a = rng.randn(2000, 4)
    shift = np.array([1.0, 0.0, -2.0, 0.5])
    assert gan.frechet_distance(a, a + shift) == pytest.approx(np.sum(shift**2), rel=1e-6)
    dead = np.concatenate([a, np.zeros((2000, 3))], axis=1)  # dead ReLU features: singular covariance
    assert np.isfinite(gan.frechet_distance(dead, dead + 0.1))


def test_kid_unbiased_mmd_hand_formula_and_behaviour():
    rng = np.random.RandomState(2)
    x, y = rng.randn(5, 3), rng.randn(6, 3)
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    kyy = sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    kxy = sum(k(x[i], y[j]) for i in range(5) for j in range(6)) / 30
    assert gan.mmd2_unbiased(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)
    same = gan.kernel_distance(rng.randn(600, 8), rng.randn(600, 8), num_subsets=5, subset_size=200)[0]
    shifted = gan.kernel_distance(rng.randn(600, 8), rng.randn(600, 8) + 1.0, num_subsets=5, subset_size=200)[0]
    assert abs(same) < 0.05 and shifted > 0.5


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="same D"):
        gan.frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="splits"):
        gan.classifier_score(np.full((4, 2), 0.5), splits=10)


@pytest.mark.slow
def test_feature_classifier_scores_real_digits_above_noise():
    from kerasnets.data.digits import load_digits

    (x, y), (xt, _) = load_digits(seed=0)
    classifier = gan.train_feature_classifier(x, y, 10, epochs=40)
    real = gan.evaluate_samples(classifier, x[:400], xt[:400])
    noise = gan.evaluate_samples(classifier, x[:400], np.random.RandomState(0).rand(400, 8, 8, 1).astype("float32"))
    assert real["inception_score"] > 6 and noise["inception_score"] < real["inception_score"] - 2
    assert real["fid"] < noise["fid"] / 5 and real["kid"] < noise["kid"]
