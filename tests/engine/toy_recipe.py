"""A tiny recipe for engine tests: an MLP on digits with noise, a mean-aggregated state
variable, and hooks to crash or produce NaN at a chosen step.

Importable as `toy_recipe:ToyRecipe` (tests put this folder on PYTHONPATH), which
also exercises the `recipe=module:Class` form of the registry.
"""

import dataclasses
import os
import signal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data.digits import load_digits
from kerasnets.data.streams import array_dataset
from kerasnets.distribute import replica_seed, scale_loss
from kerasnets.training.recipe import Endpoint, Recipe


@dataclasses.dataclass
class ToyConfig(RecipeConfig):
    steps: int = param(30, help="steps", min=1)
    batch_size: int = param(16, help="global batch", min=1)
    learning_rate: float = param(0.05, help="SGD learning rate", min=0.0)
    noise: float = param(0.1, help="input noise std (drawn per replica)", min=0.0)
    hidden: int = param(16, help="hidden units", min=1, max=4096)
    nan_at_step: int = param(0, help="make the loss NaN at this step (0: never)", min=0)
    strategy: str = param("default", help="strategy")


class ToyModel(keras.Model):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.net = keras.Sequential(
            [keras.Input((64,)), keras.layers.Dense(config.hidden, activation="tanh"), keras.layers.Dense(10)]
        )
        self.noise_seed = keras.random.SeedGenerator(config.seed + 1)
        self.state = self.add_weight(shape=(), initializer="zeros", trainable=False, aggregation="mean", name="state")
        self.optimizer = keras.optimizers.SGD(config.learning_rate, momentum=0.9)
        self.optimizer.build(self.net.trainable_variables)

    def call(self, x, training=False):
        return self.net(x, training=training)

    def train_step(self, data):
        x, y = data
        x = tf.reshape(x, (-1, 64))
        x = x + self.config.noise * tf.random.stateless_normal(tf.shape(x), seed=replica_seed(self.noise_seed))
        with tf.GradientTape() as tape:
            logits = self.net(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
            if self.config.nan_at_step:
                bad = tf.equal(self.optimizer.iterations + 1, self.config.nan_at_step)
                loss = loss * tf.where(bad, float("nan"), 1.0)
            scaled = scale_loss(loss)
        grads = tape.gradient(scaled, self.net.trainable_variables)
        self.optimizer.apply(grads, self.net.trainable_variables)
        self.state.assign(self.state + 0.001 * loss)
        return {"loss": loss, "state": tf.identity(self.state)}


class ToyRecipe(Recipe):
    name = "toy"
    paper = "none (engine test recipe)"
    summary = "MLP on digits"
    config_class = ToyConfig
    key_metrics = ("loss",)

    def build_model(self):
        keras.utils.set_random_seed(self.config.seed)
        return ToyModel(self.config)

    def build_dataset(self, split="train", start_step=0):
        (x, y), (xt, yt) = load_digits(seed=0)
        if split == "train":
            return array_dataset((x, y), self.config.batch_size, self.config.seed, start_step)
        return tf.data.Dataset.from_tensor_slices((xt, yt)).batch(64)

    def on_log(self, model, step, writer):
        # Crash test hook: an env var, so the resumed run has the same config.
        kill_at = int(os.environ.get("TOY_KILL_AT_STEP", "0"))
        if kill_at and step >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def evaluate(self, model):
        correct = total = 0
        for x, y in self.build_dataset("test"):
            pred = np.argmax(model(tf.reshape(x, (-1, 64))), axis=-1)
            correct += int((pred == y.numpy()).sum())
            total += len(pred)
        return {"accuracy": correct / total}

    def export_endpoints(self, model):
        def serve(images):
            logits = model(tf.reshape(images, (-1, 64)))
            return {"probabilities": tf.nn.softmax(logits)}

        return {"serving_default": Endpoint(serve, [tf.TensorSpec((None, 8, 8, 1), tf.float32, name="images")])}

    def representative_dataset(self, num_samples=64):
        (x, _), _ = load_digits(seed=0)
        for i in range(num_samples):
            yield {"images": x[i : i + 1]}
