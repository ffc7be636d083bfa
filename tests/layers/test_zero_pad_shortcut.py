"""ZeroPadShortcut: the parameter-free option-A shortcut of He et al. 2015."""

import numpy as np
import pytest

from kerasnets.layers import ZeroPadShortcut
from kerasnets.testing import run_layer_test


def test_layer_contract():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    run_layer_test(
        ZeroPadShortcut,
        {"filters": 32, "strides": 2},
        x,
        expected_output_shape=(2, 4, 4, 32),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
        run_training=False,  # no weights to train
    )


def test_subsamples_and_zero_pads_half_the_new_channels_on_each_side():
    x = np.arange(2 * 5 * 5 * 4, dtype="float32").reshape(2, 5, 5, 4) + 1.0
    y = np.asarray(ZeroPadShortcut(8, 2)(x))
    assert y.shape == (2, 3, 3, 8)
    # x[:, ::2, ::2, :] (rows/columns 0, 2, 4), 2 zero channels before and 2 after.
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., :2], 0.0)
    np.testing.assert_array_equal(y[..., 6:], 0.0)


def test_identity_when_shape_is_kept():
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(ZeroPadShortcut(3, 1)(x)), x)


def test_odd_channel_difference_and_errors():
    y = np.asarray(ZeroPadShortcut(5, 1)(np.ones((1, 2, 2, 2), "float32")))
    np.testing.assert_array_equal(y[0, 0, 0], [0, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="pads channels only"):
        ZeroPadShortcut(2, 1)(np.ones((1, 2, 2, 4), "float32"))
    with pytest.raises(ValueError, match="filters"):
        ZeroPadShortcut(0)
    with pytest.raises(ValueError, match="strides"):
        ZeroPadShortcut(4, strides=0)
