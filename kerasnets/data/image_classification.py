"""Small image-classification sets as in-memory arrays: embedded digits, tfds MNIST / CIFAR-10.

The adversarial recipes (`lbfgs_attack`, `bit_flip_attack`, `gat`) attack a
trained classifier example by example (SciPy's L-BFGS-B runs on NumPy
vectors), so their data lives in memory as float32 NHWC images in [0, 1] with
int32 labels:

* `"embedded"`: scikit-learn's digits (8x8x1, 1797 images, no download),
  split by `kerasnets.data.digits.load_digits`;
* `"mnist"` (28x28x1) and `"cifar10"` (32x32x3): `tensorflow_datasets.load`
  with `data_dir=` and `download=` (offline unless `download=True`).

Training batches come from `kerasnets.data.streams.array_dataset` (endless,
deterministic by seed, resumable at any step).
"""

from __future__ import annotations

import numpy as np

from kerasnets.data import digits as digits_lib

SOURCES = ("embedded", "mnist", "cifar10", "svhn_cropped")
_TFDS_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "svhn_cropped": (32, 32, 3)}


def image_shape(source: str) -> tuple[int, int, int]:
    """HWC shape of the images of `source`."""
    if source == "embedded":
        return (8, 8, 1)
    if source in _TFDS_SHAPES:
        return _TFDS_SHAPES[source]
    raise ValueError(f"unknown image data source '{source}'; expected one of {', '.join(SOURCES)}")


def _subsample(x, y, limit, seed):
    if limit is None or limit >= len(x):
        return x, y
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(x), size=limit, replace=False))
    return x[idx], y[idx]


def _load_tfds_split(name, split, data_dir, download):
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=download, as_supervised=True)
    except Exception as exc:  # tfds raises AssertionError / DatasetNotFoundError when files are missing
        if download:
            raise
        raise FileNotFoundError(
            f"tensorflow-datasets '{name}' ({split}) is not prepared in data_dir={data_dir!r}; "
            "prepare it once with download=True (or `tfds build`), or use data=embedded"
        ) from exc
    # Batches of 4096, concatenated (batch_size=-1 aborts under tfds' mock_data for mnist).
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(4096)):
        images.append(x)
        labels.append(y)
    if not images:
        raise ValueError(f"tensorflow-datasets '{name}' ({split}) is empty")
    return np.concatenate(images), np.concatenate(labels)


def load_image_classification(
    source: str = "embedded",
    *,
    data_dir: str | None = None,
    download: bool = False,
    seed: int = 0,
    test_fraction: float = 0.25,
    max_train: int | None = None,
    max_test: int | None = None,
):
    """`(x_train, y_train), (x_test, y_test)`: float32 NHWC images in [0, 1], int32 labels.

    Args:
        source: `"embedded"` (digits), `"mnist"`, `"cifar10"` or `"svhn_cropped"`.
        data_dir: tensorflow-datasets data directory (tfds sources only).
        download: let tensorflow-datasets download and prepare missing data.
        seed: fixes the digits split and the subsampling.
        test_fraction: held-out share of the digits (tfds sources use their test split).
        max_train, max_test: keep at most this many examples (a fixed random subset).
    """
    if source == "embedded":
        (x_tr, y_tr), (x_te, y_te) = digits_lib.load_digits(test_fraction=test_fraction, seed=seed)
    elif source in _TFDS_SHAPES:
        x_tr, y_tr = _load_tfds_split(source, "train", data_dir, download)
        x_te, y_te = _load_tfds_split(source, "test", data_dir, download)
        expected = _TFDS_SHAPES[source]
        if tuple(x_tr.shape[1:]) != expected:
            raise ValueError(f"tfds '{source}' images have shape {x_tr.shape[1:]}, expected {expected}")
    else:
        raise ValueError(f"unknown image data source '{source}'; expected one of {', '.join(SOURCES)}")
    for limit, what in ((max_train, "max_train"), (max_test, "max_test")):
        if limit is not None and limit < 1:
            raise ValueError(f"{what} must be >= 1 or None, got {limit}")
    x_tr, y_tr = _subsample(x_tr, y_tr, max_train, seed)
    x_te, y_te = _subsample(x_te, y_te, max_test, seed + 1)

    def prep(x, y):
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype("float32") / 255.0
        return np.asarray(x, "float32"), np.asarray(y, "int32")

    return prep(x_tr, y_tr), prep(x_te, y_te)
