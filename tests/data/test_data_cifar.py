"""The He et al. CIFAR protocol (kerasnets.data.image_classification.load): splits, pixel mean,
the paper's augmentation, determinism; tfds cifar10 offline."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kerasnets.data import image_classification as image_data


@pytest.fixture(scope="module")
def mock_cifar():
    with tfds.testing.mock_data(num_examples=40):
        return image_data.load("cifar10", val_fraction=0.1, data_dir="/nonexistent-cifar-dir", download=False)


def test_cifar10_loader_offline_with_mock_data(mock_cifar):
    d = mock_cifar
    assert d.image_shape == (32, 32, 3) and d.num_classes == 10
    assert len(d.x_train) == 36 and len(d.x_val) == 4 and len(d.x_test) == 40  # 10% validation, as 45k/5k
    for x in (d.x_train, d.x_val, d.x_test):
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 255.0
        np.testing.assert_array_equal(x, np.round(x))  # raw 8-bit pixel values
    assert d.y_train.dtype == np.int32 and set(np.unique(d.y_train)) <= set(range(10))
    np.testing.assert_allclose(d.pixel_mean, d.x_train.mean(0), rtol=1e-6)
    assert d.pixel_mean.shape == (32, 32, 3)
    assert (d.pad, d.flip) == (4, True)


def test_cifar10_train_batches_are_augmented_deterministic_and_resumable(mock_cifar):
    d = mock_cifar
    ds = image_data.train_dataset(d, batch_size=8, seed=1)
    first = list(ds.take(6).as_numpy_iterator())  # 48 > 36: crosses an epoch boundary
    again = list(image_data.train_dataset(d, batch_size=8, seed=1).take(6).as_numpy_iterator())
    resumed = list(image_data.train_dataset(d, batch_size=8, seed=1, start_step=4).take(2).as_numpy_iterator())
    other = next(image_data.train_dataset(d, batch_size=8, seed=2).as_numpy_iterator())
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    for (xa, ya), (xb, yb) in zip(first[4:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][0], other[0])
    x, y = first[0]
    assert x.shape == (8, 32, 32, 3) and y.shape == (8,) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 255.0
    # Every augmented image is a crop of a zero-padded training image (or its mirror).
    padded = np.pad(d.x_train, [(0, 0), (4, 4), (4, 4), (0, 0)])
    for img, label in zip(x, y):
        assert _find_crop(img, padded[d.y_train == label], 4), "not a pad+crop(+flip) of a train image"


def _find_crop(img, candidates, pad):
    h, w = img.shape[:2]
    for src in candidates:
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = src[dy : dy + h, dx : dx + w]
                if np.array_equal(crop, img) or np.array_equal(crop[:, ::-1], img):
                    return True
    return False


def test_pad_crop_flip_uses_every_offset_and_flips_about_half():
    # 4x4 images whose every row is [1, 2, 3, 4]; pad 1 -> padded row [0, 1, 2, 3, 4, 0].
    images = np.tile(np.arange(1, 5, dtype="float32").reshape(1, 1, 4, 1), (3000, 4, 1, 1))
    out = image_data.pad_crop_flip(images, tf.constant([3, 4]), pad=1, flip=True).numpy()
    assert out.shape == images.shape
    padded_row = np.array([0, 1, 2, 3, 4, 0], "float32")
    patterns = {}
    for dx in range(3):
        crop = padded_row[dx : dx + 4]
        patterns[tuple(crop)] = (dx, False)
        patterns[tuple(crop[::-1])] = (dx, True)
    # Row 1 of the output comes from padded rows 1..3 (always data) whatever the vertical offset.
    kinds = [patterns[tuple(row)] for row in out[:, 1, :, 0]]
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert len(counts) == 6  # every horizontal offset, mirrored and not
    assert all(400 < c < 600 for c in counts.values()), counts  # uniform: 3000 / 6 each
    # Vertical offsets: the zero row appears at the top (dy=0), nowhere (dy=1) or the bottom (dy=2).
    top, bottom = np.all(out[:, 0] == 0, axis=(1, 2)), np.all(out[:, 3] == 0, axis=(1, 2))
    assert 800 < top.sum() < 1200 and 800 < bottom.sum() < 1200 and not np.any(top & bottom)
    same = image_data.pad_crop_flip(images[:8], tf.constant([3, 4]), pad=1).numpy()
    assert same.shape == (8, 4, 4, 1)
    np.testing.assert_array_equal(image_data.pad_crop_flip(images[:8], tf.constant([3, 4]), pad=1).numpy(), same)
    np.testing.assert_array_equal(image_data.pad_crop_flip(images, tf.constant([0, 0]), pad=0, flip=False), images)


def test_embedded_digits_default():
    d = image_data.load("embedded")
    assert d.image_shape == (16, 16, 3)
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    assert len(d.x_test) == 360 and len(d.x_val) == 144  # 20% test, 10% of the rest validation
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 255.0
    np.testing.assert_array_equal(d.x_train[..., 0], d.x_train[..., 2])  # grey in 3 channels
    assert (d.pad, d.flip) == (2, False)  # no mirrored digits
    assert sorted(np.unique(d.y_test)) == list(range(10))
    small = image_data.load("embedded", image_size=8, val_fraction=0.0)
    assert small.image_shape == (8, 8, 3) and len(small.x_val) == 0 and len(small.x_train) == 1437
    np.testing.assert_array_equal(small.y_test, d.y_test)  # the test split does not move


def test_errors():
    with pytest.raises(ValueError, match="unknown data source"):
        image_data.load("imagenet")
    with pytest.raises(ValueError, match="32x32"):
        image_data.load("cifar10", image_size=16)
    with pytest.raises(ValueError, match="val_fraction"):
        image_data.load("embedded", val_fraction=1.0)
    with pytest.raises(FileNotFoundError, match="download=True"):
        image_data.load("cifar10", data_dir="/nonexistent-cifar-dir", download=False)
    d = image_data.load("embedded", image_size=8, val_fraction=0.0)
    with pytest.raises(ValueError, match="empty"):
        image_data.eval_dataset(d, "validation", 8)
