"""Tiny recipes for the export tests: a conv classifier on 8x8x1 images and a `z -> image` generator."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasnets.training.recipe import Endpoint
from kerasnets.training.recipe import Recipe


class ToyClassifierRecipe(Recipe):
    """Conv net on 8x8x1 images; `serving_default(images) -> {logits, probs}`."""

    name = "toy_classifier"

    def build_model(self):
        init = keras.initializers.GlorotUniform(seed=1)
        inputs = keras.Input((8, 8, 1), name="images")
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(3, kernel_initializer=init, bias_initializer="ones")(x)
        return keras.Model(inputs, outputs)

    def export_endpoints(self, model):
        def serve(images):
            logits = model(images, training=False)
            return {"logits": logits, "probs": tf.nn.softmax(logits)}

        return {"serving_default": Endpoint(serve, [tf.TensorSpec((None, 8, 8, 1), tf.float32, name="images")])}

    def representative_dataset(self, num_samples=64):
        rng = np.random.default_rng(7)
        for _ in range(num_samples):
            yield {"images": rng.uniform(0.0, 1.0, (1, 8, 8, 1)).astype("float32")}


class ToyGeneratorRecipe(Recipe):
    """`serving_default(z) -> {images}` (TFLite-able) plus `sample(n, seed)` with in-graph noise."""

    name = "toy_generator"
    latent_dim = 4

    def build_model(self):
        init = keras.initializers.GlorotUniform(seed=2)
        z = keras.Input((self.latent_dim,), name="z")
        x = keras.layers.Dense(16, activation="elu", kernel_initializer=init)(z)
        x = keras.layers.Dense(8 * 8, activation="tanh", kernel_initializer=init)(x)
        images = keras.layers.Reshape((8, 8, 1))(x)
        return keras.Model(z, images)

    def export_endpoints(self, model):
        def serve(z):
            return {"images": model(z, training=False)}

        def sample(n, seed):
            z = tf.random.stateless_normal(tf.stack([n, self.latent_dim]), seed=tf.stack([seed, 0]))
            return {"images": model(z, training=False), "z": z}

        return {
            "serving_default": Endpoint(serve, [tf.TensorSpec((None, self.latent_dim), tf.float32, name="z")]),
            "sample": Endpoint(
                sample, [tf.TensorSpec((), tf.int32, name="n"), tf.TensorSpec((), tf.int32, name="seed")]
            ),
        }

    def representative_dataset(self, num_samples=64):
        rng = np.random.default_rng(3)
        for _ in range(num_samples):
            # Unbatched on purpose: the exporter adds the batch axis.
            yield {"z": rng.standard_normal(self.latent_dim).astype("float32")}


class ToyGeneratorSampleTFLite(ToyGeneratorRecipe):
    """Asks for TFLite of the in-graph-noise endpoint: must fail with a clear error."""

    tflite_endpoint = "sample"
