"""Generative Adversarial Trainer (Lee, Han, Lee 2017, arXiv 1705.03387): generator and training model.

The generator maps the classifier's input gradient `Delta = grad_x L_F(x, y)`
to a bounded perturbation `G(Delta)` (`BoundedPerturbation`: tanh output). It
sees `Delta` divided by its per-example max |.| (our choice: the raw gradient
shrinks by orders of magnitude as the classifier trains, the normalised one
keeps the generator's input scale fixed; the sign pattern is kept).

`GATTrainer.train_step` alternates, on each batch:

1. `Delta` from the current classifier (treated as a constant input);
2. a generator step on `L_G = c_g ||G||^2 - L_F(clip(x + G), y)`;
3. a classifier step on `L_C = alpha L_F(x, y) + (1 - alpha) L_F(clip(x + G), y)`
   with the updated generator's perturbation (no gradient into G);
4. optionally a *baseline* classifier of the same architecture and initial
   weights trained on `L_F(x, y)` only, for the robustness comparison.

`x + G` is clipped to the image box so adversarial images stay valid images.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.layers.bounded_perturbation import BoundedPerturbation
from kerasnets.losses.gat import gat_classifier_loss, gat_generator_loss
from kerasnets.models.small_classifiers import sparse_ce
from kerasnets.optimization import minimize
from kerasnets.models.recipe_model import RecipeModel


def build_gat_generator(
    input_shape, filters: tuple[int, ...] = (32, 32), *, epsilon: float = 0.1, norm: str = "linf", name="gat_generator"
) -> keras.Model:
    """Conv generator `Delta -> G(Delta)`: 3x3 ReLU convs, a linear 3x3 conv to the image channels,
    then `BoundedPerturbation(epsilon, norm)`. Fully convolutional (any image size)."""
    if not filters or any(f < 1 for f in filters):
        raise ValueError(f"filters must be positive, got {filters}")
    inputs = keras.Input(shape=tuple(input_shape), name="gradient")
    h = inputs
    for i, f in enumerate(filters):
        h = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv_{i}")(h)
    h = keras.layers.Conv2D(input_shape[-1], 3, padding="same", name="to_image")(h)
    out = BoundedPerturbation(epsilon, norm, name="bounded_perturbation")(h)
    return keras.Model(inputs, out, name=name)


def input_gradient(classifier, images, labels):
    """`grad_x L_F(x, y)` per example (the sum over the batch separates per example)."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(sparse_ce(labels, classifier(images, training=False)))
    return tape.gradient(loss, images)


def normalize_gradient(delta):
    """`Delta / max|Delta|` per example (zero gradients stay zero)."""
    axes = list(range(1, len(delta.shape)))
    scale = tf.reduce_max(tf.abs(delta), axis=axes, keepdims=True)
    return delta / tf.maximum(scale, 1e-12)


class GATTrainer(RecipeModel):
    """Classifier + generator (+ optional baseline classifier) trained by alternating steps."""

    def __init__(
        self,
        classifier,
        generator,
        baseline=None,
        *,
        alpha: float = 0.5,
        c_g: float = 1.0,
        learning_rate: float = 1e-3,
        generator_learning_rate: float = 1e-3,
        clip=(0.0, 1.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if c_g < 0:
            raise ValueError(f"c_g must be >= 0, got {c_g}")
        self.classifier = classifier
        self.generator = generator
        self.baseline = baseline
        self.alpha, self.c_g, self.clip = float(alpha), float(c_g), tuple(clip)
        self.optimizer_c = keras.optimizers.Adam(learning_rate, name="adam_classifier")
        self.optimizer_c.build(classifier.trainable_variables)
        self.g_optimizer = keras.optimizers.Adam(generator_learning_rate, name="adam_generator")
        self.g_optimizer.build(generator.trainable_variables)
        self.optimizer_b = None
        if baseline is not None:
            self.optimizer_b = keras.optimizers.Adam(learning_rate, name="adam_baseline")
            self.optimizer_b.build(baseline.trainable_variables)

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def perturbation(self, images, labels):
        """`G(Delta)` for a batch (Delta from the current classifier, normalised)."""
        images = tf.convert_to_tensor(images, tf.float32)
        delta = tf.stop_gradient(normalize_gradient(input_gradient(self.classifier, images, labels)))
        return self.generator(delta, training=False)

    def _adv(self, images, pert):
        return tf.clip_by_value(images + pert, self.clip[0], self.clip[1])

    # No tensor-dependent Python control flow inside: skip AutoGraph's (slow) source conversion.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, batch):
        images, labels = batch
        images = tf.convert_to_tensor(images, tf.float32)
        delta = tf.stop_gradient(normalize_gradient(input_gradient(self.classifier, images, labels)))

        # generator: maximise the classifier's loss on x + G, pay c_g ||G||^2
        with tf.GradientTape() as tape:
            pert = self.generator(delta, training=True)
            ce_adv_g = sparse_ce(labels, self.classifier(self._adv(images, pert), training=False))
            loss_g = gat_generator_loss(ce_adv_g, pert, self.c_g)
        minimize(tape, loss_g, self.generator.trainable_variables, self.g_optimizer, model=self.generator)

        # classifier: clean and perturbed images (perturbation of the updated generator)
        pert = tf.stop_gradient(self.generator(delta, training=False))
        adv = self._adv(images, pert)
        with tf.GradientTape() as tape:
            logits = self.classifier(images, training=True)
            ce_clean = sparse_ce(labels, logits)
            ce_adv = sparse_ce(labels, self.classifier(adv, training=True))
            loss_c = gat_classifier_loss(ce_clean, ce_adv, self.alpha)
        minimize(tape, loss_c, self.classifier.trainable_variables, self.optimizer_c, model=self.classifier)

        labels_i = tf.cast(labels, tf.int32)
        flat = tf.reshape(pert, [tf.shape(pert)[0], -1])
        logs = {
            "loss_classifier": loss_c,
            "loss_generator": loss_g,
            "ce_clean": tf.reduce_mean(ce_clean),
            "ce_adversarial": tf.reduce_mean(ce_adv),
            "acc_clean": tf.reduce_mean(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == labels_i, tf.float32)),
            "perturbation_l2": tf.reduce_mean(tf.norm(flat, axis=1)),
        }
        if self.baseline is not None:
            with tf.GradientTape() as tape:
                b_logits = self.baseline(images, training=True)
                loss_b = tf.reduce_mean(sparse_ce(labels, b_logits))
            minimize(tape, loss_b, self.baseline.trainable_variables, self.optimizer_b, model=self.baseline)
            logs["loss_baseline"] = loss_b
        return logs
