"""CelebA face images through tensorflow-datasets (the real data for `began`).

The BEGAN paper trained on 360k celebrity faces that were never released
(not CelebA, see carpedm20/BEGAN-tensorflow#1); CelebA (tfds `celeb_a`,
162,770 train / 19,867 validation / 19,962 test images of 218x178) is the
usual public stand-in. Each image is center-cropped to `crop x crop`
(carpedm20 crops 128x128 at (50, 25); the center crop is at (45, 25)),
resized with area averaging to `image_size` (64 or 128 in the paper's
experiments) and scaled to [-1, 1].

tfds' `celeb_a` downloads from Google Drive, which often refuses automated
downloads; prepare it once with `download=True` or place a prepared copy in
`data_dir`.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.errors import KerasnetsError

HEIGHT, WIDTH = 218, 178
DEFAULT_CROP = 128


def preprocess(image, image_size: int, crop: int = DEFAULT_CROP):
    """uint8 `[218, 178, 3]` -> float32 `[image_size, image_size, 3]` in [-1, 1]."""
    if not 8 <= crop <= min(HEIGHT, WIDTH):
        raise ValueError(f"crop must be in [8, {min(HEIGHT, WIDTH)}], got {crop}")
    shape = tf.shape(image)
    top = (shape[0] - crop) // 2
    left = (shape[1] - crop) // 2
    image = image[top : top + crop, left : left + crop, :]
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="area")
    image = tf.ensure_shape(image, (image_size, image_size, 3))
    return image / 127.5 - 1.0


def _load(split: str, data_dir, download: bool):
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load("celeb_a", split=split, data_dir=data_dir, download=download, shuffle_files=False)
    except (AssertionError, FileNotFoundError) as exc:  # tfds raises AssertionError for "not prepared"
        raise KerasnetsError(
            f"tensorflow-datasets 'celeb_a' ({split}) is not prepared in data_dir={data_dir!r}: {exc}. "
            "Pass download=True (needs network; Google Drive may refuse) or point data_dir at a prepared copy."
        ) from None
    return ds.map(lambda ex: ex["image"], num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def celeb_a_train(
    image_size: int,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    *,
    data_dir=None,
    download: bool = False,
    crop: int = DEFAULT_CROP,
    shuffle_buffer: int = 10_000,
) -> tf.data.Dataset:
    """Endless batches `[batch_size, S, S, 3]` of the train split, positioned `start_step` batches in.

    The split is shuffled through a seeded buffer, reshuffled each epoch, so the
    stream is a fixed function of `seed`; a resumed run skips
    `start_step * batch_size` images (replaying the stream to its position).
    """
    images = _load("train", data_dir, download)
    # A seeded shuffle reshuffled each epoch is a fixed stream given `seed` (op-level
    # seed; a per-epoch tensor seed trips TF's seed handling inside flat_map). A
    # resumed run replays the stream up to its position.
    ds = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat().skip(start_step * batch_size)
    ds = ds.map(lambda im: preprocess(im, image_size, crop), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def celeb_a_eval(
    image_size: int,
    batch_size: int,
    *,
    split: str = "validation",
    max_images: int | None = None,
    data_dir=None,
    download: bool = False,
    crop: int = DEFAULT_CROP,
) -> tf.data.Dataset:
    """One ordered pass over `split` (optionally its first `max_images`), batched."""
    ds = _load(split, data_dir, download)
    if max_images is not None:
        ds = ds.take(max_images)
    ds = ds.map(lambda im: preprocess(im, image_size, crop), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
