"""Pieces shared by the image-classification recipes (resnet, edge_popup, supermask, attacks)."""

from __future__ import annotations

import tensorflow as tf

from kerasnets.data import image_classification as image_data
from kerasnets.training.recipe import Endpoint, Recipe


class ImageArrayRecipe(Recipe):
    """A recipe trained on in-memory image arrays (`kerasnets.data.image_classification.load`).

    The config needs `data`, `data_dir`, `download`, `batch_size`, `seed`, `augment` and
    `resolved_image_size()`; `val_fraction` is optional (0 when the config has none).
    """

    def __init__(self, config=None):
        super().__init__(config)
        self._data = None

    def data(self) -> image_data.ClassificationData:
        """The splits and pixel mean (loaded once per recipe object)."""
        if self._data is None:
            c = self.config
            self._data = image_data.load(
                c.data,
                image_size=c.resolved_image_size(),
                val_fraction=getattr(c, "val_fraction", 0.0),
                data_dir=c.data_dir,
                download=c.download,
            )
        return self._data

    def image_shape(self) -> tuple[int, int, int]:
        size = self.config.resolved_image_size()
        return (size, size, 3)

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        c = self.config
        if split == "train":
            return image_data.train_dataset(self.data(), c.batch_size, c.seed, start_step, augment=c.augment)
        return image_data.eval_dataset(self.data(), split, c.batch_size)


def classifier_endpoints(logits_model, image_shape) -> dict:
    """`serving_default`: `images` float32 `[N, *image_shape]` -> `probabilities`, `classes` (int32).

    `logits_model` maps images (in whatever pixel range the recipe documents;
    preprocessing belongs inside it) to class logits.
    """

    def serve(images):
        logits = logits_model(images, training=False)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int32),
        }

    spec = tf.TensorSpec([None, *image_shape], tf.float32, name="images")
    return {"serving_default": Endpoint(serve, [spec])}


def single_image_batches(images, num_samples: int):
    """`{"images": [1, H, W, C]}` dicts of the first `num_samples` images (int8 calibration)."""
    for i in range(min(num_samples, len(images))):
        yield {"images": images[i : i + 1].astype("float32")}
