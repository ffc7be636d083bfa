"""Evaluation of per-frame video embeddings as in TCC (Dwibedi et al. 2019): alignment and phases.

All three follow the reference evaluation code (google-research/tcc,
`tcc/evaluation/`) and freeze the embeddings (no fine-tuning):

* **Kendall's tau** (`kendalls_tau_alignment`, `kendalls_tau.py`): for every
  ordered pair `(i, j)`, `i != j`, of videos, take every `stride`-th frame
  of both, find for each frame of `i` its nearest neighbour in `j`
  (squared Euclidean distance), and compute Kendall's tau between the
  frame order `0, 1, ..., n-1` and the neighbours' indices; NaN taus
  (a constant neighbour sequence) are dropped, the rest averaged. 1 means
  the nearest neighbours are perfectly in order.
  `kendall_tau` is tau-b (the statistic of `scipy.stats.kendalltau`, which
  the reference calls; ties matter as nearest-neighbour indices repeat)::

      tau_b = (C - D) / sqrt((n0 - T_x) (n0 - T_y)),   n0 = n (n - 1) / 2

  with `C`/`D` the concordant/discordant pairs and `T_x`/`T_y` the pairs tied
  in x / in y.
* **Phase progression** (`phase_progression`, `event_completion.py`): for
  each of the `K - 1` phase boundaries `k`, a per-frame target
  `(frame - transition_k) / seq_len`, where `transition_k` is the last frame of
  phase `k` (the first frame of a later phase if `k` is absent; the last frame
  if no later phase occurs). One `sklearn` `LinearRegression` per target is fit
  on the training videos' embeddings; the score is the mean coefficient of
  determination R^2 on the validation videos.
* **Phase classification** (`phase_classification`, `classification.py`): an
  `sklearn.svm.SVC(decision_function_shape="ovo")` (RBF kernel, defaults) fit
  on per-frame embeddings and phase labels of the training videos; the
  score is its accuracy on the validation frames.
"""

from __future__ import annotations

import numpy as np


def kendall_tau(x, y) -> float:
    """Kendall's tau-b of two equal-length sequences (NaN if either is constant)."""
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    n = x.shape[0]
    if n < 2:
        return float("nan")
    iu = np.triu_indices(n, k=1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    s = float(np.sum(dx * dy))  # concordant - discordant (pairs tied in x or y count 0)
    n0 = n * (n - 1) / 2.0
    tied_x = float(np.sum(dx == 0))
    tied_y = float(np.sum(dy == 0))
    denom = np.sqrt((n0 - tied_x) * (n0 - tied_y))
    return float(s / denom) if denom > 0 else float("nan")


def nearest_neighbours(query, candidates) -> np.ndarray:
    """Index of each query row's nearest candidate row under the squared Euclidean distance."""
    q = np.asarray(query, np.float64)
    c = np.asarray(candidates, np.float64)
    d = np.sum(q**2, 1)[:, None] + np.sum(c**2, 1)[None, :] - 2.0 * q @ c.T
    return np.argmin(d, axis=1)


def kendalls_tau_alignment(embeddings, stride: int = 1, return_all: bool = False):
    """Mean Kendall's tau of nearest-neighbour alignment over all ordered pairs of videos.

    Args:
        embeddings: list of `[T_i, D]` arrays, one per video (lengths may differ).
        stride: use every `stride`-th frame (reference: 5 for Penn Action, 2 for Pouring).
        return_all: also return the per-pair taus (NaNs kept).

    Returns:
        The mean tau over the pairs whose tau is defined (NaN if none is).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    embs = [np.asarray(e, np.float64)[::stride] for e in embeddings]
    if len(embs) < 2:
        raise ValueError(f"Kendall's tau alignment needs >= 2 videos, got {len(embs)}")
    for k, e in enumerate(embs):
        if e.ndim != 2:
            raise ValueError(f"video {k}: embeddings must be [frames, dim], got shape {e.shape}")
    taus = []
    for i, query in enumerate(embs):
        for j, candidates in enumerate(embs):
            if i == j:
                continue
            nn = nearest_neighbours(query, candidates)
            taus.append(kendall_tau(np.arange(len(nn)), nn))
    taus = np.asarray(taus)
    valid = taus[~np.isnan(taus)]
    mean = float(valid.mean()) if valid.size else float("nan")
    return (mean, taus) if return_all else mean


def progression_targets(labels, num_phases: int) -> np.ndarray:
    """Per-frame phase-progression targets `[T, num_phases - 1]` of one video's ordered phase labels."""
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    if n == 0:
        raise ValueError("a video needs at least one frame")
    if num_phases < 2:
        raise ValueError(f"phase progression needs >= 2 phases, got {num_phases}")
    out = np.zeros((n, num_phases - 1))
    for k in range(num_phases - 1):
        transition = n - 1  # no later phase in this video
        later = np.nonzero(labels[1:] > k)[0]
        if later.size:
            first = int(later[0]) + 1  # first frame of a later phase
            transition = first - 1 if labels[first - 1] == k else first
        out[:, k] = (np.arange(n, dtype=np.float64) - transition) / n
    return out


def phase_progression(train_embeddings, train_labels, val_embeddings, val_labels, num_phases: int) -> float:
    """Mean R^2 of per-boundary linear regressions from embeddings to phase progression (see module doc)."""
    from sklearn.linear_model import LinearRegression

    x_train = np.concatenate([np.asarray(e, np.float64) for e in train_embeddings])
    x_val = np.concatenate([np.asarray(e, np.float64) for e in val_embeddings])
    y_train = np.concatenate([progression_targets(lab, num_phases) for lab in train_labels])
    y_val = np.concatenate([progression_targets(lab, num_phases) for lab in val_labels])
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("each video needs one label per embedded frame")
    scores = []
    for k in range(num_phases - 1):
        model = LinearRegression().fit(x_train, y_train[:, k])
        scores.append(model.score(x_val, y_val[:, k]))
    return float(np.mean(scores))


def phase_classification(train_embeddings, train_labels, val_embeddings, val_labels) -> float:
    """Validation accuracy of an RBF `SVC(decision_function_shape="ovo")` on per-frame phase labels."""
    from sklearn.svm import SVC

    x_train = np.concatenate([np.asarray(e, np.float64) for e in train_embeddings])
    y_train = np.concatenate([np.asarray(lab).reshape(-1) for lab in train_labels])
    x_val = np.concatenate([np.asarray(e, np.float64) for e in val_embeddings])
    y_val = np.concatenate([np.asarray(lab).reshape(-1) for lab in val_labels])
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("each video needs one label per embedded frame")
    if len(np.unique(y_train)) < 2:
        raise ValueError("phase classification needs at least two phases in the training labels")
    model = SVC(decision_function_shape="ovo").fit(x_train, y_train)
    return float(model.score(x_val, y_val))
