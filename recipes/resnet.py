"""ResNet on CIFAR-10 (He, Zhang, Ren, Sun 2015, arXiv:1512.03385, section 4.2).

The paper's CIFAR recipe, which is also the engine's benchmark model:

* model: `kerasnets.models.resnet_cifar.build_resnet_cifar` (depth 6n+2,
  option A or B shortcuts), fed raw pixels minus the per-pixel mean of the
  training images (the mean is a model variable, so exports take raw pixels);
* loss: softmax cross-entropy plus the coupled L2 penalty
  `wd / 2 * sum(w**2)` over all kernels (SGD's `weight_decay=1e-4` in the
  paper's sense, not Keras' decoupled `weight_decay=`):

      L = -1/B sum_i log softmax(f(x_i))_{y_i} + wd / 2 * ||w||^2

* update: SGD with momentum 0.9, `v <- 0.9 v - lr * g; w <- w + v`,
  batch 128, lr 0.1 divided by 10 after 32k and 48k of 64k iterations
  (`lr_decay_at=(0.5, 0.75)` of `steps`, or explicit `lr_boundaries`);
  ResNet-110 warms up at lr 0.01 for the first 400 iterations (the paper:
  "until the training error is below 80% (about 400 iterations)");
* data: 45k/5k train/validation split of CIFAR-10, 4-pixel pad + random crop
  + horizontal flip (`kerasnets.data.image_classification`); the embedded default is
  scikit-learn's digits upscaled to 16x16 (no download).

Paper Table 6, CIFAR-10 test error: ResNet-20 8.75%, -32 7.51%, -44 7.17%,
-56 6.97%, -110 6.43% (6.61 +- 0.16 over 5 runs), -1202 7.93%.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import image_classification as image_data
from kerasnets.errors import ConfigError
from kerasnets.models import resnet_cifar
from kerasnets.saving import register
from kerasnets.optimization import minimize
from kerasnets.tasks.image_classification import ImageArrayRecipe, classifier_endpoints, single_image_batches
from kerasnets.models.recipe_model import RecipeModel

#: The paper's ResNet-110 warm-up length (iterations at `warmup_learning_rate`).
PAPER_WARMUP_STEPS = 400


@dataclasses.dataclass
class ResNetConfig(RecipeConfig):
    """Hyper-parameters of the CIFAR ResNets; defaults = the paper's, on the embedded digits."""

    steps: int = param(600, help="training iterations (paper: 64000 at batch 128)", min=1)
    batch_size: int = param(128, help="global batch size (paper: 128)", min=1)
    depth: int = param(20, help="6n+2: 20, 32, 44, 56, 110 or 1202 in the paper", min=8)
    shortcut: Literal["A", "B"] = param("A", help="A: zero-padding identity (paper's CIFAR), B: 1x1 projection")
    learning_rate: float = param(0.1, help="initial SGD learning rate", min=0.0)
    momentum: float = param(0.9, help="SGD momentum", min=0.0, max=1.0)
    weight_decay: float = param(1e-4, help="coupled L2: loss += wd/2 * sum(w^2) over kernels", min=0.0)
    lr_decay_at: tuple[float, ...] = param(
        (0.5, 0.75), help="fractions of `steps` after which lr is divided (paper: 32k, 48k of 64k)", min=0.0, max=1.0
    )
    lr_boundaries: Optional[tuple[int, ...]] = param(
        None, help="explicit iterations after which lr is divided (overrides lr_decay_at)", min=1
    )
    lr_decay_factor: float = param(0.1, help="lr multiplier at each boundary", min=0.0, max=1.0)
    warmup_steps: Optional[int] = param(
        None, help="iterations at warmup_learning_rate first; None: 400 for depth >= 110 (paper), else 0", min=0
    )
    warmup_learning_rate: float = param(0.01, help="lr during warm-up (paper: 0.01 for ResNet-110)", min=0.0)
    sync_bn: bool = param(
        False,
        help="batch-norm statistics over all replicas; without it each replica normalises with its own "
        "share of the batch and keeps its own moving statistics (replica 0's are saved)",
    )
    data: Literal["embedded", "cifar10"] = param(
        "embedded", help="embedded: scikit-learn digits (no download); cifar10: tensorflow-datasets"
    )
    image_size: Optional[int] = param(
        None, help="image side; None: 16 for embedded digits, 32 for cifar10 (must be 32)", min=8, max=64
    )
    val_fraction: float = param(
        0.1, help="share of training images held out for validation (0.1 = paper's 45k/5k)", min=0.0, max=0.5
    )
    augment: bool = param(True, help="pad + random crop (+ flip for cifar10) on training batches")

    def validate(self) -> None:
        super().validate()
        try:
            resnet_cifar.blocks_per_stage(self.depth)
        except ValueError as exc:
            raise ConfigError(f"bad value for 'depth': {exc}") from None
        if self.data == "cifar10" and self.image_size not in (None, image_data.CIFAR_SIZE):
            raise ConfigError(f"bad value for 'image_size': cifar10 images are 32x32, got {self.image_size}")
        if list(self.lr_decay_at) != sorted(self.lr_decay_at):
            raise ConfigError(f"bad value for 'lr_decay_at': {self.lr_decay_at!r}; expected increasing fractions")
        if self.lr_boundaries is not None and list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise ConfigError(f"bad value for 'lr_boundaries': {self.lr_boundaries!r}; expected increasing steps")

    # Derived values --------------------------------------------------------
    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return image_data.CIFAR_SIZE if self.data == "cifar10" else 16

    def resolved_boundaries(self) -> tuple[int, ...]:
        if self.lr_boundaries is not None:
            return tuple(self.lr_boundaries)
        return tuple(int(round(f * self.steps)) for f in self.lr_decay_at)

    def resolved_warmup_steps(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return PAPER_WARMUP_STEPS if self.depth >= 110 else 0


@register
class StepDecayWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """The paper's schedule as a function of the optimizer's iteration count `t` (0-based).

        lr(t) = warmup_learning_rate                       if t < warmup_steps
              = learning_rate * factor ** #{b : t >= b}     otherwise

    so with boundaries (32000, 48000) the 32001st update is the first at 0.01:
    "divide it by 10 at 32k and 48k iterations".
    """

    def __init__(self, learning_rate, boundaries=(), factor=0.1, warmup_steps=0, warmup_learning_rate=0.01):
        self.learning_rate = float(learning_rate)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.factor = float(factor)
        self.warmup_steps = int(warmup_steps)
        self.warmup_learning_rate = float(warmup_learning_rate)

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        drops = tf.zeros([], tf.float32)
        for b in self.boundaries:
            drops += tf.cast(step >= b, tf.float32)
        lr = self.learning_rate * tf.pow(tf.constant(self.factor, tf.float32), drops)
        return tf.where(step < self.warmup_steps, tf.constant(self.warmup_learning_rate, tf.float32), lr)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "boundaries": list(self.boundaries),
            "factor": self.factor,
            "warmup_steps": self.warmup_steps,
            "warmup_learning_rate": self.warmup_learning_rate,
        }


