"""Small image-classification sets as in-memory arrays: embedded digits, tfds MNIST / CIFAR-10 / SVHN.

One tensorflow-datasets reader (`load_tfds_split`) and the scikit-learn digits
(`kerasnets.data.digits`) behind two views:

**Arrays in [0, 1]** (`load_image_classification`): the adversarial recipes
(`lbfgs_attack`, `bit_flip_attack`, `gat`), `batchnorm` and `improved_gan`
work on float32 NHWC images in [0, 1] with int32 labels (SciPy's L-BFGS-B
attacks NumPy vectors example by example):

* `"embedded"`: scikit-learn's digits (8x8x1, 1797 images, no download),
  split by `kerasnets.data.digits.load_digits`;
* `"mnist"` (28x28x1), `"cifar10"`, `"svhn_cropped"` (32x32x3):
  `tensorflow_datasets.load` with `data_dir=` and `download=` (offline unless
  `download=True`), their own test splits.

**CIFAR-10 the way He et al. (2015) train on it** (`load` ->
`ClassificationData`, `train_dataset`, `eval_dataset`; `resnet`,
`edge_popup`, `supermask`):

* Splits: the 50k CIFAR-10 training images are split 45k/5k into train and
  validation by a fixed permutation (the paper's protocol for choosing the
  schedule; `val_fraction=0` trains on all 50k as the final runs do); the 10k
  test images are the held-out test set.
* Preprocessing: per-pixel mean subtraction, the mean image computed on the
  train split. We return it with the data; the recipe's model subtracts it
  (so an exported model takes raw pixels).
* Augmentation (train only): pad 4 pixels of zeros on each side, take a random
  32x32 crop, flip horizontally with probability 1/2. Random numbers come
  from stateless ops keyed by `(seed, step)` and the example's place in the
  batch, so a resumed run sees exactly the same augmented batches.

  Pixels are float32 in [0, 255] (raw 8-bit values). The embedded default is
  scikit-learn's digits (1797 grey 8x8 images, no download), upscaled to
  `image_size`, grey repeated to 3 channels, 20% held out as the test set
  (stratified, fixed), with pad `image_size // 8` and no flips (a mirrored digit
  is another symbol).

Training batches come from `kerasnets.data.streams.array_dataset` (endless,
deterministic by seed, resumable at any step).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kerasnets.data import digits as digits_lib
from kerasnets.data import streams

#: Sources of `load_image_classification`.
SOURCES = ("embedded", "mnist", "cifar10", "svhn_cropped")
#: Sources of `load` (the He et al. CIFAR protocol).
SPLIT_SOURCES = ("embedded", "cifar10")
_TFDS_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3), "svhn_cropped": (32, 32, 3)}
CIFAR_SIZE = 32
NUM_CLASSES = 10
#: Held-out test share of the embedded digits in `load` (fixed split, stratified).
DIGITS_TEST_FRACTION = 0.2
#: Seed of the fixed train/validation and digits train/test splits of `load` (independent of the run's seed).
SPLIT_SEED = 0


def load_tfds_split(name: str, split: str, data_dir: str | None, download: bool):
    """`(images [N, H, W, C] as stored (uint8), labels int32)` of a tensorflow-datasets split.

    Read in chunks of 4096 rather than with `batch_size=-1` (which aborts the
    process under `tfds.testing.mock_data` for datasets without stored metadata).
    """
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=download, as_supervised=True)
    except Exception as exc:  # tfds raises AssertionError / DatasetNotFoundError when files are missing
        if download:
            raise
        raise FileNotFoundError(
            f"tensorflow-datasets '{name}' ({split}) is not prepared in data_dir={data_dir!r}; "
            f"prepare it once with download=True (or `tfds build {name}`), or use data=embedded"
        ) from exc
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(4096)):
        images.append(x)
        labels.append(y)
    if not images:
        raise ValueError(f"tensorflow-datasets '{name}' split '{split}' is empty")
    return np.concatenate(images), np.concatenate(labels).astype("int32")


# ------------------------------------------------------------------ arrays in [0, 1]

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
        x_tr, y_tr = load_tfds_split(source, "train", data_dir, download)
        x_te, y_te = load_tfds_split(source, "test", data_dir, download)
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


# ----------------------------------------------- the He et al. CIFAR protocol


@dataclasses.dataclass
class ClassificationData:
    """In-memory splits, float32 NHWC pixels in [0, 255], int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    pixel_mean: np.ndarray  # [H, W, C], mean of x_train
    num_classes: int
    pad: int  # augmentation padding in pixels
    flip: bool  # augmentation uses horizontal flips

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])


