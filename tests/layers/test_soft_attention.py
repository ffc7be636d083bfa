"""SoftAttention: Show, Attend and Tell's soft attention with the gating scalar (Xu et al. 2015)."""

import numpy as np
import pytest

from kerasnets.layers import SoftAttention
from kerasnets.testing import run_layer_test


def _inputs(b=3, l=6, d=4, h=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(b, l, d)).astype("float32"), rng.normal(size=(b, h)).astype("float32")]


def test_layer_contract():
    run_layer_test(
        SoftAttention, {"units": 7}, _inputs(),
        expected_output_shape=(3, 4),
        expected_num_trainable_weights=7,  # W_a, W_h, b, w_att, b_att, w_beta, b_beta
        expected_num_non_trainable_weights=0,
    )


def test_layer_contract_without_gate():
    run_layer_test(SoftAttention, {"units": 3, "use_gate": False}, _inputs(),
                   expected_output_shape=(3, 4), expected_num_trainable_weights=5)


def test_weights_sum_to_one_and_context_is_the_weighted_mean():
    a, h = _inputs(b=4, l=9, d=3, h=2, seed=1)
    layer = SoftAttention(5, use_gate=False)
    zhat, alpha, beta = (np.asarray(t) for t in layer([a, h], return_attention=True))
    assert alpha.shape == (4, 9)
    np.testing.assert_allclose(alpha.sum(-1), 1.0, atol=1e-6)
    assert (alpha > 0).all()
    np.testing.assert_allclose(beta, 1.0)
    np.testing.assert_allclose(zhat, np.einsum("bl,bld->bd", alpha, a), atol=1e-6)


def test_matches_the_papers_equations_in_numpy():
    a, h = _inputs(b=2, l=5, d=3, h=4, seed=2)
    layer = SoftAttention(6)
    zhat, alpha, beta = (np.asarray(t) for t in layer([a, h], return_attention=True))
    w = {v.name: np.asarray(v) for v in layer.weights}
    e = np.tanh(a @ w["annotation_kernel"] + (h @ w["hidden_kernel"])[:, None] + w["bias"]) @ w["score_kernel"]
    e = e[..., 0] + w["score_bias"]
    want_alpha = np.exp(e - e.max(-1, keepdims=True))
    want_alpha /= want_alpha.sum(-1, keepdims=True)
    want_beta = 1 / (1 + np.exp(-(h @ w["gate_kernel"] + w["gate_bias"])))
    np.testing.assert_allclose(alpha, want_alpha, atol=1e-6)
    np.testing.assert_allclose(beta, want_beta, atol=1e-6)
    np.testing.assert_allclose(zhat, want_beta * np.einsum("bl,bld->bd", want_alpha, a), atol=1e-5)


def test_hand_case_equal_scores_give_the_plain_mean():
    # W_h = 0 and w_att = 0: every e_ti equal -> alpha = 1/L; gate bias 0, w_beta 0 -> beta = 1/2.
    a = np.arange(12, dtype="float32").reshape(1, 4, 3)
    h = np.ones((1, 2), "float32")
    layer = SoftAttention(3, kernel_initializer="zeros")
    zhat, alpha, beta = (np.asarray(t) for t in layer([a, h], return_attention=True))
    np.testing.assert_allclose(alpha, [[0.25] * 4])
    np.testing.assert_allclose(beta, [[0.5]])
    np.testing.assert_allclose(zhat, [[0.5 * 4.5, 0.5 * 5.5, 0.5 * 6.5]])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="units"):
        SoftAttention(0)
    a, h = _inputs()
    with pytest.raises(ValueError, match=r"annotations \[B, L, D\]"):
        SoftAttention(2)([a[:, 0], h])
