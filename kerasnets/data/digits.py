"""scikit-learn's digits: the embedded default classification data (no download).

1797 grey 8x8 images of the digits 0-9, shipped inside scikit-learn
(`sklearn/datasets/data/digits.csv.gz`). Values are 0..16 in the file; we
return float32 in [0, 1] (or a given range), NHWC, optionally upscaled.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10


def load_digits(
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    image_size: int = 8,
    channels: int = 1,
    value_range: tuple[float, float] = (0.0, 1.0),
):
    """`(x_train, y_train), (x_test, y_test)`: float32 NHWC images, int32 labels.

    The split is stratified and fixed by `seed`. `image_size` > 8 upsamples
    bilinearly (antialiased, via TF); `channels=3` repeats the grey channel.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    data = sk_load_digits()
    images = (data.images.astype("float32") / 16.0)[..., None]
    labels = data.target.astype("int32")
    if image_size != 8:
        import tensorflow as tf

        images = tf.image.resize(images, (image_size, image_size), method="bilinear", antialias=True).numpy()
        images = np.clip(images, 0.0, 1.0)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    lo, hi = value_range
    images = (images * (hi - lo) + lo).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)
