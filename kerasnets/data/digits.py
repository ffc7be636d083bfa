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


def augment_digits(
    images,
    copies: int,
    *,
    seed: int = 0,
    max_shift: float = 1.0,
    max_rotation_deg: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 2.0,
):
    """`images` followed by `copies` randomly deformed versions of each (a bigger embedded set).

    Each copy gets a random affine map about the image centre (rotation in
    `+-max_rotation_deg`, isotropic scale in `scale_range`, shift in
    `+-max_shift` pixels) and, if `elastic_alpha > 0`, an elastic distortion
    (Simard et al. 2003: a uniform random displacement field smoothed by a
    Gaussian of `elastic_sigma` pixels, times `elastic_alpha`), resampled
    bilinearly. Pixels from outside the image take the background (the
    minimum value of `images`). Deterministic in `seed`. Works on NHWC
    float images in any value range; the result is clipped to that range.
    """
    from scipy import ndimage

    images = np.asarray(images, dtype="float32")
    if images.ndim != 4:
        raise ValueError(f"augment_digits expects NHWC images, got shape {images.shape}")
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    lo, hi = float(images.min()), float(images.max())
    rng = np.random.default_rng(seed)
    count, height, width, channels = images.shape
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0])
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = [images]
    for _ in range(copies):
        batch = np.empty_like(images)
        for i in range(count):
            angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
            scale = rng.uniform(*scale_range)
            shift = rng.uniform(-max_shift, max_shift, size=2)
            # Output pixel p samples the input at A (p - c - shift) + c: A = R(angle) / scale.
            a = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
            src = np.einsum("ij,jhw->ihw", a, np.stack([rows, cols]) - (centre + shift)[:, None, None])
            src += centre[:, None, None]
            if elastic_alpha > 0:
                for axis in range(2):
                    field = ndimage.gaussian_filter(rng.uniform(-1, 1, (height, width)), elastic_sigma)
                    src[axis] += elastic_alpha * field
            for ch in range(channels):
                batch[i, :, :, ch] = ndimage.map_coordinates(images[i, :, :, ch], src, order=1, cval=lo)
        out.append(np.clip(batch, lo, hi))
    return np.concatenate(out, axis=0)
