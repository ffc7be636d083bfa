"""In-memory image classification sets: embedded digits, tfds mnist/cifar10 offline (mock data)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from kerasnets.data.image_classification import image_shape, load_image_classification


def test_embedded_digits_are_unit_range_and_deterministic():
    (x_tr, y_tr), (x_te, y_te) = load_image_classification()
    assert x_tr.shape[1:] == (8, 8, 1) == image_shape("embedded")
    assert len(x_tr) + len(x_te) == 1797
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert x_tr.min() == 0.0 and x_tr.max() == 1.0
    assert set(np.unique(y_te)) == set(range(10))
    (x2, y2), _ = load_image_classification()
    np.testing.assert_array_equal(x_tr, x2)
    np.testing.assert_array_equal(y_tr, y2)
    (x3, _), (x4, _) = load_image_classification(max_train=100, max_test=30, seed=2)
    assert len(x3) == 100 and len(x4) == 30


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_sources_offline_with_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=12):
        (x_tr, y_tr), (x_te, y_te) = load_image_classification(name, download=False, max_train=10)
    assert x_tr.shape == (10, *shape) and image_shape(name) == shape
    assert len(x_te) == 12
    assert x_tr.dtype == np.float32 and 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert y_tr.dtype == np.int32 and y_tr.max() < 10


def test_missing_tfds_data_and_bad_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared"):
        load_image_classification("mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="unknown image data source"):
        load_image_classification("svhn")
    with pytest.raises(ValueError, match="max_train"):
        load_image_classification(max_train=0)
