"""Offline GAN metrics: Inception-style score, FID and KID on a locally trained classifier.

The published metrics use ImageNet Inception-v3 weights, which cannot be
downloaded here. For small data sets (digits, MNIST, CIFAR) we follow
TF-GAN's advice and compute them on a classifier trained locally on the same
data (`train_feature_classifier`): the numbers are comparable between runs
of this library, **not** with the papers' Inception numbers.

Pitfalls handled (see shared notes, GAN section 5):
* the classifier score is bounded by K and is fooled by per-class
  prototypes, so `evaluate_samples` always reports it together with FID and
  KID, which catch missing diversity;
* the FID covariances are regularised with `eps * I` and the matrix square
  root is taken through symmetric eigendecompositions (no complex parts, no
  "singular matrix" warnings from `scipy.linalg.sqrtm`).
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------- Inception score


def classifier_score(probabilities, splits: int = 10) -> tuple[float, float]:
    """Inception score with a given classifier: mean and std over `splits` splits.

    IS = exp( E_x KL( p(y|x) || p(y) ) ),  p(y) = mean over the split of p(y|x)
    (Salimans et al. 2016, section 4). Bounded by the number of classes K.
    Split `i` is `p[i * N // splits:(i + 1) * N // splits]`, as the reference
    improved-gan code (not `np.array_split`, which differs when `splits` does
    not divide N).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be [N, K], got shape {p.shape}")
    if splits < 1 or splits > len(p):
        raise ValueError(f"splits must be in [1, N={len(p)}], got {splits}")
    scores = []
    n = len(p)
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.sum(part * (np.log(part + 1e-12) - np.log(marginal + 1e-12)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# -------------------------------------------------------------------------- FID


def _sqrt_psd(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(features_a, features_b, eps: float = 1e-6) -> float:
    """FID between two feature sets (Heusel et al. 2017).

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}),
    with S + eps I. Tr((S_a S_b)^{1/2}) = Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}),
    a symmetric PSD matrix, so only `eigh` is needed.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, D] with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 samples")
    eye = np.eye(a.shape[1])
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False) + eps * eye
    cov_b = np.cov(b, rowvar=False) + eps * eye
    root_a = _sqrt_psd(cov_a)
    cross = root_a @ cov_b @ root_a
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((cross + cross.T) / 2), 0.0, None)))
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


# -------------------------------------------------------------------------- KID


def _polynomial_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel k(x,y) = (x.y/d + 1)^3."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def kernel_distance(
    features_a, features_b, num_subsets: int = 20, subset_size: int = 500, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2, mean and std over random subsets."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("each feature set needs at least 2 samples")
    rng = np.random.RandomState(seed)
    values = [
        mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


# ----------------------------------------------------------- feature classifier


def train_feature_classifier(images, labels, num_classes: int, *, epochs: int = 30, seed: int = 0):
    """A small CNN trained on the real data; returns a model `x -> (features, probabilities)`.

    Trained with plain `model.fit` (it is an evaluation tool, not a recipe).
    """
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(images.shape[1:])
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x) if images.shape[1] >= 8 else x
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    features = keras.layers.Dense(128, activation="relu", name="features")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    trainer = keras.Model(inputs, logits)
    trainer.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainer.fit(images, labels, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return keras.Model(inputs, [features, probabilities])


def evaluate_samples(classifier, real_images, fake_images, *, splits: int = 10, seed: int = 0) -> dict:
    """IS (on fakes and, for reference, on reals), FID and KID of fakes vs reals."""
    real_feat, real_prob = (np.asarray(t) for t in classifier.predict(real_images, verbose=0, batch_size=256))
    fake_feat, fake_prob = (np.asarray(t) for t in classifier.predict(fake_images, verbose=0, batch_size=256))
    is_fake, is_fake_std = classifier_score(fake_prob, splits=min(splits, len(fake_prob)))
    is_real, _ = classifier_score(real_prob, splits=min(splits, len(real_prob)))
    kid, kid_std = kernel_distance(real_feat, fake_feat, seed=seed)
    return {
        "inception_score": is_fake,
        "inception_score_std": is_fake_std,
        "inception_score_real": is_real,
        "fid": frechet_distance(real_feat, fake_feat),
        "kid": kid,
        "kid_std": kid_std,
    }
