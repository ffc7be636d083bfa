"""The detection example format shared by the shapes generator, COCO-format files and tfds loaders.

One example is a dict of NumPy arrays (`n` = number of objects):

* `image`: `[H, W, 3]` uint8;
* `boxes`: `[n, 4]` float32 xyxy pixel boxes (`x2 = last column + 1`);
* `classes`: `[n]` int32 class ids 1..K (0 is background / padding);
* `masks` (optional): `[n, H, W]` uint8 0/1 instance masks;
* `keypoints` (optional): `[n, num_keypoints, 3]` float32 `(x, y, v)` with
  COCO visibility (0 not labelled, 1 labelled but occluded, 2 visible);
* `image_id`: int.

`pad_examples` stacks equally sized examples into fixed-size arrays (ground
truth padded to `max_objects`, with `num_objects`), which is what detection
models batch; `train_stream` turns them into the endless, resumable,
seed-determined stream the recipes train on; `examples_to_coco` writes the
COCO ground-truth dict the evaluator (`kerasnets.metrics.coco`) reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def validate_example(example: dict) -> None:
    """Raise ValueError naming the problem if `example` does not follow the format above."""
    for key in ("image", "boxes", "classes"):
        if key not in example:
            raise ValueError(f"detection example is missing '{key}'")
    image = np.asarray(example["image"])
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    n = len(example["classes"])
    boxes = np.asarray(example["boxes"])
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be [{n}, 4] for {n} classes, got {boxes.shape}")
    if n and np.any(np.asarray(example["classes"]) < 1):
        raise ValueError("class ids must be >= 1 (0 is reserved for background/padding)")
    if "masks" in example and np.asarray(example["masks"]).shape != (n,) + image.shape[:2]:
        raise ValueError(f"masks must be [{n}, H, W] = {(n,) + image.shape[:2]}, got {np.shape(example['masks'])}")
    if "keypoints" in example:
        kp = np.asarray(example["keypoints"])
        if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3:
            raise ValueError(f"keypoints must be [{n}, num_keypoints, 3], got {kp.shape}")


def pad_examples(examples: Sequence[dict], max_objects: int, truncate: bool = False) -> dict:
    """Stack examples of one image size into fixed-size arrays.

    Returns `image [N, H, W, 3]`, `boxes [N, M, 4]`, `classes [N, M]`,
    `num_objects [N]`, `image_id [N]` and, when every example has them,
    `masks [N, M, H, W]` and `keypoints [N, M, K, 3]` (`M = max_objects`;
    padding rows are zeros with class 0). An example with more than
    `max_objects` objects raises ValueError unless `truncate=True`.
    """
    if not examples:
        raise ValueError("pad_examples needs at least one example")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    for ex in examples:
        validate_example(ex)
    shape = np.shape(examples[0]["image"])
    if any(np.shape(ex["image"]) != shape for ex in examples):
        raise ValueError("pad_examples needs images of one size; resize them first")
    num = len(examples)
    height, width = shape[:2]
    out = {
        "image": np.stack([ex["image"] for ex in examples]).astype(np.uint8),
        "boxes": np.zeros((num, max_objects, 4), np.float32),
        "classes": np.zeros((num, max_objects), np.int32),
        "num_objects": np.zeros((num,), np.int32),
        "image_id": np.array([int(ex.get("image_id", i)) for i, ex in enumerate(examples)], np.int64),
    }
    with_masks = all("masks" in ex for ex in examples)
    with_kp = all("keypoints" in ex for ex in examples)
    if with_masks:
        out["masks"] = np.zeros((num, max_objects, height, width), np.uint8)
    if with_kp:
        num_kp = {np.shape(ex["keypoints"])[1] for ex in examples if len(ex["classes"])}
        if len(num_kp) > 1:
            raise ValueError(f"examples have different numbers of keypoints: {sorted(num_kp)}")
        out["keypoints"] = np.zeros((num, max_objects, num_kp.pop() if num_kp else 0, 3), np.float32)
    for i, ex in enumerate(examples):
        n = len(ex["classes"])
        if n > max_objects and not truncate:
            raise ValueError(f"example {i} has {n} objects > max_objects={max_objects} (pass truncate=True to drop)")
        n = min(n, max_objects)
        out["num_objects"][i] = n
        out["boxes"][i, :n] = np.asarray(ex["boxes"])[:n]
        out["classes"][i, :n] = np.asarray(ex["classes"])[:n]
        if with_masks:
            out["masks"][i, :n] = np.asarray(ex["masks"])[:n]
        if with_kp and n:
            out["keypoints"][i, :n] = np.asarray(ex["keypoints"])[:n]
    return out


def padded_dataset(examples: Sequence[dict], max_objects: int, truncate: bool = False):
    """Unbatched `tf.data.Dataset` of padded examples (batch it with `.batch(b)`)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(pad_examples(examples, max_objects, truncate))


def train_stream(examples: Sequence[dict], max_objects: int, batch_size: int, seed: int, start_step: int = 0,
                 map_fn=None):
    """Endless shuffled batches of padded examples, deterministic by `seed`, starting at batch `start_step`."""
    from kerasnets.data import streams

    return streams.array_dataset(pad_examples(examples, max_objects), batch_size, seed, start_step, map_fn)


