"""Image grids for sample sheets (PNG and TensorBoard)."""

from __future__ import annotations

import os

import numpy as np


def image_grid(images, columns: int | None = None, pad: int = 1, value_range=(0.0, 1.0)) -> np.ndarray:
    """Tile `[N, H, W, C]` images (in `value_range`) into one uint8 `[rows*H, cols*W, C]` image."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"expected [N, H, W, C] images, got shape {images.shape}")
    lo, hi = value_range
    images = np.clip((images - lo) / (hi - lo), 0.0, 1.0)
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return (grid * 255.0 + 0.5).astype(np.uint8)


def save_grid(images, path: str, columns: int | None = None, value_range=(0.0, 1.0), scale: int = 1) -> str:
    """Write an image grid as PNG (parent directories created); `scale` enlarges small images."""
    return save_image(image_grid(images, columns=columns, value_range=value_range), path, scale=scale)


def save_image(image, path: str, scale: int = 1) -> str:
    """Write one uint8 `[H, W, C]` image (e.g. an `image_grid`) as PNG, enlarged `scale` times."""
    from PIL import Image

    grid = np.asarray(image, np.uint8)
    if grid.ndim == 3 and grid.shape[-1] == 1:
        grid = grid[..., 0]
    picture = Image.fromarray(grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)
    return path