class ResNetClassifier(RecipeModel):
    """Raw pixels -> `network(pixels - pixel_mean)` logits, with the recipe's SGD and train step."""

    def __init__(self, network, image_shape, optimizer, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.pixel_mean = self.add_weight(
            shape=tuple(image_shape), initializer="zeros", trainable=False, name="pixel_mean"
        )
        self.optimizer = optimizer

    def call(self, images, training=False):
        return self.network(images - self.pixel_mean, training=training)

    def train_step(self, batch):
        """One replica's SGD step on `(images, labels)`; returns unscaled metrics."""
        images, labels = batch
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            logits = self(images, training=True)
            cross_entropy = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        learning_rate = self.optimizer.learning_rate
        # loss = cross-entropy + the network's L2 (minimize adds it).
        loss = minimize(tape, cross_entropy, self.network.trainable_variables, self.optimizer, model=self.network)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return {
            "loss": loss,
            "cross_entropy": cross_entropy,
            "accuracy": accuracy,
            "learning_rate": tf.cast(learning_rate, tf.float32),
        }


class ResNetRecipe(ImageArrayRecipe):
    name = "resnet"
    paper = "He, Zhang, Ren, Sun 2015. Deep Residual Learning for Image Recognition. arXiv:1512.03385"
    summary = "CIFAR ResNets (depth 6n+2, option A/B shortcuts), SGD + step schedule; engine benchmark"
    config_class = ResNetConfig
    key_metrics = ("loss", "accuracy", "learning_rate")

    def __init__(self, config: ResNetConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._predict_classes = (None, None)

    # ----------------------------------------------------------------- model
    def learning_rate_schedule(self) -> StepDecayWithWarmup:
        c = self.config
        return StepDecayWithWarmup(
            c.learning_rate,
            boundaries=c.resolved_boundaries(),
            factor=c.lr_decay_factor,
            warmup_steps=c.resolved_warmup_steps(),
            warmup_learning_rate=c.warmup_learning_rate,
        )

    def build_model(self) -> ResNetClassifier:
        c = self.config
        network = resnet_cifar.build_resnet_cifar(
            c.depth,
            num_classes=image_data.NUM_CLASSES,
            input_shape=self.image_shape(),
            shortcut=c.shortcut,
            weight_decay=c.weight_decay,
            sync_bn=c.sync_bn,
            seed=c.seed,
        )
        optimizer = keras.optimizers.SGD(learning_rate=self.learning_rate_schedule(), momentum=c.momentum)
        model = ResNetClassifier(network, self.image_shape(), optimizer, name=f"resnet{c.depth}_classifier")
        model(tf.zeros((1, *self.image_shape())))
        optimizer.build(network.trainable_variables)
        model.pixel_mean.assign(self.data().pixel_mean)
        return model

    # ------------------------------------------------------------ evaluation
    def accuracy(self, model, split: str = "test") -> float:
        """Top-1 accuracy of `model` on `split` (no augmentation)."""
        cached_model, predict = self._predict_classes
        if cached_model is not model:  # one trace per model for every split and batch size
            spec = tf.TensorSpec([None, *self.image_shape()], tf.float32)
            predict = tf.function(
                lambda x: tf.argmax(model(x, training=False), -1, output_type=tf.int32), input_signature=[spec]
            )
            self._predict_classes = (model, predict)
        correct = total = 0
        for images, labels in self.build_dataset(split):
            correct += int(tf.reduce_sum(tf.cast(predict(images) == tf.cast(labels, tf.int32), tf.int32)))
            total += int(labels.shape[0])
        return correct / total

    def evaluate(self, model) -> dict[str, float]:
        """Test accuracy and error (the paper's Table 6 metric) and the same on validation."""
        out = {}
        splits = ("validation", "test") if len(self.data().x_val) else ("test",)
        for split in splits:
            acc = self.accuracy(model, split)
            prefix = "val" if split == "validation" else "test"
            out[f"{prefix}_accuracy"] = acc
            out[f"{prefix}_error"] = 1.0 - acc
        return out

    def on_train_end(self, model, run_dir, history):
        summary = {
            "trainable_params": int(sum(np.prod(v.shape) for v in model.network.trainable_variables)),
            **self.evaluate(model),
        }
        if history:
            summary["plot"] = plot_training_curves(history, os.path.join(run_dir, "plots", "training_curves.png"))
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default`: `images` float32 [N, H, W, 3], raw pixels in [0, 255] -> probabilities, classes.

        The per-pixel mean subtraction is inside the model; clients send raw pixels
        (grey digits: the grey value repeated in the 3 channels).
        """

        return classifier_endpoints(model, self.image_shape())

    def representative_dataset(self, num_samples: int = 64):
        return single_image_batches(self.data().x_train, num_samples)


def plot_training_curves(history, path: str) -> str:
    """Loss and training accuracy against the step, as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    steps = [row["step"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "cross_entropy"):
        if key in history[0]:
            ax_loss.plot(steps, [row[key] for row in history], label=key)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_acc.plot(steps, [row.get("accuracy", float("nan")) for row in history], label="train accuracy (augmented)")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.legend()
    fig.suptitle("ResNet training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
