"""Image-caption data for Show, Attend and Tell: an embedded synthetic set and the COCO captions format.

Embedded default (`synthetic_captions`, no download): each image shows 1-3
coloured shapes (circle, square, triangle in red, green, blue, yellow, white),
each in a distinct cell of a 3 x 3 grid (with a small jitter) on a dark smooth
background with pixel noise. Every image gets five captions, as COCO, that are
paraphrases of its content, e.g. for a red circle top-left and a blue square
below it:

    a red circle above a blue square
    a blue square below a red circle
    a red circle in the top left and a blue square on the left
    a red circle and a blue square
    there is a red circle above a blue square

so a model must name colours, shapes, positions and spatial relations, and
BLEU against several references is meaningful. Image `i` of a split is drawn
from `numpy.random.default_rng([seed, split_id, i])`: sets are deterministic
and any image can be regenerated on its own.

Real data (`load_coco_captions`): the COCO captions JSON
(`captions_train2017.json` format: `images` with `id` and `file_name`,
`annotations` with `image_id` and `caption`) plus the folder of its images.
With `data_dir`, the standard layout is expected:

    <data_dir>/annotations/captions_train2017.json   <data_dir>/train2017/*.jpg
    <data_dir>/annotations/captions_val2017.json     <data_dir>/val2017/*.jpg

Images are resized so the shorter side is `image_size` and centre-cropped to
`image_size` x `image_size` (the paper crops 224 x 224 for VGG).

Text (`CaptionVocabulary`): captions are lowercased, every character other
than `a-z`, `0-9` and `'` becomes a space, and words are split on whitespace
(the usual COCO caption normalization). Ids 0-3 are `<pad>`, `<start>`,
`<end>`, `<unk>`; words follow by decreasing frequency.
"""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Sequence

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 245),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
# grid cell (row, column) -> location phrase
LOCATIONS = {
    (0, 0): "in the top left", (0, 1): "at the top", (0, 2): "in the top right",
    (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
    (2, 0): "in the bottom left", (2, 1): "at the bottom", (2, 2): "in the bottom right",
}
CAPTIONS_PER_IMAGE = 5
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_NON_WORD = re.compile(r"[^a-z0-9']+")


# ------------------------------------------------------------------------- text


def tokenize(caption: str) -> list[str]:
    """Lowercase, non-word characters to spaces, split: `"A Man, riding."` -> `["a", "man", "riding"]`."""
    if not isinstance(caption, str):
        raise ValueError(f"a caption must be a str, got {type(caption).__name__}")
    return _NON_WORD.sub(" ", caption.lower()).split()


class CaptionVocabulary:
    """Word <-> id mapping with `<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3.

    Args:
        words: the vocabulary words (without the special tokens), in id order.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        clash = [w for w in words if w in SPECIAL_TOKENS]
        if clash:
            raise ValueError(f"vocabulary words may not be special tokens: {clash}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.tokens = list(SPECIAL_TOKENS) + words
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, captions, min_count: int = 1, max_words: int | None = None) -> "CaptionVocabulary":
        """Words of `captions` (strings, or lists of strings per image) seen >= `min_count` times, most frequent
        first (ties alphabetical), at most `max_words` of them (the paper keeps the 10,000 most frequent)."""
        counts: collections.Counter = collections.Counter()
        for item in captions:
            for caption in [item] if isinstance(item, str) else item:
                counts.update(tokenize(caption))
        ranked = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        if max_words is not None:
            ranked = ranked[:max_words]
        if not ranked:
            raise ValueError("empty vocabulary: no word reaches min_count")
        return cls(ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, captions: Sequence[str], max_length: int) -> np.ndarray:
        """int32 `[N, max_length + 2]`: `<start> w_1 .. w_n <end> <pad>...`, words beyond `max_length` cut."""
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        out = np.full((len(captions), max_length + 2), PAD_ID, np.int32)
        for row, caption in enumerate(captions):
            ids = [self._index.get(w, UNK_ID) for w in tokenize(caption)][:max_length]
            out[row, : len(ids) + 2] = [START_ID, *ids, END_ID]
        return out

    def decode_words(self, ids) -> list[str]:
        """Words of one id sequence, up to the first `<end>`; `<pad>` and `<start>` dropped."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == END_ID:
                break
            if i in (PAD_ID, START_ID):
                continue
            words.append(self.tokens[i])
        return words

    def decode(self, ids) -> str:
        return " ".join(self.decode_words(ids))

    def decode_tf(self, ids):
        """In-graph decode: int `[N, T]` -> `tf.string [N]` (words before the first `<end>`, specials dropped)."""
        import tensorflow as tf

        ids = tf.cast(ids, tf.int32)
        table = tf.constant(self.tokens, tf.string)
        before_end = tf.math.cumsum(tf.cast(ids == END_ID, tf.int32), axis=1, exclusive=True) == 0
        keep = before_end & (ids != END_ID) & (ids != PAD_ID) & (ids != START_ID)
        words = tf.ragged.boolean_mask(tf.gather(table, ids), keep)
        return tf.strings.reduce_join(words, axis=1, separator=" ")


# ------------------------------------------------------------ synthetic images


def _background(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(angle) + yy * np.sin(angle)
    t = ((proj - proj.min()) / max(proj.max() - proj.min(), 1e-6))[..., None]
    a, b = rng.uniform(0, 90, 3), rng.uniform(0, 90, 3)
    image = a * (1 - t) + b * t
    return image + rng.normal(0, 6, (size, size, 3))


def _shape_mask(shape, cx, cy, half, size):
    # pixel centres (x + 0.5, y + 0.5)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= half**2
    if shape == "square":
        s = half * 0.85  # equal area-ish with the circle
        return (np.abs(xx - cx) <= s) & (np.abs(yy - cy) <= s)
    if shape == "triangle":  # apex up, base down
        top, bottom = cy - half, cy + half
        inside_y = (yy >= top) & (yy <= bottom)
        return inside_y & (np.abs(xx - cx) <= half * (yy - top) / (2 * half) + 0.5)
    raise ValueError(f"unknown shape '{shape}'; expected one of {SHAPES}")


def relation(a: dict, b: dict) -> str:
    """Where object `a` is relative to `b`: rows first ("above"/"below"), else columns."""
    if a["row"] != b["row"]:
        return "above" if a["row"] < b["row"] else "below"
    return "to the left of" if a["col"] < b["col"] else "to the right of"


def captions_for(objects: Sequence[dict]) -> list[str]:
    """The five paraphrases of a scene; `objects` in reading order (row, then column)."""
    np_ = [f"a {o['colour']} {o['shape']}" for o in objects]
    loc = [LOCATIONS[(o["row"], o["col"])] for o in objects]
    if len(objects) == 1:
        (a,), (la,) = np_, loc
        o = objects[0]
        return [f"{a} {la}", a, f"there is {a} {la}", f"{a} {la} of the image",
                f"a single {o['colour']} {o['shape']} {la}"]
    if len(objects) == 2:
        (a, b), (la, lb) = np_, loc
        rab, rba = relation(*objects), relation(objects[1], objects[0])
        return [f"{a} {rab} {b}", f"{b} {rba} {a}", f"{a} {la} and {b} {lb}", f"{a} and {b}",
                f"there is {a} {rab} {b}"]
    if len(objects) == 3:
        (a, b, c), (la, lb, lc) = np_, loc
        rab, rba = relation(objects[0], objects[1]), relation(objects[1], objects[0])
        return [f"{a} {rab} {b} and {c} {lc}", f"{a} {la} {b} {lb} and {c} {lc}", f"{a} {b} and {c}",
                f"there are three shapes {a} {b} and {c}", f"{b} {rba} {a} and {c} {lc}"]
    raise ValueError(f"scenes have 1 to 3 objects, got {len(objects)}")


def caption_example(rng, image_size: int = 32, max_objects: int = 3):
    """One image (uint8 `[S, S, 3]`), its objects (reading order) and its five captions."""
    if not 1 <= max_objects <= 3:
        raise ValueError(f"max_objects must be in [1, 3], got {max_objects}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for shapes to be recognisable, got {image_size}")
    n = int(rng.integers(1, max_objects + 1))
    cells = rng.choice(9, size=n, replace=False)
    kinds = rng.choice(len(COLOURS) * len(SHAPES), size=n, replace=False)  # distinct (colour, shape)
    colour_names = list(COLOURS)
    cell = image_size / 3.0
    image = _background(rng, image_size)
    objects = []
    for c, k in zip(cells, kinds):
        row, col = divmod(int(c), 3)
        half = cell * rng.uniform(0.3, 0.4)
        jitter = cell / 2 - half - 0.5
        cx = (col + 0.5) * cell + rng.uniform(-jitter, jitter)
        cy = (row + 0.5) * cell + rng.uniform(-jitter, jitter)
        colour, shape = colour_names[int(k) // len(SHAPES)], SHAPES[int(k) % len(SHAPES)]
        rgb = np.asarray(COLOURS[colour], np.float32) + rng.uniform(-15, 15, 3)
        image[_shape_mask(shape, cx, cy, half, image_size)] = rgb
        objects.append({"colour": colour, "shape": shape, "row": row, "col": col})
    objects.sort(key=lambda o: (o["row"], o["col"]))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image, objects, captions_for(objects)


def synthetic_captions(num_images: int, *, split: str = "train", seed: int = 0, image_size: int = 32,
                       max_objects: int = 3):
    """`(images uint8 [N, S, S, 3], captions: list of 5 strings per image)` of the embedded set."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split '{split}'; expected one of {sorted(_SPLIT_IDS)}")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    captions = []
    for i in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], i])
        images[i], _, caps = caption_example(rng, image_size, max_objects)
        captions.append(caps)
    return images, captions


# --------------------------------------------------------------------- COCO


def resize_and_crop(image, size: int) -> np.ndarray:
    """PIL image or uint8 array -> uint8 `[size, size, 3]`: shorter side to `size`, centre crop."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    picture = picture.convert("RGB")
    w, h = picture.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    picture = picture.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(picture.crop((left, top, left + size, top + size)), np.uint8)


def load_coco_captions_file(annotation_file, image_dir, image_size: int = 224, max_images: int | None = None):
    """Images and their captions from a COCO captions JSON and its image folder.

    Images are taken in increasing `id` order (only those with at least one
    caption), at most `max_images`. Returns `(images uint8 [N, S, S, 3],
    captions: list of lists of str, image_ids: list of int)`.
    """
    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO captions file not found: {annotation_file} "
                                "(expected the captions_<split>2017.json format)")
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"COCO image folder not found: {image_dir}")
    with open(annotation_file) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{annotation_file} is not a COCO captions file: it needs 'images' and 'annotations'")
    files = {}
    for entry in data["images"]:
        if "id" not in entry or "file_name" not in entry:
            raise ValueError(f"{annotation_file}: image entry without 'id'/'file_name': {entry}")
        files[entry["id"]] = entry["file_name"]
    by_image = collections.defaultdict(list)
    for ann in sorted(data["annotations"], key=lambda a: (a.get("image_id"), a.get("id", 0))):
        if "image_id" not in ann or "caption" not in ann:
            raise ValueError(f"{annotation_file}: annotation without 'image_id'/'caption': {ann}")
        if ann["image_id"] not in files:
            raise ValueError(f"{annotation_file}: annotation for unknown image id {ann['image_id']}")
        by_image[ann["image_id"]].append(ann["caption"].strip())
    ids = sorted(by_image)
    if max_images is not None:
        ids = ids[:max_images]
    if not ids:
        raise ValueError(f"{annotation_file} has no captioned images")
    from PIL import Image

    images = np.empty((len(ids), image_size, image_size, 3), np.uint8)
    for row, image_id in enumerate(ids):
        path = os.path.join(image_dir, files[image_id])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image {image_id} listed in {annotation_file} is missing: {path}")
        with Image.open(path) as picture:
            images[row] = resize_and_crop(picture, image_size)
    return images, [by_image[i] for i in ids], ids


def load_coco_captions(data_dir, split: str = "train", image_size: int = 224, max_images: int | None = None):
    """`load_coco_captions_file` on `<data_dir>/annotations/captions_<split>2017.json` and `<data_dir>/<split>2017/`."""
    if not data_dir:
        raise ValueError("data=coco needs data_dir (holding annotations/captions_<split>2017.json and <split>2017/)")
    if split not in ("train", "val"):
        raise ValueError(f"unknown COCO split '{split}'; expected 'train' or 'val'")
    annotation_file = os.path.join(data_dir, "annotations", f"captions_{split}2017.json")
    return load_coco_captions_file(annotation_file, os.path.join(data_dir, f"{split}2017"), image_size, max_images)
