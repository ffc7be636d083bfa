import numpy as np
import pytest

from kerasnets.data.digits import augment_digits


def _bar():
    # One 9x9 image with a vertical bar in column 4, background -1.
    image = -np.ones((1, 9, 9, 1), "float32")
    image[0, 1:8, 4, 0] = 1.0
    return image


def test_originals_first_then_copies_deterministic_in_seed_and_in_range():
    image = _bar()
    a = augment_digits(image, 3, seed=7)
    b = augment_digits(image, 3, seed=7)
    c = augment_digits(image, 3, seed=8)
    assert a.shape == (4, 9, 9, 1)
    np.testing.assert_array_equal(a[0], image[0])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[1:], c[1:])
    assert a.min() >= -1.0 and a.max() <= 1.0


def test_identity_transform_keeps_the_image():
    out = augment_digits(_bar(), 1, max_shift=0.0, max_rotation_deg=0.0, scale_range=(1.0, 1.0))
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)


def test_pure_shift_moves_the_bar_by_the_drawn_amount():
    # max_shift=1 with no rotation/scale: the bar's column centroid moves by the drawn column shift.
    image = _bar()
    out = augment_digits(image, 1, seed=0, max_shift=1.0, max_rotation_deg=0.0, scale_range=(1.0, 1.0))
    shift = np.random.default_rng(0)
    shift.uniform(-0.0, 0.0), shift.uniform(1.0, 1.0)  # angle, scale draws (degenerate ranges)
    d_row, d_col = shift.uniform(-1.0, 1.0, size=2)
    weights = out[1, 3:6, :, 0] + 1.0  # rows away from the bar's ends
    centroid = (weights * np.arange(9)).sum() / weights.sum()
    assert centroid == pytest.approx(4.0 + d_col, abs=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match="NHWC"):
        augment_digits(np.zeros((9, 9)), 1)
    with pytest.raises(ValueError, match="copies"):
        augment_digits(_bar(), -1)
