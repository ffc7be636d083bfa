"""The shared base of the detection recipes (`ssd`, `faster_rcnn`, `mask_rcnn`, `fast_rcnn`, `rcnn`).

A detection recipe subclasses `DetectionRecipe`, extends `DetectionConfig`
with its paper's hyper-parameters, and writes `build_model` (whose
`train_step(batch)` gets the batches below) and `detect`. Everything else --
data sources, batching, augmentation, COCO evaluation, the predictions
picture, the TF Serving / TFLite endpoints and int8 calibration data -- is
here, so every detector reads the same data and is scored the same way.

**Data** (`config.data`):

* `"shapes"` (default, no download): `kerasnets.data.shapes`, circles,
  squares and triangles on textured backgrounds, generated at
  `image_size x image_size`;
* `"coco"`: a COCO-format JSON file plus an image folder
  (`kerasnets.data.coco.load_coco`) -- what annotation tools export, the way
  to train on a custom dataset. Validation: `coco_val_annotations` /
  `coco_val_images`, else the last `num_val_images` images of the training
  file are held out;
* `"tfds"`: tensorflow-datasets `coco/2017`, `voc/2007` or `voc/2012`
  (`kerasnets.data.coco.load_tfds_detection`), read offline unless
  `download=True`.

Every image is resized keeping its aspect ratio so that its longer side is
`image_size`, and zero-padded at the bottom/right to a square
(`kerasnets.data.detection.resize_example`); boxes, masks and keypoints
follow. Training batches are

    {"images": uint8 [B, S, S, 3], "boxes": float32 [B, M, 4] (xyxy pixels),
     "classes": int32 [B, M] (1..K, 0 = padding), "num_objects": int32 [B],
     "image_ids": int64 [B], + "masks" uint8 [B, M, S, S] / "keypoints" [B, M, K, 3]}

(`M = max_objects`; masks only for recipes with `"segm"` in `iou_types`,
keypoints only with `"keypoints"`), endless, shuffled deterministically by
`seed` and resumable at any step (`kerasnets.data.streams`), with the
recipe's `augment` applied (default: horizontal flip with p = 0.5, the only
augmentation of the R-CNN family). The model's `train_step` calls
`recipe.preprocess(images)` itself.

**Evaluation** runs the official COCO evaluator (pycocotools `COCOeval`) on
the validation split, in the *original* image pixels: detections are mapped
back through the resize (`boxes / scale`), and the ground truth is the
unresized annotation, so numbers on real data are comparable with published
ones. Metrics are keyed `"<iou_type>/<stat>"`, e.g. `"bbox/AP"`,
`"bbox/AP50"`, `"segm/AP"`.

**Export** (`export_endpoints`):

* `serving_default` (TF Serving): `images` uint8 `[N, H, W, 3]` of **any**
  size (one size per request batch); the resize + pad happens inside the
  graph, then `detect` (NMS inside), and boxes (and keypoints) are mapped back
  to the input image's pixels. Outputs `boxes [N, D, 4]` xyxy, `scores`,
  `classes` (int32 1..K, 0 = padding), `num_detections` (+ `masks [N, D, M, M]`
  per-box probabilities, `keypoints`);
* `fixed_size` (the TFLite endpoint, `tflite_endpoint`): `images` uint8
  `[1, S, S, 3]` already resized and padded by the caller (the same letterbox
  as above), outputs in those `S x S` pixels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Optional

import numpy as np

from kerasnets.config import RecipeConfig, param
from kerasnets.errors import ConfigError
from kerasnets.training.recipe import Endpoint, Recipe

SPLITS = ("train", "validation")
#: Maximum objects per shapes image (the generator's own default).
SHAPES_MAX_OBJECTS = 4


@dataclasses.dataclass
class DetectionConfig(RecipeConfig):
    """Keys shared by the detection recipes; each recipe overrides the defaults with its paper's."""

    data: Literal["shapes", "coco", "tfds"] = param(
        "shapes",
        help="shapes: embedded synthetic circles/squares/triangles (no download); coco: COCO-format JSON + "
        "image folder; tfds: tensorflow-datasets coco/2017 or voc/2007, voc/2012 (offline unless download=True)",
    )
    coco_annotations: Optional[str] = param(None, help="coco: COCO-format JSON of the training images")
    coco_images: Optional[str] = param(None, help="coco: folder holding the training images' file_names")
    coco_val_annotations: Optional[str] = param(
        None, help="coco: JSON of the validation images (default: hold out the last num_val_images training images)"
    )
    coco_val_images: Optional[str] = param(None, help="coco: folder of the validation images (default coco_images)")
    tfds_name: str = param("voc/2007", help="tfds: coco/2017, voc/2007 or voc/2012")
    tfds_train_split: str = param("train", help="tfds: training split")
    tfds_val_split: str = param("validation", help="tfds: evaluation split")
    max_images: Optional[int] = param(None, help="coco/tfds: at most this many images per split (memory)", min=1)
    image_size: int = param(128, help="square model input; images are resized keeping aspect and zero-padded",
                            min=32)
    num_train_images: int = param(512, help="shapes: training images", min=1)
    num_val_images: int = param(64, help="shapes: validation images; coco without a validation file: held out",
                                min=1)
    max_objects: int = param(20, help="ground-truth objects per image in training batches (extra ones dropped)",
                             min=1)
    horizontal_flip: bool = param(True, help="random horizontal flips (p = 0.5) in training")
    eval_batch_size: int = param(16, help="images per batch in evaluation", min=1)
    score_threshold: float = param(0.05, help="detections need a score > this", min=0.0, max=1.0)
    nms_iou_threshold: float = param(0.5, help="per-class NMS IoU threshold", min=0.0, max=1.0)
    max_detections: int = param(100, help="detections kept per image", min=1)

    def validate(self) -> None:
        super().validate()
        if self.data == "coco":
            if not self.coco_annotations or not self.coco_images:
                raise ConfigError("data='coco' needs coco_annotations=<json> and coco_images=<image folder>")
        if self.coco_val_images and not self.coco_val_annotations:
            raise ConfigError("coco_val_images is set but coco_val_annotations is not")
        if self.data == "tfds":
            from kerasnets.data.coco import TFDS_SOURCES

            if self.tfds_name not in TFDS_SOURCES:
                raise ConfigError(
                    f"bad value for 'tfds_name': {self.tfds_name!r}; expected one of {', '.join(TFDS_SOURCES)}"
                )
        if self.data == "shapes" and self.batch_size > self.num_train_images:
            raise ConfigError(f"batch_size {self.batch_size} is larger than num_train_images {self.num_train_images}")


