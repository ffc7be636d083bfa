"""VideoPose3D model: TemporalConvBlock contract, residual slicing, receptive fields, parameter counts,
strided-vs-dilated equality on shared weights, causality."""

import numpy as np
import pytest

from kerasnets.layers import TemporalConvBlock
from kerasnets.models import videopose3d as vp
from kerasnets.testing import run_layer_test


def _independent_param_count(widths, channels=1024, joints_in=17, features=2, joints_out=17):
    """Counted from the architecture description: convs without bias (+ BN gamma/beta), shrink with bias."""
    n = joints_in * features * channels * widths[0] + 2 * channels  # expand conv + BN
    for w in widths[1:]:
        n += channels * channels * w + 2 * channels  # dilated conv + BN
        n += channels * channels + 2 * channels  # 1x1 conv + BN
    return n + channels * joints_out * 3 + joints_out * 3  # shrink


def _trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


@pytest.mark.parametrize(
    "widths, rf, params",
    [((3, 3, 3), 27, 8_555_571), ((3, 3, 3, 3), 81, 12_753_971), ((3, 3, 3, 3, 3), 243, 16_952_371)],
)
def test_receptive_field_and_paper_parameter_counts(widths, rf, params):
    # Paper: 27 frames 8.56M, 81 frames 12.75M, 243 frames 16.95M parameters.
    assert vp.receptive_field(widths) == rf
    assert _independent_param_count(widths) == params
    model = vp.build_videopose3d(filter_widths=widths, seed=0)
    assert _trainable(model) == params
    assert vp.model_receptive_field(model) == rf
    assert [b.dilation_rate for b in vp.temporal_blocks(model)] == [3**i for i in range(len(widths))]


def test_receptive_field_other_widths_and_errors():
    assert vp.receptive_field((3, 3, 7)) == 63
    assert vp.receptive_field((1,)) == 1
    with pytest.raises(ValueError, match="odd"):
        vp.receptive_field((3, 4))
    with pytest.raises(ValueError, match="at least one"):
        vp.receptive_field(())
    with pytest.raises(ValueError, match="channels"):
        vp.build_videopose3d(channels=0)


@pytest.mark.parametrize("causal", [False, True])
def test_temporal_conv_block_layer_contract(causal):
    x = np.random.default_rng(0).normal(size=(2, 11, 8)).astype("float32")
    out = run_layer_test(
        TemporalConvBlock,
        {"filters": 8, "kernel_size": 3, "dilation_rate": 2, "causal": causal, "seed": 1},
        x,
        expected_output_shape=(2, 7, 8),
        expected_num_trainable_weights=6,  # kernel, 1x1 kernel, 2 x (gamma, beta)
        expected_num_non_trainable_weights=5,  # 2 x (moving mean, variance) + BN momentum
    )
    assert np.all(np.isfinite(out))
    run_layer_test(TemporalConvBlock, {"filters": 4, "kernel_size": 5, "residual": False}, x,
                   expected_output_shape=(2, 7, 4), expected_num_trainable_weights=3)


def test_block_errors():
    with pytest.raises(ValueError, match="odd"):
        TemporalConvBlock(8, kernel_size=2)
    with pytest.raises(ValueError, match="input channels == filters"):
        TemporalConvBlock(8)(np.zeros((1, 5, 4), "float32"))


@pytest.mark.parametrize("causal, start", [(False, 2), (True, 4)])
def test_residual_is_sliced_not_padded(causal, start):
    """With zero kernels the block's conv path is 0 (BN at init: mean 0, var 1, beta 0): output = sliced input."""
    block = TemporalConvBlock(3, kernel_size=3, dilation_rate=2, causal=causal)
    x = np.arange(30, dtype="float32").reshape(1, 10, 3)
    block(x)
    block.kernel.assign(np.zeros(block.kernel.shape))
    out = np.asarray(block(x, training=False))
    # pad = (3 - 1) * 2 / 2 = 2: centre frames 2..7; causal: last frames 4..9.
    np.testing.assert_allclose(out, x[:, start : start + 6])
    # Strided form: residual x[:, k//2::k] (x[:, k-1::k] when causal).
    out = np.asarray(block(x[:, :9], training=False, strided=True))
    np.testing.assert_allclose(out, x[:, (2 if causal else 1) : 9 : 3])


