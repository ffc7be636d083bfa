"""TCC evaluation: Kendall's tau (vs scipy), alignment tau, phase progression targets and R^2, SVC accuracy."""

import numpy as np
import pytest
from scipy import stats

from kerasnets.metrics import alignment


def test_kendall_tau_by_hand():
    # (0,1,2,3) vs (0,2,1,3): 6 pairs, one discordant (1,2): tau = (5 - 1) / 6.
    assert alignment.kendall_tau([0, 1, 2, 3], [0, 2, 1, 3]) == pytest.approx(4 / 6)
    assert alignment.kendall_tau([0, 1, 2], [2, 1, 0]) == pytest.approx(-1.0)
    assert np.isnan(alignment.kendall_tau([0, 1, 2], [5, 5, 5]))


@pytest.mark.parametrize("seed", range(5))
def test_kendall_tau_b_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = np.arange(25)
    y = rng.integers(0, 8, size=25)  # nearest-neighbour indices repeat
    assert alignment.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).correlation, abs=1e-12)
    x2 = rng.integers(0, 5, size=25)
    assert alignment.kendall_tau(x2, y) == pytest.approx(stats.kendalltau(x2, y).correlation, abs=1e-12)


def test_alignment_tau_is_one_for_monotone_and_minus_one_for_reversed_videos():
    a = np.linspace(0, 1, 10)[:, None] * np.array([[1.0, 2.0]])
    b = np.linspace(0, 1, 17)[:, None] ** 2 * np.array([[1.0, 2.0]])  # other speed, same path
    tau, taus = alignment.kendalls_tau_alignment([a, b], return_all=True)
    # a -> b: distinct, increasing neighbours (tau 1); b -> a: increasing with ties (tau-b just below 1).
    assert taus[0] == pytest.approx(1.0) and 0.95 < taus[1] < 1.0
    tau, taus = alignment.kendalls_tau_alignment([a, b[::-1]], return_all=True)
    assert taus[0] == pytest.approx(-1.0) and -1.0 < taus[1] < -0.95 and tau == pytest.approx(taus.mean())


def test_alignment_tau_is_the_mean_of_scipy_taus_and_drops_nans():
    rng = np.random.default_rng(0)
    videos = [rng.normal(size=(n, 3)) for n in (9, 12, 7)]
    videos.append(np.zeros((6, 3)))  # a constant video: every frame's neighbour in it is frame 0
    want = []
    for i, q in enumerate(videos):
        for j, c in enumerate(videos):
            if i != j:
                q2, c2 = q[::2], c[::2]
                nn = np.argmin(((q2[:, None] - c2[None]) ** 2).sum(-1), axis=1)
                want.append(stats.kendalltau(np.arange(len(nn)), nn).correlation)
    want = np.asarray(want)
    tau, taus = alignment.kendalls_tau_alignment(videos, stride=2, return_all=True)
    assert np.isnan(taus).sum() == np.isnan(want).sum() > 0
    assert tau == pytest.approx(np.nanmean(want))


def test_progression_targets_by_hand():
    labels = [0, 0, 1, 1, 1, 2]
    got = alignment.progression_targets(labels, 3)
    # Phase 0 ends at frame 1, phase 1 at frame 4: targets (frame - transition) / 6.
    np.testing.assert_allclose(got[:, 0], (np.arange(6) - 1) / 6)
    np.testing.assert_allclose(got[:, 1], (np.arange(6) - 4) / 6)
    # Phase 1 absent: its transition is the first frame of the next phase present (2).
    np.testing.assert_allclose(alignment.progression_targets([0, 0, 2, 2], 3)[:, 1], (np.arange(4) - 2) / 4)
    # No later phase at all: the last frame.
    np.testing.assert_allclose(alignment.progression_targets([0, 0, 0], 3)[:, 0], (np.arange(3) - 2) / 3)


def test_phase_progression_known_cases():
    rng = np.random.default_rng(1)
    labels = [np.sort(rng.integers(0, 4, size=n)) for n in (20, 25, 30, 22, 27, 24)]
    targets = [alignment.progression_targets(lab, 4) for lab in labels]
    # Embeddings that hold the targets linearly (plus a constant): R^2 = 1 (4 training videos make
    # the fit unique: with fewer, the per-video offsets leave the regression under-determined).
    mix = rng.normal(size=(3, 5))
    embs = [t @ mix + 1.0 for t in targets]
    assert alignment.phase_progression(embs[:4], labels[:4], embs[4:], labels[4:], 4) == pytest.approx(1.0)
    # Pure noise embeddings explain nothing on held-out videos.
    noise = [rng.normal(size=(len(lab), 5)) for lab in labels]
    assert alignment.phase_progression(noise[:4], labels[:4], noise[4:], labels[4:], 4) < 0.2


def test_phase_classification_on_separable_and_bad_inputs():
    rng = np.random.default_rng(2)
    labels = [np.repeat(np.arange(3), 10) for _ in range(3)]
    embs = [np.eye(3)[lab] * 5 + rng.normal(scale=0.1, size=(30, 3)) for lab in labels]
    assert alignment.phase_classification(embs[:2], labels[:2], embs[2:], labels[2:]) == 1.0
    with pytest.raises(ValueError, match="one label per"):
        alignment.phase_classification(embs[:2], [labels[0], labels[1][:-1]], embs[2:], labels[2:])
    with pytest.raises(ValueError, match=">= 2 videos"):
        alignment.kendalls_tau_alignment([embs[0]])
    with pytest.raises(ValueError, match="stride"):
        alignment.kendalls_tau_alignment(embs, stride=0)
