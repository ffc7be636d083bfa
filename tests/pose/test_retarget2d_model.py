"""Networks of retarget2d (kerasnets.models.retarget2d) and the ReflectionPadding1D layer."""

import os

import keras
import numpy as np
import pytest

from kerasnets.layers import ReflectionPadding1D
from kerasnets.models import retarget2d as R
from kerasnets.testing import run_layer_test


def test_reflection_padding_by_hand_and_layer_contract():
    x = np.arange(4, dtype=np.float32).reshape(1, 4, 1)
    out = run_layer_test(ReflectionPadding1D, {"padding": (2, 1)}, x, expected_output_shape=(1, 7, 1), run_training=False)
    np.testing.assert_array_equal(out[0, :, 0], [2, 1, 0, 1, 2, 3, 2])  # PyTorch ReflectionPad1d((2, 1))
    with pytest.raises(ValueError, match="needs more than"):
        ReflectionPadding1D(4)(np.zeros((1, 4, 1), np.float32))
    with pytest.raises(ValueError, match="padding"):
        ReflectionPadding1D((-1, 2))


@pytest.fixture(scope="module")
def net():
    return R.Retarget2D(seed=0)


def test_code_shapes_motion_varies_in_time_static_codes_do_not(net):
    x = np.random.default_rng(0).normal(size=(3, 64, 30)).astype(np.float32)
    assert tuple(net.encode_motion(x).shape) == (3, 8, 128)  # T / 8 steps
    assert tuple(net.encode_body(x).shape) == (3, 1, 16)
    assert tuple(net.encode_view(x).shape) == (3, 1, 8)
    assert tuple(net.encode_motion(x[:, :32]).shape) == (3, 4, 128)
    assert tuple(net.encode_body(x[:, :32]).shape) == (3, 1, 16)  # one step whatever the length
    # Source, body and view clips may differ in length; the output has the source's.
    out = net((x, x[:, :24], x[:, :40]))
    assert tuple(out.shape) == (3, 64, 30)


def test_parameter_counts_match_the_papers_layer_sizes(net):
    def conv(cin, cout, k):
        return cin * k * cout + cout

    assert net.motion_encoder.count_params() == conv(30, 64, 8) + conv(64, 96, 8) + conv(96, 128, 8)
    static = conv(28, 32, 7) + conv(32, 48, 7) + conv(48, 64, 7)
    assert net.body_encoder.count_params() == static + conv(64, 16, 1)
    assert net.view_encoder.count_params() == static + conv(64, 8, 1)
    assert net.decoder.count_params() == conv(152, 128, 7) + conv(128, 64, 7) + conv(64, 30, 7)


def test_motion_code_is_local_in_time_static_codes_are_global(net):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 64, 30)).astype(np.float32)
    y = x.copy()
    y[:, 48:] += rng.normal(size=y[:, 48:].shape).astype(np.float32)
    mx, my = net.encode_motion(x).numpy(), net.encode_motion(y).numpy()
    # Code step k sees input frames <= 8k + 28: steps 0..2 cannot see frames >= 48.
    np.testing.assert_array_equal(mx[:, :3], my[:, :3])
    assert np.abs(mx[:, -1] - my[:, -1]).max() > 1e-3
    # The view code pools over the whole clip: a change late in the clip reaches it.
    assert np.abs(net.encode_view(x).numpy() - net.encode_view(y).numpy()).max() > 1e-5


def test_static_codes_do_not_depend_on_duration_of_a_held_pose(net):
    pose = np.random.default_rng(2).normal(size=(2, 1, 30)).astype(np.float32)
    short, long = np.repeat(pose, 16, 1), np.repeat(pose, 64, 1)
    np.testing.assert_allclose(net.encode_body(short), net.encode_body(long), atol=1e-5)
    np.testing.assert_allclose(net.encode_view(short), net.encode_view(long), atol=1e-5)
    # A held pose has a constant motion code along time.
    m = net.encode_motion(long).numpy()
    np.testing.assert_allclose(m, np.broadcast_to(m[:, :1], m.shape), atol=1e-5)


def test_cross_decodes_every_combination(net):
    rng = np.random.default_rng(3)
    x1, x2 = (rng.normal(size=(2, 32, 30)).astype(np.float32) for _ in range(2))
    outputs, codes = net.cross(x1, x2)
    assert sorted(outputs) == sorted(a + b + c for a in "12" for b in "12" for c in "12")
    expected = net.decode(codes["m1"], codes["b2"], codes["v1"])
    np.testing.assert_allclose(outputs["121"], expected, atol=1e-6)
    np.testing.assert_allclose(net((x1, x2, x1)), expected, atol=1e-6)


def test_scalable_widths_and_bad_sizes():
    small = R.Retarget2D((30, 16, 16, 32), (28, 8, 8, 8, 4), (28, 8, 8, 8, 2), (38, 16, 16, 30))
    x = np.zeros((1, 16, 30), np.float32)
    assert tuple(small((x, x, x)).shape) == (1, 16, 30)
    with pytest.raises(ValueError, match="code sizes"):
        R.Retarget2D(decoder_channels=(100, 128, 64, 30))
    with pytest.raises(ValueError, match="local channels"):
        R.Retarget2D(body_channels=(30, 32, 48, 64, 16))
    with pytest.raises(ValueError, match="even"):
        R.build_motion_encoder(kernel_size=7)
    with pytest.raises(ValueError, match="multiple of 8"):
        R.check_frames(60)


def test_keras_file_round_trip(tmp_path):
    net = R.Retarget2D((30, 16, 16, 32), (28, 8, 8, 8, 4), (28, 8, 8, 8, 2), (38, 16, 16, 30), seed=4)
    x = np.random.default_rng(4).normal(size=(2, 16, 30)).astype(np.float32)
    before = net((x, x, x)).numpy()
    net.norm_std.assign(np.full(30, 2.0, np.float32))
    path = os.path.join(tmp_path, "r.keras")
    net.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored((x, x, x)).numpy(), before, atol=1e-6)
    np.testing.assert_allclose(restored.norm_std.numpy(), 2.0)