def _randomise_bn(model, rng):
    """Non-trivial inference BN statistics so the equality tests exercise them."""
    for block in vp.temporal_blocks(model):
        for w in block.non_trainable_weights:
            if "moving_mean" in w.name:
                w.assign(rng.normal(scale=0.1, size=w.shape))
            elif "moving_variance" in w.name:
                w.assign(rng.uniform(0.5, 2.0, size=w.shape))


@pytest.mark.parametrize("causal", [False, True])
def test_strided_model_equals_dilated_model_on_shared_weights(causal):
    rng = np.random.default_rng(3)
    model = vp.build_videopose3d(filter_widths=(3, 3, 3), channels=16, causal=causal, seed=2)
    _randomise_bn(model, rng)
    strided = vp.build_strided_videopose3d(model)
    # The strided model owns no weights of its own.
    assert {id(v) for v in strided.weights} <= {id(v) for v in model.weights}
    assert strided.input_shape == (None, 27, 17, 2) and strided.output_shape == (None, 1, 17, 3)
    x = rng.normal(size=(2, 40, 17, 2)).astype("float32")
    dense = np.asarray(model(x, training=False))
    assert dense.shape == (2, 40 - 27 + 1, 17, 3)
    windows = np.stack([x[:, i : i + 27] for i in range(dense.shape[1])], 1).reshape(-1, 27, 17, 2)
    single = np.asarray(strided(windows, training=False)).reshape(2, dense.shape[1], 17, 3)
    np.testing.assert_allclose(single, dense, rtol=1e-4, atol=1e-5)
    # A weight change shows up in both (shared, not copied).
    shrink = model.get_layer("shrink")
    shrink.bias.assign(shrink.bias.numpy() + 1.0)
    np.testing.assert_allclose(np.asarray(strided(windows[:1], training=False)), single.reshape(-1, 1, 17, 3)[:1] + 1.0,
                               rtol=1e-4, atol=1e-5)


def _future_sensitivity(causal):
    rng = np.random.default_rng(4)
    model = vp.build_videopose3d(filter_widths=(3, 3), channels=8, causal=causal, seed=5)
    _randomise_bn(model, rng)
    before, after = vp.padding_for_sequence(model)
    x = rng.normal(size=(1, 30, 17, 2)).astype("float32")

    def lift(seq):  # one output per input frame, aligned, as the recipe does
        padded = np.concatenate([np.repeat(seq[:, :1], before, 1), seq, np.repeat(seq[:, -1:], after, 1)], 1)
        return np.asarray(model(padded, training=False))

    base = lift(x)
    t = 15
    changed = x.copy()
    changed[:, t + 1 :] += 5.0  # perturb only the future of frame t
    return base, lift(changed), t


def test_causal_model_uses_no_future_frames():
    base, perturbed, t = _future_sensitivity(causal=True)
    np.testing.assert_allclose(perturbed[:, : t + 1], base[:, : t + 1], atol=1e-6)
    assert np.abs(perturbed[:, t + 1 :] - base[:, t + 1 :]).max() > 1e-3
    # The non-causal model at frame t does look ahead (so this test can fail).
    base, perturbed, t = _future_sensitivity(causal=False)
    assert np.abs(perturbed[:, t] - base[:, t]).max() > 1e-3


def test_alignment_and_padding():
    model = vp.build_videopose3d(filter_widths=(3, 3, 3), channels=8)
    assert vp.output_alignment(model) == 13 and vp.padding_for_sequence(model) == (13, 13)
    causal = vp.build_videopose3d(filter_widths=(3, 3, 3), channels=8, causal=True)
    assert vp.output_alignment(causal) == 26 and vp.padding_for_sequence(causal) == (26, 0)


def test_model_keras_file_round_trip(tmp_path):
    import keras

    model = vp.build_videopose3d(filter_widths=(3, 3), channels=8, causal=True, seed=1)
    _randomise_bn(model, np.random.default_rng(6))
    path = str(tmp_path / "vp.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    x = np.random.default_rng(7).normal(size=(1, 12, 17, 2)).astype("float32")
    np.testing.assert_allclose(np.asarray(restored(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6)
    assert vp.is_causal(restored) and vp.model_receptive_field(restored) == 9
    # The strided twin can be rebuilt on the restored layers.
    assert vp.build_strided_videopose3d(restored).input_shape == (None, 9, 17, 2)
