"""Real detection data: COCO-format JSON + image folders (pycocotools), and tfds `coco/2017` / `voc`.

**COCO-format files** are what annotation tools export (CVAT, Label Studio,
VIA converters, Roboflow) and what COCO itself ships, so `load_coco` is the
way to train on a custom dataset. Category ids in such files are arbitrary
(COCO's run 1..90 with gaps); they are mapped to contiguous ids 1..K in
sorted order, and `categories` keeps the original as `"coco_id"`. Crowd
annotations (`iscrowd=1`) are skipped (COCOeval treats them as "ignore"
regions, not objects). Polygon and RLE segmentations are both decoded to
binary masks by pycocotools.

**tensorflow-datasets** `coco/2017` (boxes only, 80 classes) and `voc/2007`,
`voc/2012` (20 classes) are mapped to the same padded format as
`kerasnets.data.detection.pad_examples` (without masks), with class id =
tfds label + 1. They are read offline unless `download=True`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from kerasnets.data import detection


def coco_api(annotations):
    """A pycocotools `COCO` index of an annotation dict or JSON file (checked for the required lists)."""
    try:
        from pycocotools.coco import COCO
    except ImportError as exc:  # pragma: no cover - pycocotools is an install requirement
        raise ImportError("COCO-format data needs pycocotools (pip install pycocotools)") from exc
    if isinstance(annotations, (str, os.PathLike)):
        if not os.path.exists(annotations):
            raise FileNotFoundError(f"COCO annotation file not found: {annotations}")
        with open(annotations) as f:
            annotations = json.load(f)
    if not isinstance(annotations, dict) or "images" not in annotations or "categories" not in annotations:
        raise ValueError("COCO annotations need 'images' and 'categories' lists (and usually 'annotations')")
    coco = COCO()
    coco.dataset = {"annotations": [], **annotations}
    coco.createIndex()
    return coco


def load_coco(
    annotations,
    image_dir: str | None,
    *,
    with_masks: bool = True,
    with_keypoints: bool = True,
    image_ids: Sequence[int] | None = None,
    max_images: int | None = None,
):
    """Read a COCO-format dataset into detection examples.

    Args:
        annotations: path of the JSON file or the already-loaded dict.
        image_dir: folder holding the `file_name`s of the images.
        with_masks: decode `segmentation` to `masks [n, H, W]` (every
            annotation must then have one).
        with_keypoints: keep `keypoints [n, K, 3]` when the annotations have them.
        image_ids: only these images (default: all, sorted by id).
        max_images: at most this many images.

    Returns:
        `(examples, categories)`: examples in the `kerasnets.data.detection`
        format (class ids 1..K) and the category dicts with the new `id` and
        the file's `coco_id`.
    """
    from PIL import Image

    coco = coco_api(annotations)
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    to_label = {c["id"]: i + 1 for i, c in enumerate(cats)}
    categories = [{**c, "id": to_label[c["id"]], "coco_id": c["id"]} for c in cats]
    num_kp = max((len(c.get("keypoints", [])) for c in cats), default=0)
    ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
    if max_images is not None:
        ids = ids[:max_images]
    examples = []
    for image_id in ids:
        info = coco.loadImgs([image_id])[0]
        path = os.path.join(image_dir or "", info["file_name"])
        if not os.path.exists(path):
            raise FileNotFoundError(f"image {image_id} not found at {path}")
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"), np.uint8)
        height, width = image.shape[:2]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        example = {
            "image": image,
            "boxes": boxes,
            "classes": np.array([to_label[a["category_id"]] for a in anns], np.int32),
            "image_id": int(image_id),
        }
        if with_masks:
            missing = [a["id"] for a in anns if "segmentation" not in a]
            if missing:
                raise ValueError(f"annotations {missing[:5]} of image {image_id} have no segmentation; "
                                 "pass with_masks=False for box-only data")
            example["masks"] = np.array([coco.annToMask(a) for a in anns], np.uint8).reshape(-1, height, width)
        if with_keypoints and num_kp and all("keypoints" in a for a in anns):
            example["keypoints"] = np.array([np.reshape(a["keypoints"], (-1, 3)) for a in anns],
                                            np.float32).reshape(-1, num_kp, 3)
        examples.append(example)
    return examples, categories


def write_coco(examples: Sequence[dict], directory, categories: Sequence[dict],
               annotation_name: str = "annotations.json", image_subdir: str = "images"):
    """Write examples as PNG images plus a COCO JSON file; returns `(annotation_path, image_dir)`."""
    from PIL import Image

    image_dir = os.path.join(directory, image_subdir)
    os.makedirs(image_dir, exist_ok=True)
    names = []
    for i, ex in enumerate(examples):
        name = f"{int(ex.get('image_id', i)):012d}.png"
        Image.fromarray(np.asarray(ex["image"], np.uint8)).save(os.path.join(image_dir, name))
        names.append(name)
    data = detection.examples_to_coco(examples, categories, names)
    path = os.path.join(directory, annotation_name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path, image_dir


TFDS_SOURCES = ("coco/2017", "voc/2007", "voc/2012")


def tfds_class_names(name: str, data_dir: str | None = None) -> list[str]:
    """Class names of a tfds detection dataset, index i = class id i + 1."""
    import tensorflow_datasets as tfds

    return list(tfds.builder(name, data_dir=data_dir).info.features["objects"]["label"].names)


def load_tfds_detection(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
    max_objects: int = 100,
    skip_crowd: bool = True,
    skip_difficult: bool = False,
):
    """A tfds detection set as an unbatched `tf.data.Dataset` of padded examples.

    Each element: `image` uint8 `[H, W, 3]` (resized bilinearly to
    `image_size` if given; boxes follow), `boxes [max_objects, 4]` xyxy
    pixels, `classes [max_objects]` (tfds label + 1, 0 = padding),
    `num_objects`, `image_id`. Objects beyond `max_objects` are dropped.
    COCO crowd boxes and (optionally) VOC "difficult" boxes are skipped.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if name not in TFDS_SOURCES:
        raise ValueError(f"unknown tfds detection set '{name}'; expected one of {', '.join(TFDS_SOURCES)}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=download, shuffle_files=False)
    except Exception as exc:  # tfds raises AssertionError / DatasetNotFoundError when files are missing
        if download:
            raise
        raise FileNotFoundError(
            f"tensorflow-datasets '{name}' ({split}) is not prepared in data_dir={data_dir!r}; prepare it once "
            "with download=True (or `tfds build`), or use the embedded shapes data"
        ) from exc

    def convert(features):
        image = features["image"]
        objects = features["objects"]
        keep = tf.ones_like(objects["label"], tf.bool)
        if skip_crowd and "is_crowd" in objects:
            keep &= ~tf.cast(objects["is_crowd"], tf.bool)
        if skip_difficult and "is_difficult" in objects:
            keep &= ~tf.cast(objects["is_difficult"], tf.bool)
        if image_size is not None:
            image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, image_size)), 0, 255), tf.uint8)
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        ymin, xmin, ymax, xmax = tf.unstack(tf.boolean_mask(objects["bbox"], keep), axis=-1)
        boxes = tf.stack([xmin * size[1], ymin * size[0], xmax * size[1], ymax * size[0]], axis=-1)
        classes = tf.cast(tf.boolean_mask(objects["label"], keep), tf.int32) + 1
        n = tf.minimum(tf.shape(classes)[0], max_objects)
        boxes = tf.pad(boxes[:n], [[0, max_objects - n], [0, 0]])
        classes = tf.pad(classes[:n], [[0, max_objects - n]])
        out = {
            "image": image,
            "boxes": tf.ensure_shape(boxes, [max_objects, 4]),
            "classes": tf.ensure_shape(classes, [max_objects]),
            "num_objects": n,
        }
        if "image/id" in features:
            out["image_id"] = tf.cast(features["image/id"], tf.int64)
        return out

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
