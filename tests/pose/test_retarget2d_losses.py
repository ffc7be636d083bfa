"""Hand-computed checks of the retarget2d losses (kerasnets.losses.retarget2d)."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import retarget2d as L


def test_triplet_margin_active_by_hand():
    a = np.array([[0.0, 0.0]], np.float32)
    p = np.array([[3.0, 4.0]], np.float32)  # d(a, p) = 5
    n = np.array([[1.0, 0.0]], np.float32)  # d(a, n) = 1
    # max(5 - 1 + 1, 0) = 5 (eps 0 for an exact hand value)
    assert float(L.triplet_margin_loss(a, p, n, margin=1.0, eps=0.0)) == pytest.approx(5.0)


def test_triplet_margin_inactive_by_hand():
    a = np.array([[0.0, 0.0]], np.float32)
    p = np.array([[1.0, 0.0]], np.float32)  # 1
    n = np.array([[0.0, 3.0]], np.float32)  # 3
    assert float(L.triplet_margin_loss(a, p, n, margin=1.0, eps=0.0)) == 0.0  # 1 - 3 + 1 < 0
    # Just inside the margin: 1 - 1.5 + 1 = 0.5
    n2 = np.array([[0.0, 1.5]], np.float32)
    assert float(L.triplet_margin_loss(a, p, n2, margin=1.0, eps=0.0)) == pytest.approx(0.5)


def test_triplet_matches_pytorch_definition_with_eps_and_batch_mean():
    rng = np.random.default_rng(0)
    a, p, n = (rng.normal(size=(4, 3, 2)).astype(np.float32) for _ in range(3))
    eps = 1e-6

    def d(x, y):
        return np.linalg.norm((x - y).reshape(4, -1) + eps, axis=-1)

    expected = np.mean(np.maximum(d(a, p) - d(a, n) + 1.0, 0.0))
    np.testing.assert_allclose(float(L.triplet_margin_loss(a, p, n)), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="margin"):
        L.triplet_margin_loss(a, p, n, margin=-1.0)


def test_foot_velocity_by_hand():
    x = np.zeros((1, 3, 30), np.float32)
    x[0, :, 20] = [0.0, 1.0, 3.0]  # right ankle x
    x[0, :, 27] = [5.0, 5.0, 4.0]  # left ankle y
    x[0, :, 28] = [0.0, 10.0, 20.0]  # root velocity x
    x[0, :, 29] = [0.0, -1.0, -2.0]  # root velocity y
    v = L.foot_velocity(x).numpy()
    assert v.shape == (1, 2, 4)
    # channels (20, 21, 26, 27) = (R x, R y, L x, L y); + root velocity at t+1
    np.testing.assert_allclose(v[0, :, 0], [1.0 + 10.0, 2.0 + 20.0])
    np.testing.assert_allclose(v[0, :, 1], [-1.0, -2.0])
    np.testing.assert_allclose(v[0, :, 2], [10.0, 20.0])
    np.testing.assert_allclose(v[0, :, 3], [0.0 - 1.0, -1.0 - 2.0])


def test_foot_velocity_loss_ignores_a_constant_offset_but_not_sliding():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 8, 30)).astype(np.float32)
    shifted = x.copy()
    shifted[..., list(L.FOOT_CHANNELS)] += 3.0  # feet displaced but not moving differently
    assert float(L.foot_velocity_loss(shifted, x)) == pytest.approx(0.0, abs=1e-10)
    sliding = x.copy()
    sliding[:, :, 20] += np.arange(8, dtype=np.float32)  # +1 per frame in the right ankle's x
    assert float(L.foot_velocity_loss(sliding, x)) == pytest.approx(1.0 / 4.0, rel=1e-5)  # 1 of 4 channels off by 1
    loss = L.FootVelocityLoss()
    assert float(loss(x, sliding)) == pytest.approx(0.25, rel=1e-5)
    assert L.FootVelocityLoss.from_config(loss.get_config()).foot_channels == L.FOOT_CHANNELS


def test_retargeting_losses_sum_the_terms_with_weights():
    rng = np.random.default_rng(2)
    targets = {k: rng.normal(size=(2, 16, 30)).astype(np.float32) for k in L.COMBINATIONS}
    outputs = {k: (targets[k] + rng.normal(size=targets[k].shape) * 0.1).astype(np.float32) for k in L.COMBINATIONS}
    codes = {}
    for _, kind, anchor, pos, neg in L.TRIPLETS:
        for clip in (anchor, pos, neg):
            codes.setdefault(kind + clip, rng.normal(size=(2, 2, 4)).astype(np.float32))
    out = L.retargeting_losses(outputs, targets, codes, triplet_weight=2.0, margin=1.0, foot_velocity_weight=0.1)
    rec = sum(np.mean((outputs[k] - targets[k]) ** 2) for k in L.COMBINATIONS)
    np.testing.assert_allclose(float(out["rec"]), rec, rtol=1e-5)
    trip = 0.0
    for name, kind, anchor, pos, neg in L.TRIPLETS:
        term = 2.0 * float(L.triplet_margin_loss(codes[kind + anchor], codes[kind + pos], codes[kind + neg]))
        np.testing.assert_allclose(float(out[name]), term, rtol=1e-5)
        trip += term
    foot = sum(0.1 * float(L.foot_velocity_loss(outputs[k], targets[k])) for k in L.COMBINATIONS)
    np.testing.assert_allclose(float(out["foot_vel"]), foot, rtol=1e-5)
    np.testing.assert_allclose(float(out["loss"]), rec + trip + foot, rtol=1e-5)
    # The triplet anchors are the reference's: motion of x_122 vs x_1 / x_2, body of x_212, view of x_221.
    assert ("m_tpl1", "m", "122", "111", "222") in L.TRIPLETS
    assert ("b_tpl1", "b", "212", "111", "222") in L.TRIPLETS
    assert ("v_tpl1", "v", "221", "111", "222") in L.TRIPLETS
    off = L.retargeting_losses(outputs, targets, codes, triplet_weight=0.0, foot_velocity_weight=0.0)
    assert "triplet" not in off and "foot_vel" not in off
    np.testing.assert_allclose(float(off["loss"]), rec, rtol=1e-5)
    with pytest.raises(ValueError, match="no target"):
        L.retargeting_losses({"999": outputs["111"]}, targets)