def examples_to_coco(examples: Sequence[dict], categories: Sequence[dict], file_names: Sequence[str] | None = None):
    """COCO ground-truth dict (images, annotations, categories) for `examples`.

    `categories` are COCO category dicts (`{"id", "name", ...}`, with
    `"keypoints"` names for keypoint data). Boxes become `[x, y, w, h]`;
    masks become RLE `segmentation` (pycocotools) and set `area` to the
    mask area (else the box area); keypoints are flattened `[x, y, v] * K`.
    """
    from pycocotools import mask as mask_utils

    known = {int(c["id"]) for c in categories}
    images, annotations = [], []
    ann_id = 1
    for i, ex in enumerate(examples):
        validate_example(ex)
        image_id = int(ex.get("image_id", i))
        height, width = np.shape(ex["image"])[:2]
        entry = {"id": image_id, "height": int(height), "width": int(width)}
        entry["file_name"] = file_names[i] if file_names is not None else f"{image_id:012d}.png"
        images.append(entry)
        for j, (box, cls) in enumerate(zip(np.asarray(ex["boxes"], np.float64), ex["classes"])):
            if int(cls) not in known:
                raise ValueError(f"class id {int(cls)} of image {image_id} is not among the categories {sorted(known)}")
            x1, y1, x2, y2 = (float(v) for v in box)
            ann = {
                "id": ann_id,
                "image_id": image_id,
                "category_id": int(cls),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
            }
            if "masks" in ex:
                rle = mask_utils.encode(np.asfortranarray(np.asarray(ex["masks"][j], np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                ann["segmentation"] = rle
                ann["area"] = float(mask_utils.area(rle))
            if "keypoints" in ex:
                kp = np.asarray(ex["keypoints"][j], np.float64)
                ann["keypoints"] = [float(v) for v in kp.reshape(-1)]
                ann["num_keypoints"] = int(np.sum(kp[:, 2] > 0))
            annotations.append(ann)
            ann_id += 1
    return {"images": images, "annotations": annotations, "categories": [dict(c) for c in categories]}


def resize_example(example: dict, image_size, keep_aspect: bool = True) -> dict:
    """Resize an example to `image_size = (H, W)`, boxes/masks/keypoints following.

    With `keep_aspect` the image is scaled by `min(H / h, W / w)` and padded
    with zeros at the bottom/right (so real images of any size can be
    batched); otherwise it is stretched. Images use bilinear resampling,
    masks nearest neighbour. The scale factors are returned as `scale` (x, y).
    """
    from PIL import Image

    validate_example(example)
    out_h, out_w = (int(v) for v in image_size)
    h, w = np.shape(example["image"])[:2]
    if keep_aspect:
        s = min(out_h / h, out_w / w)
        sx = sy = s
        new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    else:
        sx, sy = out_w / w, out_h / h
        new_w, new_h = out_w, out_h
    image = np.zeros((out_h, out_w, 3), np.uint8)
    image[:new_h, :new_w] = np.asarray(Image.fromarray(example["image"]).resize((new_w, new_h), Image.BILINEAR))
    out = {**example, "image": image, "scale": (sx, sy)}
    out["boxes"] = (np.asarray(example["boxes"], np.float32) * np.array([sx, sy, sx, sy], np.float32))
    if "masks" in example:
        masks = np.zeros((len(example["classes"]), out_h, out_w), np.uint8)
        for i, m in enumerate(example["masks"]):
            masks[i, :new_h, :new_w] = np.asarray(Image.fromarray(np.asarray(m, np.uint8)).resize((new_w, new_h),
                                                                                                    Image.NEAREST))
        out["masks"] = masks
    if "keypoints" in example:
        kp = np.array(example["keypoints"], np.float32)
        kp[..., 0] *= sx
        kp[..., 1] *= sy
        out["keypoints"] = kp
    return out


def random_horizontal_flip(batch: dict, seed, keypoint_flip_map: Sequence[int] | None = None,
                           probability: float = 0.5) -> dict:
    """Flip each image of a padded batch left-right with `probability` (the only augmentation of Faster R-CNN).

    Boxes become `(W - x2, y1, W - x1, y2)`, masks are mirrored, keypoint x
    becomes `W - x` and keypoint types are permuted by `keypoint_flip_map`
    (e.g. left <-> right). Padding rows stay zero. `seed` is a shape-[2]
    int tensor (e.g. `tf.stack([seed, step])` inside `train_stream`'s `map_fn`).
    """
    import tensorflow as tf

    image = batch["image"]
    width = tf.cast(tf.shape(image)[2], tf.float32)
    flip = tf.random.stateless_uniform(tf.shape(image)[:1], seed=seed) < probability
    out = dict(batch)
    out["image"] = tf.where(flip[:, None, None, None], tf.reverse(image, axis=[2]), image)
    real = tf.range(tf.shape(batch["boxes"])[1])[None, :] < tf.cast(batch["num_objects"], tf.int32)[:, None]
    x1, y1, x2, y2 = tf.unstack(batch["boxes"], axis=-1)
    flipped = tf.stack([width - x2, y1, width - x1, y2], axis=-1)
    out["boxes"] = tf.where((flip[:, None] & real)[..., None], flipped, batch["boxes"])
    if "masks" in batch:
        out["masks"] = tf.where(flip[:, None, None, None], tf.reverse(batch["masks"], axis=[3]), batch["masks"])
    if "keypoints" in batch:
        kp = batch["keypoints"]
        if keypoint_flip_map is not None:
            flipped_kp = tf.gather(kp, list(keypoint_flip_map), axis=2)
        else:
            flipped_kp = kp
        fx, fy, fv = tf.unstack(flipped_kp, axis=-1)
        flipped_kp = tf.stack([tf.where(fv > 0, width - fx, fx), fy, fv], axis=-1)
        out["keypoints"] = tf.where((flip[:, None] & real)[..., None, None], flipped_kp, kp)
    return out
