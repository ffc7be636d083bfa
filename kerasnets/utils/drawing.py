"""Pictures of detections: boxes, translucent instance masks, labels and scores, optionally keypoints."""

from __future__ import annotations

import colorsys
import os

import numpy as np


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class id (golden-angle hues)."""
    hue = (int(class_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image,
    boxes,
    classes,
    scores=None,
    masks=None,
    keypoints=None,
    class_names=None,
    score_threshold: float = 0.0,
    mask_alpha: float = 0.45,
    scale: int = 1,
    path: str | None = None,
):
    """Draw detections on `image` and return the picture as uint8 `[H*scale, W*scale, 3]`.

    Args:
        image: `[H, W, 3]` uint8 (or float in [0, 1]).
        boxes: `[D, 4]` xyxy pixels; classes: `[D]` ids (0 = padding, skipped).
        scores: `[D]` (shown next to the label; detections under
            `score_threshold` are skipped).
        masks: `[D, H, W]` full-image binary masks (blended in the class colour).
        keypoints: `[D, K, 3]` `(x, y, v)`; points with v > 0 are drawn.
        class_names: names indexed by class id - 1.
        scale: integer upscaling (nearest) so small images stay readable.
        path: if given, the picture is saved there as PNG.
    """
    from PIL import Image, ImageDraw

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be [H, W, 3], got {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    scores = None if scores is None else np.asarray(scores).reshape(-1)
    keep = [i for i in range(len(classes))
            if classes[i] > 0 and (scores is None or scores[i] >= score_threshold)]
    canvas = image.astype(np.float32)
    if masks is not None:
        masks = np.asarray(masks)
        for i in keep:
            m = masks[i].astype(bool)
            canvas[m] = (1 - mask_alpha) * canvas[m] + mask_alpha * np.array(class_colour(classes[i]), np.float32)
    picture = Image.fromarray(canvas.astype(np.uint8))
    if scale != 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for i in keep:
        colour = class_colour(classes[i])
        x1, y1, x2, y2 = (float(v) * scale for v in boxes[i])
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=max(1, scale // 2 + 1))
        name = class_names[classes[i] - 1] if class_names is not None else str(int(classes[i]))
        label = name if scores is None else f"{name} {scores[i]:.2f}"
        tx, ty = x1, max(0.0, y1 - 11)
        text_box = draw.textbbox((tx, ty), label)
        draw.rectangle(text_box, fill=colour)
        draw.text((tx, ty), label, fill=(0, 0, 0))
        if keypoints is not None:
            for x, y, v in np.asarray(keypoints[i], np.float32):
                if v > 0:
                    cx, cy = x * scale, y * scale
                    draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(255, 255, 255) if v > 1 else (90, 90, 90),
                                 outline=colour)
    out = np.asarray(picture)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        picture.save(path, format="PNG")
    return out
