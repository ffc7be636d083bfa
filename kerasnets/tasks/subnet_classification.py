"""Shared recipe machinery of `edge_popup` and `supermask`: a masked random-weight Conv net
trained next to the same architecture trained densely, in one run.

Per step, on the same global batch (one replica's share here):

    subnet:  L_s = CE(f_mask(x), y) + wd/2 * ||scores||^2      -> SGD on the scores only
    dense:   L_d = CE(f_dense(x), y) + wd_d/2 * ||W||^2          -> SGD on the weights

(both coupled L2, as PyTorch's ``SGD(weight_decay=wd)`` used by the reference
code), each with momentum and a cosine learning-rate decay over `steps`:

    lr_t = lr_0 * 0.5 * (1 + cos(pi * t / steps))

The reference (allenai/hidden-networks `utils/schedulers.py cosine_lr`) steps
the cosine per epoch; here it is per iteration (the same curve sampled more
finely). Keras' SGD keeps ``v <- m v - lr g`` where PyTorch keeps
``v <- m v + g`` and multiplies by the current lr; they coincide for a constant
lr and differ only slightly under the slowly varying cosine.

Data: `kerasnets.data.image_classification` (embedded scikit-learn digits upscaled to 3
channels, or tfds ``cifar10``), per-channel normalisation with the training
set's mean/std inside the model (exports take raw pixels in [0, 255]),
pad + random crop (+ flip for CIFAR-10) augmentation as the reference's
CIFAR loader.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar, Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import image_classification as image_data
from kerasnets.errors import ConfigError
from kerasnets.export.pruned import to_pruned_model
from kerasnets.layers import _subnet
from kerasnets.models import conv_subnet
from kerasnets.optimization import minimize
from kerasnets.tasks.image_classification import ImageArrayRecipe, classifier_endpoints, single_image_batches
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class SubnetConfig(RecipeConfig):
    """Keys shared by the edge-popup and supermask recipes."""

    steps: int = param(400, help="training iterations (reference: 100 epochs of CIFAR-10 at batch 128)", min=1)
    batch_size: int = param(128, help="global batch size (reference: 128)", min=1)
    depth: int = param(6, help="Conv2/4/6/8 of Frankle & Carbin: 2, 4, 6 or 8", min=2, max=8)
    width_mult: float = param(0.5, help="width multiplier of every layer (reference: 1.0)", min=0.01, max=4.0)
    data: Literal["embedded", "cifar10"] = param(
        "embedded", help="embedded: scikit-learn digits, 3 channels (no download); cifar10: tensorflow-datasets"
    )
    image_size: Optional[int] = param(
        None, help="image side; None: 8 (native) for embedded digits, 32 for cifar10 (must be 32)", min=8, max=64
    )
    augment: bool = param(True, help="pad + random crop (+ flip for cifar10) on training batches")
    weight_init: Literal["kaiming_normal", "signed_kaiming_constant", "unsigned_kaiming_constant"] = param(
        "signed_kaiming_constant", help="frozen random weights of the subnet (untruncated)"
    )
    scale_fan: bool = param(True, help="scaled init: std sqrt(2 / (fan_in * kept fraction))")
    momentum: float = param(0.9, help="SGD momentum (both networks)", min=0.0, max=1.0)
    weight_decay: float = param(1e-4, help="coupled L2 on the scores: loss += wd/2 * sum(s^2)", min=0.0)
    baseline: bool = param(True, help="also train the same architecture densely in the same run")
    dense_learning_rate: float = param(
        0.01, help="initial lr of the dense baseline (reference dense conv6 config: 0.01)", min=0.0
    )
    dense_weight_decay: float = param(1e-4, help="coupled L2 on the dense baseline's kernels", min=0.0)

    def validate(self) -> None:
        super().validate()
        try:
            blocks = conv_subnet.blocks_for_depth(self.depth)
        except ValueError as exc:
            raise ConfigError(f"bad value for 'depth': {exc}") from None
        if self.data == "cifar10" and self.image_size not in (None, image_data.CIFAR_SIZE):
            raise ConfigError(f"bad value for 'image_size': cifar10 images are 32x32, got {self.image_size}")
        size = self.resolved_image_size()
        if size % 2**blocks:
            raise ConfigError(
                f"bad value for 'image_size': Conv{self.depth} halves the image {blocks} times, "
                f"so the side must be divisible by {2**blocks}; got {size}"
            )

    def resolved_image_size(self) -> int:
        if self.image_size is not None:
            return self.image_size
        return image_data.CIFAR_SIZE if self.data == "cifar10" else 8


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def _accuracy(labels, logits):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))


class SubnetVsDenseClassifier(RecipeModel):
    """Holds the masked network, optionally its dense twin, and their SGD optimizers."""

    def __init__(self, subnet, subnet_optimizer, dense=None, dense_optimizer=None, **kwargs):
        super().__init__(**kwargs)
        self.subnet = subnet
        self.subnet_optimizer = subnet_optimizer
        self.dense = dense
        self.dense_optimizer = dense_optimizer

    def call(self, images, training=False):
        return self.subnet(images, training=training)

    def _step(self, network, optimizer, images, labels):
        with tf.GradientTape() as tape:
            logits = network(images, training=True)
            cross_entropy = _cross_entropy(labels, logits)
        # + the coupled L2 terms (network.losses), replica scaling, apply
        loss = minimize(tape, cross_entropy, network.trainable_variables, optimizer, model=network)
        return loss, cross_entropy, _accuracy(labels, logits)

    def train_step(self, batch):
        images, labels = batch
        labels = tf.cast(labels, tf.int32)
        lr = tf.cast(self.subnet_optimizer.learning_rate, tf.float32)
        loss, ce, acc = self._step(self.subnet, self.subnet_optimizer, images, labels)
        logs = {"loss": loss, "cross_entropy": ce, "accuracy": acc, "learning_rate": lr}
        if self.dense is not None:
            d_loss, _, d_acc = self._step(self.dense, self.dense_optimizer, images, labels)
            logs.update({"dense_loss": d_loss, "dense_accuracy": d_acc})
        return logs


def plot_subnet_vs_dense(history, path: str, title: str) -> str:
    """Training loss and accuracy of the subnetwork (and the dense baseline) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    steps = [row["step"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("loss", "subnetwork"), ("dense_loss", "dense baseline")):
        if key in history[0]:
            ax_loss.plot(steps, [row[key] for row in history], label=label)
    for key, label in (("accuracy", "subnetwork"), ("dense_accuracy", "dense baseline")):
        if key in history[0]:
            ax_acc.plot(steps, [row[key] for row in history], label=label)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend()
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("training accuracy (augmented batches)")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class SubnetRecipeBase(ImageArrayRecipe):
    """Data, model pair, evaluation and pruned export; subclasses set the subnet layer type."""

    conv_type: ClassVar[str] = ""
    key_metrics = ("loss", "accuracy", "dense_accuracy", "learning_rate")

    def __init__(self, config=None):
        super().__init__(config)
        self.config.validate()

    # ----------------------------------------------------------------- model
    def subnet_options(self) -> dict:
        """Extra `build_conv_net` arguments of the subnet (k, eval_mask, ...)."""
        return {}

    def subnet_learning_rate(self) -> float:
        raise NotImplementedError  # pragma: no cover - abstract

    def _normalizer(self):
        x = self.data().x_train
        mean = x.mean(axis=(0, 1, 2))
        var = np.maximum(x.var(axis=(0, 1, 2)), 1e-6)
        return keras.layers.Normalization(axis=-1, mean=mean.tolist(), variance=var.tolist(), name="normalize")

    def _network(self, conv_type, weight_decay, seed, **options):
        c = self.config
        return conv_subnet.build_conv_net(
            c.depth,
            conv_type=conv_type,
            input_shape=self.image_shape(),
            num_classes=self.data().num_classes,
            width_mult=c.width_mult,
            weight_init=c.weight_init,
            scale_fan=c.scale_fan,
            weight_decay=weight_decay,
            preprocessing=self._normalizer(),
            seed=seed,
            **options,
        )

    def _sgd(self, learning_rate):
        c = self.config
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=c.steps)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=c.momentum)

    def build_model(self) -> SubnetVsDenseClassifier:
        c = self.config
        subnet = self._network(self.conv_type, c.weight_decay, c.seed, **self.subnet_options())
        subnet_opt = self._sgd(self.subnet_learning_rate())
        dense = dense_opt = None
        if c.baseline:
            dense = self._network("dense", c.dense_weight_decay, c.seed + 7919)
            dense_opt = self._sgd(c.dense_learning_rate)
        model = SubnetVsDenseClassifier(subnet, subnet_opt, dense, dense_opt, name=f"{self.name}_conv{c.depth}")
        model(tf.zeros((1, *self.image_shape())))
        subnet_opt.build(subnet.trainable_variables)
        if dense is not None:
            dense(tf.zeros((1, *self.image_shape())))
            dense_opt.build(dense.trainable_variables)
        return model

    def checkpoint_items(self, model):
        items = {"model": model, "subnet_optimizer": model.subnet_optimizer}
        if model.dense_optimizer is not None:
            items["dense_optimizer"] = model.dense_optimizer
        return items

    # ------------------------------------------------------------ evaluation
    def accuracy(self, network, split: str = "test", training: bool = False) -> float:
        """Top-1 accuracy of `network` on `split` (`training=True`: a sampled supermask)."""
        predict = tf.function(lambda x: tf.argmax(network(x, training=training), -1, output_type=tf.int32))
        correct = total = 0
        for images, labels in self.build_dataset(split):
            correct += int(tf.reduce_sum(tf.cast(predict(images) == tf.cast(labels, tf.int32), tf.int32)))
            total += int(labels.shape[0])
        return correct / total

    @staticmethod
    def kept_fraction(network) -> float:
        """Share of the subnet's weights used at inference (over all subnet layers)."""
        kept = total = 0
        for layer in network.layers:
            if isinstance(layer, _subnet.SubnetLayer):
                mask = keras.ops.convert_to_numpy(layer.inference_mask())
                kept += float(np.count_nonzero(mask))
                total += mask.size
        return kept / total if total else float("nan")

    def evaluate(self, model) -> dict[str, float]:
        """Test accuracy of the random-weight subnetwork, of the dense baseline, and chance."""
        out = {
            "test_accuracy": self.accuracy(model.subnet),
            "kept_fraction": self.kept_fraction(model.subnet),
            "chance_accuracy": 1.0 / self.data().num_classes,
        }
        if model.dense is not None:
            out["dense_test_accuracy"] = self.accuracy(model.dense)
        return out

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        summary["trainable_params"] = int(sum(np.prod(v.shape) for v in model.subnet.trainable_variables))
        summary["frozen_weights"] = int(sum(np.prod(v.shape) for v in model.subnet.non_trainable_weights))
        if history:
            title = f"{self.name}: Conv{self.config.depth} subnetwork of random weights vs dense"
            path = os.path.join(run_dir, "plots", "training_curves.png")
            summary["plot"] = plot_subnet_vs_dense(history, path, title)
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default`: `images` float32 [N, H, W, 3] raw pixels in [0, 255] -> probabilities, classes.

        Served by the plain pruned network (`to_pruned_model`: Dense/Conv2D
        kernels ``W * mask``), so neither TF Serving nor TFLite needs kerasnets.
        Grey digits: send the grey value repeated in the 3 channels.
        """
        return classifier_endpoints(to_pruned_model(model.subnet), self.image_shape())

    def representative_dataset(self, num_samples: int = 64):
        return single_image_batches(self.data().x_train, num_samples)
