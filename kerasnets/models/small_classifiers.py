"""Small image classifiers (logits out) for the adversarial-example recipes, and a joint trainer.

Two architectures that differ in kind, so adversarial examples can be
transferred from one to the other (Szegedy et al. 2013, section 4.3):

* `build_mlp_classifier`: Flatten -> Dense(ReLU) x len(hidden) -> Dense(logits),
  Szegedy's "FC100-100-10" when `hidden=(100, 100)`;
* `build_cnn_classifier`: 3x3 conv (ReLU) stacks with stride-2 downsampling,
  a Dense(ReLU) head and Dense(logits).

Both return *logits*; the exported serving function applies the softmax.
Optional `l2` adds a coupled L2 weight penalty (`kernel_regularizer`), the
"lambda" of Szegedy's FC10(lambda) models.

`JointClassifierTrainer` trains several classifiers on the same batches (one
optimizer each) through the engine's `train_step` contract.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.optimization import minimize
from kerasnets.models.recipe_model import RecipeModel


def _regularizer(l2):
    return keras.regularizers.L2(l2) if l2 else None


def build_mlp_classifier(
    input_shape,
    num_classes: int = 10,
    hidden: tuple[int, ...] = (100, 100),
    *,
    l2: float = 0.0,
    name: str = "mlp_classifier",
) -> keras.Model:
    """Fully connected classifier on flattened pixels, returning logits."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden sizes must be >= 1, got {hidden}")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    h = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="relu", kernel_regularizer=_regularizer(l2), name=f"dense_{i}")(h)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=_regularizer(l2), name="logits")(h)
    return keras.Model(inputs, logits, name=name)


def build_cnn_classifier(
    input_shape,
    num_classes: int = 10,
    filters: tuple[int, ...] = (16, 32),
    dense: int = 64,
    *,
    l2: float = 0.0,
    name: str = "cnn_classifier",
) -> keras.Model:
    """Conv classifier: per stage a 3x3 conv (ReLU) then a stride-2 3x3 conv (ReLU); logits out."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not filters or any(f < 1 for f in filters) or dense < 1:
        raise ValueError(f"filters and dense must be positive, got filters={filters}, dense={dense}")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    h = inputs
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", kernel_regularizer=_regularizer(l2), name=f"conv_{i}a")(h)
        h = keras.layers.Conv2D(
            f, 3, strides=2, padding="same", activation="relu", kernel_regularizer=_regularizer(l2), name=f"conv_{i}b"
        )(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(dense, activation="relu", kernel_regularizer=_regularizer(l2), name="dense")(h)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=_regularizer(l2), name="logits")(h)
    return keras.Model(inputs, logits, name=name)


def build_classifier(kind: str, input_shape, num_classes: int = 10, *, l2: float = 0.0, name=None) -> keras.Model:
    """`kind` = "mlp" or "cnn", with the default sizes above."""
    if kind == "mlp":
        return build_mlp_classifier(input_shape, num_classes, l2=l2, name=name or "mlp_classifier")
    if kind == "cnn":
        return build_cnn_classifier(input_shape, num_classes, l2=l2, name=name or "cnn_classifier")
    raise ValueError(f"unknown classifier kind '{kind}'; expected 'mlp' or 'cnn'")


def sparse_ce(labels, logits):
    """Per-example softmax cross-entropy from logits."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


class JointClassifierTrainer(RecipeModel):
    """Trains classifiers `{name: model}` on the same `(images, labels)` batches.

    Each classifier has its own Adam optimizer (built up front, as the engine
    requires). `train_step` returns `loss_<name>` and `acc_<name>` per classifier.
    """

    def __init__(self, classifiers: dict, learning_rate: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        if not classifiers:
            raise ValueError("JointClassifierTrainer needs at least one classifier")
        self.classifier_names = tuple(classifiers)
        self.classifiers = dict(classifiers)
        self.optimizers = {}
        for key, clf in classifiers.items():
            opt = keras.optimizers.Adam(learning_rate, name=f"adam_{key}")
            opt.build(clf.trainable_variables)
            self.optimizers[key] = opt

    def call(self, inputs, training=False):
        return {k: self.classifiers[k](inputs, training=training) for k in self.classifier_names}

    # No tensor-dependent Python control flow inside: skip AutoGraph's (slow) source conversion.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, batch):
        images, labels = batch
        logs = {}
        for key in self.classifier_names:
            clf = self.classifiers[key]
            with tf.GradientTape() as tape:
                logits = clf(images, training=True)
                loss = tf.reduce_mean(sparse_ce(labels, logits))
            minimize(tape, loss, clf.trainable_variables, self.optimizers[key], model=clf)
            pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
            logs[f"loss_{key}"] = loss
            logs[f"acc_{key}"] = tf.reduce_mean(tf.cast(tf.equal(pred, tf.cast(labels, tf.int32)), tf.float32))
        return logs


def accuracy(model, images, labels, batch_size: int = 512) -> float:
    """Top-1 accuracy of a logits model on in-memory arrays."""
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model(images[i : i + batch_size], training=False)
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels[i : i + batch_size], tf.int32)))
    return correct / max(len(images), 1)


def predict_labels(model, images, batch_size: int = 512):
    """argmax labels (NumPy int32) of a logits model."""
    import numpy as np

    out = [
        np.argmax(keras.ops.convert_to_numpy(model(images[i : i + batch_size], training=False)), -1)
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out).astype("int32") if out else np.zeros((0,), "int32")
