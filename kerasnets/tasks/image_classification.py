"""Pieces shared by the image-classification recipes (resnet, edge_popup, supermask, attacks)."""

from __future__ import annotations

import tensorflow as tf

from kerasnets.training.recipe import Endpoint


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