def split_validation(x, y, val_fraction: float, seed: int = SPLIT_SEED):
    """`(x_train, y_train), (x_val, y_val)`: the last `round(val_fraction * N)` of a fixed permutation."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * len(x)))
    order = np.random.default_rng(seed).permutation(len(x))
    train_idx, val_idx = np.sort(order[: len(x) - n_val]), np.sort(order[len(x) - n_val :])
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def load(
    source: str = "embedded",
    *,
    image_size: int | None = None,
    val_fraction: float = 0.1,
    data_dir: str | None = None,
    download: bool = False,
) -> ClassificationData:
    """Load `source` ("embedded" digits or tfds "cifar10") into `ClassificationData`.

    Args:
        source: `"embedded"` (no download) or `"cifar10"` (tensorflow-datasets).
        image_size: side of the square images; digits are upscaled to it
            (default 16), CIFAR-10 must be 32 (the default).
        val_fraction: share of the training images held out for validation
            (0.1 = the paper's 45k/5k split).
        data_dir, download: tensorflow-datasets options (cifar10 only).
    """
    if source == "embedded":
        size = 16 if image_size is None else int(image_size)
        (x, y), (x_test, y_test) = digits_lib.load_digits(
            test_fraction=DIGITS_TEST_FRACTION,
            seed=SPLIT_SEED,
            image_size=size,
            channels=3,
            value_range=(0.0, 255.0),
        )
        pad, flip = max(1, size // 8), False
    elif source == "cifar10":
        if image_size not in (None, CIFAR_SIZE):
            raise ValueError(f"cifar10 images are {CIFAR_SIZE}x{CIFAR_SIZE}; got image_size={image_size}")
        x, y = load_tfds_split("cifar10", "train", data_dir, download)
        x_test, y_test = load_tfds_split("cifar10", "test", data_dir, download)
        x, x_test = x.astype("float32"), x_test.astype("float32")  # raw 8-bit values, [0, 255]
        pad, flip = 4, True
    else:
        raise ValueError(f"unknown data source '{source}'; expected one of {', '.join(SPLIT_SOURCES)}")
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, val_fraction)
    return ClassificationData(
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        pixel_mean=x_train.mean(axis=0).astype("float32"),
        num_classes=NUM_CLASSES,
        pad=pad,
        flip=flip,
    )


def pad_crop_flip(images, seed, pad: int = 4, flip: bool = True):
    """The paper's augmentation on a batch `[B, H, W, C]`, with stateless randomness.

    Zero-pad `pad` pixels on each side, crop back to `H x W` at a random offset
    (uniform over the `(2 pad + 1)^2` positions), and mirror left-right with
    probability 1/2 if `flip`. `seed` is a `[2]` int tensor; example `i` of
    the batch gets its own offsets and flip from it.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    b, h, w = shape[0], images.shape[1], images.shape[2]
    seed = tf.cast(seed, tf.int32)
    if pad > 0:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        offsets = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        rows = offsets[:, :1] + tf.range(h)[None, :]  # [B, H]
        cols = offsets[:, 1:] + tf.range(w)[None, :]  # [B, W]
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, cols, axis=2, batch_dims=1)
    if flip:
        coin = tf.random.stateless_uniform([b], seed=tf.random.experimental.stateless_fold_in(seed, 1))
        images = tf.where((coin < 0.5)[:, None, None, None], tf.reverse(images, axis=[2]), images)
    return images


def train_dataset(
    data: ClassificationData, batch_size: int, seed: int, start_step: int = 0, augment: bool = True
) -> tf.data.Dataset:
    """Endless, globally batched `(images, labels)`; batch `s` depends only on `(seed, s)`."""

    def augment_batch(batch, step):
        images, labels = batch
        if augment:
            key = tf.random.experimental.stateless_fold_in(tf.constant([seed % 2**31, 0x5EED], tf.int64), step)
            images = pad_crop_flip(images, key, pad=data.pad, flip=data.flip)
        return images, labels

    return streams.array_dataset((data.x_train, data.y_train), batch_size, seed, start_step, map_fn=augment_batch)


def eval_dataset(data: ClassificationData, split: str, batch_size: int) -> tf.data.Dataset:
    """One ordered pass over `split` ("train", "validation" or "test"), no augmentation."""
    arrays = {
        "train": (data.x_train, data.y_train),
        "validation": (data.x_val, data.y_val),
        "test": (data.x_test, data.y_test),
    }
    if split not in arrays:
        raise ValueError(f"unknown split '{split}'; expected train, validation or test")
    x, y = arrays[split]
    if len(x) == 0:
        raise ValueError(f"split '{split}' is empty (val_fraction=0?)")
    return streams.eval_dataset((x, y), batch_size)