def _keypoint_flip_map(names: Sequence[str]) -> tuple[int, ...] | None:
    """Permutation of keypoint types under a horizontal flip: `left*` <-> `right*` by name."""
    names = list(names)
    if not names:
        return None
    index = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        if "left" in n:
            out.append(index.get(n.replace("left", "right"), index[n]))
        elif "right" in n:
            out.append(index.get(n.replace("right", "left"), index[n]))
        else:
            out.append(index[n])
    return tuple(out)


class DetectionRecipe(Recipe):
    """Base class of the detection recipes (see the module docstring).

    Subclasses set `name`, `paper`, `summary`, `config_class`, and implement
    `build_model` and `detect`; they may override `preprocess`, `augment`
    and `iou_types`.
    """

    config_class: ClassVar[type[RecipeConfig]] = DetectionConfig
    #: COCOeval iou types this recipe reports; also decides whether masks / keypoints are loaded.
    iou_types: ClassVar[tuple[str, ...]] = ("bbox",)
    tflite_endpoint: ClassVar[str] = "fixed_size"
    #: boxes are in pixels: float32 rounding alone is ~1e-5 of the image size
    export_tolerances: ClassVar[dict] = {"savedmodel": 1e-3, "tflite": 1e-2}
    key_metrics = ("loss",)

    def __init__(self, config: DetectionConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._data: dict[str, dict] = {}
        self._categories: list[dict] | None = None
        self._predict_cache: tuple[Any, Any] = (None, None)

    # -------------------------------------------------------------------- data
    @property
    def with_masks(self) -> bool:
        return "segm" in self.iou_types

    @property
    def with_keypoints(self) -> bool:
        return "keypoints" in self.iou_types

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.image_size, self.config.image_size, 3)

    def categories(self) -> list[dict]:
        """COCO category dicts (`id` 1..K, `name`, ...) of the configured data."""
        if self._categories is None:
            c = self.config
            if c.data == "shapes":
                self._categories = shapes_categories()
            elif c.data == "coco":
                self._load_coco()
            else:
                from kerasnets.data.coco import tfds_class_names

                names = tfds_class_names(c.tfds_name, c.data_dir)
                self._categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
        return self._categories

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (class ids 1..K; 0 is background)."""
        return len(self.categories())

    def class_names(self) -> list[str]:
        return [c["name"] for c in self.categories()]

    def keypoint_flip_map(self):
        """Keypoint permutation for horizontal flips (left <-> right by name), or None."""
        names = next((c.get("keypoints") for c in self.categories() if c.get("keypoints")), None)
        return _keypoint_flip_map(names) if names else None

    def keypoint_oks_sigmas(self):
        """OKS sigmas for keypoint AP: the shapes generator's, else COCO's 17 (None lets COCOeval pick)."""
        if self.config.data == "shapes":
            from kerasnets.data import shapes

            return shapes.KEYPOINT_OKS_SIGMAS
        return None

    def _strip(self, example: dict) -> dict:
        drop = set()
        if not self.with_masks:
            drop.add("masks")
        if not self.with_keypoints:
            drop.add("keypoints")
        return {k: v for k, v in example.items() if k not in drop}

    def _finish_split(self, examples: list[dict]) -> dict:
        """Ground truth from the original examples, then the resized examples the model sees."""
        from kerasnets.data import detection

        if not examples:
            raise ValueError(f"recipe '{self.name}': a data split has no images")
        examples = [self._strip(ex) for ex in examples]
        ground_truth = detection.examples_to_coco(examples, self.categories())
        size = (self.config.image_size, self.config.image_size)
        resized = []
        for ex in examples:
            out = detection.resize_example(ex, size, keep_aspect=True)
            out["original_size"] = tuple(int(v) for v in np.shape(ex["image"])[:2])
            resized.append(out)
        return {"examples": resized, "ground_truth": ground_truth}

    def _load_coco(self):
        from kerasnets.data.coco import load_coco

        c = self.config
        kwargs = dict(with_masks=self.with_masks, with_keypoints=self.with_keypoints)
        train, categories = load_coco(c.coco_annotations, c.coco_images, max_images=c.max_images, **kwargs)
        if c.coco_val_annotations:
            val, val_categories = load_coco(
                c.coco_val_annotations, c.coco_val_images or c.coco_images, max_images=c.max_images, **kwargs
            )
            if [x["name"] for x in val_categories] != [x["name"] for x in categories]:
                raise ValueError("the validation file's categories differ from the training file's")
        else:
            if len(train) <= c.num_val_images:
                raise ValueError(
                    f"{c.coco_annotations} has {len(train)} images; holding out num_val_images={c.num_val_images} "
                    "for validation leaves none to train on (pass coco_val_annotations or lower num_val_images)"
                )
            train, val = train[: -c.num_val_images], train[-c.num_val_images :]
        self._categories = categories
        return train, val

    def _load_tfds(self, split_name: str) -> list[dict]:
        from kerasnets.data.coco import load_tfds_detection

        c = self.config
        split = c.tfds_train_split if split_name == "train" else c.tfds_val_split
        ds = load_tfds_detection(c.tfds_name, split, data_dir=c.data_dir, download=c.download,
                                 max_objects=max(c.max_objects, 100))
        if c.max_images is not None:
            ds = ds.take(c.max_images)
        examples = []
        for i, ex in enumerate(ds.as_numpy_iterator()):
            n = int(ex["num_objects"])
            examples.append({
                "image": ex["image"],
                "boxes": ex["boxes"][:n].astype(np.float32),
                "classes": ex["classes"][:n].astype(np.int32),
                "image_id": int(ex["image_id"]) if "image_id" in ex else i + 1,
            })
        return examples

    def split_data(self, split: str) -> dict:
        """`{"examples": [...], "ground_truth": COCO dict}` of `"train"` or `"validation"` (cached)."""
        if split == "val":
            split = "validation"
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._data:
            c = self.config
            if c.data == "shapes":
                from kerasnets.data import shapes

                train, val = shapes.shapes_splits(
                    c.num_train_images, c.num_val_images, seed=c.seed, image_size=c.image_size,
                    max_objects=min(SHAPES_MAX_OBJECTS, c.max_objects),
                )
                self._data["train"], self._data["validation"] = self._finish_split(train), self._finish_split(val)
            elif c.data == "coco":
                train, val = self._load_coco()
                self._data["train"], self._data["validation"] = self._finish_split(train), self._finish_split(val)
            else:
                self.categories()
                self._data[split] = self._finish_split(self._load_tfds(split))
        return self._data[split]

    def examples(self, split: str = "train") -> list[dict]:
        """Resized detection examples (`kerasnets.data.detection` format plus `scale`, `original_size`)."""
        return self.split_data(split)["examples"]

    def _padded(self, split: str) -> dict:
        from kerasnets.data.detection import pad_examples

        arrays = pad_examples(self.examples(split), self.config.max_objects, truncate=True)
        arrays["images"] = arrays.pop("image")
        arrays["image_ids"] = arrays.pop("image_id")
        return arrays

    def augment(self, batch: dict, seed) -> dict:
        """Training augmentation of a padded batch; `seed` is a shape-[2] int tensor (stateless ops).

        Default: horizontal flip with probability 0.5 (`config.horizontal_flip`).
        """
        from kerasnets.data.detection import random_horizontal_flip

        if not self.config.horizontal_flip:
            return batch
        flipped = random_horizontal_flip({**batch, "image": batch["images"]}, seed, self.keypoint_flip_map())
        flipped["images"] = flipped.pop("image")
        return flipped

    def build_dataset(self, split: str = "train", start_step: int = 0):
        """Train: endless augmented batches (see the module docstring); else one ordered pass."""
        import tensorflow as tf

        from kerasnets.data import streams

        c = self.config
        arrays = self._padded(split)
        if split == "train":
            if c.batch_size > len(arrays["images"]):
                raise ConfigError(f"batch_size {c.batch_size} is larger than the {len(arrays['images'])} training "
                                  "images")

            def prepare(batch, step):
                seed = tf.stack([tf.constant(c.seed, tf.int64), tf.cast(step, tf.int64)])
                return self.augment(batch, seed)

            return streams.array_dataset(arrays, c.batch_size, c.seed, start_step, map_fn=prepare)
        return streams.eval_dataset(arrays, c.eval_batch_size)

    # ------------------------------------------------------------------ model
    def preprocess(self, images):
        """uint8 images -> the model's float input (default `images / 255`)."""
        import tensorflow as tf

        return tf.cast(images, tf.float32) / 255.0

    def detect(self, model, images) -> dict:
        """Padded detections of preprocessed images `[B, S, S, 3]` in model-input pixels.

        Returns `{"boxes" [B, D, 4] xyxy, "scores" [B, D], "classes" [B, D] int32
        1..K (0 = padding), "num_detections" [B] int32}` plus optional
        `"masks" [B, D, M, M]` probabilities and `"keypoints" [B, D, K, 3]`.
        Must be traceable in a `tf.function` (it is exported).
        """
        raise NotImplementedError(f"recipe '{self.name}' must implement detect(model, images)")

    def _predict_fn(self, model):
        import tensorflow as tf

        cached, fn = self._predict_cache
        if cached is not model:
            spec = tf.TensorSpec([None, *self.image_shape], tf.uint8)

            @tf.function(input_signature=[spec])
            def fn(images):
                return self.detect(model, self.preprocess(images))

            self._predict_cache = (model, fn)
        return fn

    def predict(self, model, images, batch_size: int | None = None) -> dict:
        """Detections (numpy, model-input pixels) for uint8 images `[N, S, S, 3]`, in batches."""
        import tensorflow as tf

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"predict needs uint8 images [N, {', '.join(map(str, self.image_shape))}], "
                             f"got {images.dtype} {images.shape}")
        fn = self._predict_fn(model)
        batch_size = batch_size or self.config.eval_batch_size
        parts = [fn(tf.constant(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    # ------------------------------------------------------------- evaluation
    def to_original_pixels(self, outputs: dict, examples: Sequence[dict]) -> dict:
        """Map model-pixel detections of `examples` back to their original image pixels."""
        out = dict(outputs)
        scales = np.array([ex.get("scale", (1.0, 1.0)) for ex in examples], np.float32)  # (sx, sy)
        sizes = np.array([ex.get("original_size", np.shape(ex["image"])[:2]) for ex in examples], np.float32)
        boxes = np.asarray(outputs["boxes"], np.float32) / np.concatenate([scales, scales], -1)[:, None, :]
        limit = np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], -1)[:, None, :]
        out["boxes"] = np.clip(boxes, 0.0, limit)
        if "keypoints" in outputs:
            kp = np.array(outputs["keypoints"], np.float32)
            kp[..., 0] /= scales[:, None, None, 0]
            kp[..., 1] /= scales[:, None, None, 1]
            out["keypoints"] = kp
        return out

    def coco_metrics(self, outputs: dict, examples: Sequence[dict], ground_truth: dict) -> dict:
        """COCOeval metrics (`"<iou_type>/<stat>"`) of model-pixel `outputs` for `examples`."""
        from kerasnets.metrics.coco import coco_evaluate, detections_to_coco
        from kerasnets.ops.masks import paste_masks

        mapped = self.to_original_pixels(outputs, examples)
        ids = [int(ex["image_id"]) for ex in examples]
        results = []
        for i, ex in enumerate(examples):
            masks = None
            if "segm" in self.iou_types:
                if "masks" not in mapped:
                    raise ValueError(f"recipe '{self.name}' reports segm AP but detect returned no masks")
                size = ex.get("original_size", np.shape(ex["image"])[:2])
                masks = paste_masks(mapped["masks"][i : i + 1], mapped["boxes"][i : i + 1], size).numpy()
            keypoints = mapped["keypoints"][i : i + 1] if "keypoints" in self.iou_types else None
            results += detections_to_coco(
                ids[i : i + 1], mapped["boxes"][i : i + 1], mapped["scores"][i : i + 1],
                mapped["classes"][i : i + 1], mapped["num_detections"][i : i + 1], masks=masks, keypoints=keypoints,
            )
        metrics = {}
        for iou_type in self.iou_types:
            sigmas = self.keypoint_oks_sigmas() if iou_type == "keypoints" else None
            stats = coco_evaluate(ground_truth, results, iou_type, sigmas, image_ids=ids)
            metrics.update({f"{iou_type}/{k}": v for k, v in stats.items()})
        return metrics

    def evaluate(self, model, split: str = "validation") -> dict[str, float]:
        """COCO AP of `split` (pycocotools COCOeval, original image pixels)."""
        data = self.split_data(split)
        examples = data["examples"]
        outputs = self.predict(model, np.stack([ex["image"] for ex in examples]))
        return self.coco_metrics(outputs, examples, data["ground_truth"])

    def on_train_end(self, model, run_dir, history) -> dict:
        """COCO metrics on the validation split, `plots/predictions.png` and `plots/training.png`."""
        from kerasnets.utils.plots import plot_history

        summary = dict(self.evaluate(model))
        summary["predictions_png"] = self.save_predictions(model, os.path.join(run_dir, "plots", "predictions.png"))
        keys = [k for k in (history[-1] if history else {}) if k != "step"]
        curve = plot_history(history, keys, os.path.join(run_dir, "plots", "training.png"), title=self.name)
        if curve:
            summary["training_png"] = curve
        return summary

    def save_predictions(self, model, path: str, num_images: int = 8, min_score: float = 0.3, scale: int = 2) -> str:
        """Draw detections (score >= `min_score`) on the first validation images into one PNG grid."""
        from kerasnets.ops.masks import paste_masks
        from kerasnets.utils.drawing import draw_detections
        from kerasnets.utils.images import save_grid

        examples = self.examples("validation")[:num_images]
        images = np.stack([ex["image"] for ex in examples])
        out = self.predict(model, images)
        names = self.class_names()
        pictures = []
        for i, image in enumerate(images):
            n = int(out["num_detections"][i])
            masks = None
            if "masks" in out and n:
                masks = paste_masks(out["masks"][i, :n], out["boxes"][i, :n], image.shape[:2]).numpy()
            pictures.append(draw_detections(
                image, out["boxes"][i, :n], out["classes"][i, :n], out["scores"][i, :n], masks=masks,
                keypoints=out["keypoints"][i, :n] if "keypoints" in out else None, class_names=names,
                score_threshold=min_score, scale=scale,
            ))
        return save_grid(np.stack(pictures), path, columns=4, value_range=(0, 255))

    # ------------------------------------------------------------------ export
    def letterbox(self, images):
        """In-graph resize keeping aspect (longer side -> S) + zero pad to S x S: `(uint8 [N, S, S, 3], scale)`.

        Matches `kerasnets.data.detection.resize_example` (bilinear with
        antialiasing, as PIL's, rounded to uint8).
        """
        import tensorflow as tf

        size = self.config.image_size
        shape = tf.shape(images)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        scale = tf.minimum(size / height, size / width)
        new_h = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), 1)
        new_w = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), 1)
        resized = tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_h, new_w]), antialias=True)
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        padded = tf.pad(resized, [[0, 0], [0, size - new_h], [0, size - new_w], [0, 0]])
        return tf.ensure_shape(padded, [None, size, size, 3]), scale

    def serve(self, model, images) -> dict:
        """`serving_default`: uint8 images of any size -> detections in the input image's pixels."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        letterboxed, scale = self.letterbox(images)
        out = dict(self.detect(model, self.preprocess(letterboxed)))
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        boxes = out["boxes"] / scale
        limit = tf.stack([width, height, width, height])
        out["boxes"] = tf.clip_by_value(boxes, 0.0, limit)
        if "keypoints" in out:
            kp = out["keypoints"]
            out["keypoints"] = tf.concat([kp[..., :2] / scale, kp[..., 2:]], axis=-1)
        return self._serving_outputs(out)

    @staticmethod
    def _serving_outputs(out: dict) -> dict:
        import tensorflow as tf

        result = {
            "boxes": tf.cast(out["boxes"], tf.float32),
            "scores": tf.cast(out["scores"], tf.float32),
            "classes": tf.cast(out["classes"], tf.int32),
            "num_detections": tf.cast(out["num_detections"], tf.int32),
        }
        for key in ("masks", "keypoints"):
            if key in out:
                result[key] = tf.cast(out[key], tf.float32)
        return result

    def export_endpoints(self, model) -> dict:
        """`serving_default` (any-size uint8 images) and `fixed_size` (letterboxed `[1, S, S, 3]`, for TFLite)."""
        import tensorflow as tf

        def serving_default(images):
            return self.serve(model, images)

        def fixed_size(images):
            return self._serving_outputs(self.detect(model, self.preprocess(images)))

        return {
            "serving_default": Endpoint(serving_default, [tf.TensorSpec([None, None, None, 3], tf.uint8, "images")]),
            "fixed_size": Endpoint(fixed_size, [tf.TensorSpec([1, *self.image_shape], tf.uint8, "images")]),
        }

    def representative_dataset(self, num_samples: int = 64):
        """`{"images": uint8 [1, S, S, 3]}` training images (int8 calibration and export checks)."""
        examples = self.examples("train")
        for ex in examples[: min(num_samples, len(examples))]:
            yield {"images": np.asarray(ex["image"], np.uint8)[None]}


def shapes_categories() -> list[dict]:
    from kerasnets.data import shapes

    return shapes.categories()
