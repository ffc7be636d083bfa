"""Improved Techniques for Training GANs (Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen 2016).

arXiv:1606.03498. Every technique of the paper is a switch of `ImprovedGanConfig`,
and each is usable on its own from `kerasnets`:

| technique (paper section) | config key | where |
|---|---|---|
| feature matching (3.1) | `feature_matching` | `kerasnets.losses.improved_gan.feature_matching_loss` |
| minibatch discrimination (3.2) | `minibatch_kernels` | `kerasnets.layers.MinibatchDiscrimination` |
| historical averaging (3.3) | `historical_averaging` | `kerasnets.losses.improved_gan.HistoricalAveraging` |
| one-sided label smoothing (3.4) | `real_label` | `kerasnets.losses.improved_gan.one_sided_label_smoothing_losses` |
| virtual batch normalisation (3.5) | `virtual_batch_norm` | `kerasnets.layers.VirtualBatchNormalization` |
| semi-supervised K+1 classifier (5) | `semi_supervised`, `labels_per_class` | `kerasnets.losses.improved_gan.semi_supervised_losses` |

The default run is the paper's MNIST semi-supervised experiment (feature
matching, K+1 discriminator, a few labels per class) on scikit-learn's 8x8
digits: 10 labels per class, the other training images unlabelled. In the
same run a *baseline* classifier of the same architecture is trained on the
labelled examples alone, so one command shows what the unlabelled data and
the GAN add (`evaluate` reports both test errors).

Discriminator loss (K+1 classes, l_{K+1} = 0, D(x) = Z/(Z+1), Z = sum_k exp l_k):

    L_D = L_sup + w L_unsup      (w = unsupervised_weight; the openai code halves L_unsup)
    L_sup   = -E_{(x,y)} log p(y | x, y <= K)
    L_unsup = -E_x [a log D(x) + (1-a) log(1 - D(x))] - E_z log(1 - D(G(z)))   (a = real_label)

Generator loss: feature matching || E f(x) - E f(G(z)) ||^2 on the last hidden
layer of D, or (feature_matching=False) -E_z log D(G(z)). Historical
averaging adds w || theta - mean of past theta ||^2 to both players.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import ConfigError, RecipeConfig, param
from kerasnets.data.image_classification import image_shape, load_image_classification
from kerasnets.data.streams import array_dataset
from kerasnets.losses import improved_gan as ig
from kerasnets.models.improved_gan import build_discriminator, build_generator
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.images import save_grid
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class ImprovedGanConfig(RecipeConfig):
    steps: int = param(3000, help="training steps", min=1)
    batch_size: int = param(100, help="unlabelled (and generated) examples per step, global", min=2)
    data: Literal["embedded", "mnist", "cifar10", "svhn_cropped"] = param(
        "embedded", help="embedded = scikit-learn digits; tfds mnist, cifar10, svhn_cropped"
    )
    labels_per_class: int = param(10, help="labelled training examples per class (paper MNIST: 10)", min=1)
    semi_supervised: bool = param(True, help="K+1 discriminator trained with the labelled examples")
    feature_matching: bool = param(True, help="generator matches the mean of D's last hidden layer")
    minibatch_kernels: int = param(0, help="minibatch discrimination kernels B (0: off; paper CIFAR: 100)", min=0)
    minibatch_kernel_dim: int = param(5, help="minibatch discrimination kernel dim C", min=1)
    historical_averaging: float = param(0.0, help="weight of ||theta - historical mean||^2 (0: off)", min=0.0)
    real_label: float = param(1.0, help="target for real data; 0.9 = one-sided label smoothing", min=0.5, max=1.0)
    virtual_batch_norm: bool = param(True, help="VBN in the generator (else batch norm)")
    reference_batch_size: int = param(100, help="VBN reference batch size (fixed z)", min=1)
    noise_dim: int = param(100, help="dimension of z ~ U(0, 1)", min=1)
    generator_hidden: tuple[int, ...] = param((500, 500), help="generator hidden layer sizes")
    discriminator_hidden: tuple[int, ...] = param((1000, 500, 250, 250, 250), help="discriminator hidden sizes")
    learning_rate: float = param(0.001, help="Adam learning rate (paper MNIST: 0.003; 0.001 is steadier on digits)", min=0.0)
    beta_1: float = param(0.5, help="Adam beta_1", min=0.0, max=1.0)
    unsupervised_weight: float = param(0.5, help="weight of L_unsup in L_D (openai/improved-gan code: 0.5)", min=0.0)
    sample_every: int = param(500, help="write a sample grid and test errors every N steps", min=1)
    gan_metrics: bool = param(True, help="evaluate also reports IS/FID/KID of samples (local classifier)")
    max_train: int = param(0, help="use at most this many training images (0: all)", min=0)

    def validate(self):
        if self.virtual_batch_norm and self.reference_batch_size > 4 * self.batch_size:
            raise ConfigError("reference_batch_size should not exceed 4 x batch_size")
        if not self.generator_hidden or not self.discriminator_hidden:
            raise ConfigError("generator_hidden and discriminator_hidden need at least one layer")


class ImprovedGanModel(RecipeModel):
    """Generator, K+1 discriminator, the labelled-only baseline, their optimizers and state."""

    def __init__(self, config: ImprovedGanConfig, shape, num_classes: int):
        super().__init__(name="improved_gan")
        self.config = config
        self.num_classes = num_classes
        logits = num_classes if config.semi_supervised else 1
        reference = config.reference_batch_size if config.virtual_batch_norm else 0
        self.generator = build_generator(
            config.noise_dim, shape, config.generator_hidden,
            virtual_batch_norm=config.virtual_batch_norm, reference_size=max(reference, 1),
        )
        self.discriminator = build_discriminator(
            shape, logits, config.discriminator_hidden,
            minibatch_kernels=config.minibatch_kernels, minibatch_kernel_dim=config.minibatch_kernel_dim,
        )
        self.baseline = build_discriminator(shape, num_classes, config.discriminator_hidden, name="baseline")
        self.noise_seed = keras.random.SeedGenerator(config.seed + 17)
        # VBN reference batch: one fixed z, drawn once (non-trainable, checkpointed).
        rng = np.random.RandomState(config.seed + 23)
        self.z_reference = self.add_weight(
            shape=(max(reference, 1), config.noise_dim), trainable=False, name="z_reference",
            initializer=keras.initializers.Constant(rng.uniform(size=(max(reference, 1), config.noise_dim))),
        )
        self.reference_rows = reference

        def adam():
            return keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)

        self.d_optimizer, self.g_optimizer, self.baseline_optimizer = adam(), adam(), adam()
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.baseline_optimizer.build(self.baseline.trainable_variables)
        self.d_history = self.g_history = None
        if config.historical_averaging > 0:
            self.d_history = ig.HistoricalAveraging(config.historical_averaging, name="d_history")
            self.d_history.track(self.discriminator.trainable_variables)
            self.g_history = ig.HistoricalAveraging(config.historical_averaging, name="g_history")
            self.g_history.track(self.generator.trainable_variables)

    def call(self, images, training=False):
        return self.discriminator(images, training=training)[1]

    def generate(self, z, training=False):
        """G(z); in training, VBN's reference rows are prepended and dropped again."""
        if training and self.reference_rows:
            out = self.generator(tf.concat([self.z_reference, z], axis=0), training=True)
            return out[self.reference_rows :]
        return self.generator(z, training=training)

    def _sample_z(self, n):
        return tf.random.stateless_uniform([n, self.config.noise_dim], seed=replica_seed(self.noise_seed))

    def _d_losses(self, logits_lab, labels, logits_unl, logits_fake):
        cfg = self.config
        if cfg.semi_supervised:
            supervised, _ = ig.semi_supervised_losses(logits_lab, labels, logits_unl, logits_fake)
            # L_unsup written as the binary CE of D(x) = sigmoid(logsumexp l) so the
            # one-sided smoothing applies to it; real_label = 1 gives semi_supervised_losses' term.
            real_logit = tf.reduce_logsumexp(logits_unl, axis=-1)
            fake_logit = tf.reduce_logsumexp(logits_fake, axis=-1)
        else:
            supervised = tf.constant(0.0)
            real_logit, fake_logit = logits_unl[:, 0], logits_fake[:, 0]
        real_loss, fake_loss = ig.one_sided_label_smoothing_losses(real_logit, fake_logit, cfg.real_label)
        return supervised, real_loss + fake_loss

    def train_step(self, data):
        cfg = self.config
        x_lab, y_lab, x_unl = data["labeled_images"], data["labels"], data["unlabeled_images"]
        n = tf.shape(x_unl)[0]

        # Discriminator: L_sup + w L_unsup (+ historical averaging).
        fake = self.generate(self._sample_z(n), training=True)
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            _, logits_lab = self.discriminator(x_lab, training=True)
            _, logits_unl = self.discriminator(x_unl, training=True)
            _, logits_fake = self.discriminator(fake, training=True)
            supervised, unsupervised = self._d_losses(logits_lab, y_lab, logits_unl, logits_fake)
            d_loss = supervised + cfg.unsupervised_weight * unsupervised
            if self.d_history is not None:
                d_loss += self.d_history(d_vars)
        minimize(tape, d_loss, d_vars, self.d_optimizer, model=self.discriminator)

        # Generator: feature matching or -log D(G(z)) (+ historical averaging).
        g_vars = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            fake = self.generate(self._sample_z(n), training=True)
            fake_features, fake_logits = self.discriminator(fake, training=True)
            if cfg.feature_matching:
                real_features, _ = self.discriminator(x_unl, training=True)
                g_loss = ig.feature_matching_loss(tf.stop_gradient(real_features), fake_features)
            elif cfg.semi_supervised:
                g_loss = ig.k_plus_one_generator_loss(fake_logits)
            else:
                g_loss = tf.reduce_mean(tf.nn.softplus(-fake_logits[:, 0]))
            if self.g_history is not None:
                g_loss += self.g_history(g_vars)
        minimize(tape, g_loss, g_vars, self.g_optimizer, model=self.generator)
        if self.d_history is not None:
            self.d_history.record(d_vars)
            self.g_history.record(g_vars)

        # Baseline: the same classifier on the labelled examples alone.
        b_vars = self.baseline.trainable_variables
        with tf.GradientTape() as tape:
            _, logits = self.baseline(x_lab, training=True)
            baseline_loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y_lab, logits, from_logits=True)
            )
        minimize(tape, baseline_loss, b_vars, self.baseline_optimizer, model=self.baseline)

        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits_lab, -1, output_type=tf.int32), y_lab), tf.float32))
        return {
            "d_loss": d_loss,
            "loss_supervised": supervised,
            "loss_unsupervised": unsupervised,
            "g_loss": g_loss,
            "labeled_accuracy": accuracy,
            "baseline_loss": baseline_loss,
        }


class ImprovedGanRecipe(Recipe):
    name = "improved_gan"
    paper = "Salimans et al. 2016. Improved Techniques for Training GANs. arXiv:1606.03498"
    summary = "semi-supervised K+1 GAN with feature matching, minibatch discrimination, HA, smoothing, VBN"
    config_class = ImprovedGanConfig
    key_metrics = ("loss_supervised", "loss_unsupervised", "g_loss", "baseline_loss")

    # ------------------------------------------------------------------ data
    def _arrays(self):
        if not hasattr(self, "_cache"):
            cfg = self.config
            (x, y), (xt, yt) = load_image_classification(
                cfg.data, data_dir=cfg.data_dir, download=cfg.download, seed=cfg.seed,
                max_train=cfg.max_train or None,
            )
            num_classes = int(max(y.max(), yt.max())) + 1
            rng = np.random.RandomState(cfg.seed)
            labeled = []
            for c in range(num_classes):
                idx = np.flatnonzero(y == c)
                if len(idx) < cfg.labels_per_class:
                    raise ConfigError(
                        f"labels_per_class={cfg.labels_per_class} but class {c} has only {len(idx)} training images"
                    )
                labeled.extend(rng.choice(idx, cfg.labels_per_class, replace=False))
            labeled = np.sort(np.array(labeled))
            self._cache = dict(x=x, y=y, x_test=xt, y_test=yt, labeled=labeled, num_classes=num_classes)
        return self._cache

    def build_dataset(self, split="train", start_step=0):
        data = self._arrays()
        if split != "train":
            return tf.data.Dataset.from_tensor_slices((data["x_test"], data["y_test"])).batch(256)
        cfg = self.config
        x_lab, y_lab = data["x"][data["labeled"]], data["y"][data["labeled"]]
        labeled_batch = min(cfg.batch_size, len(x_lab))
        labeled = array_dataset((x_lab, y_lab), labeled_batch, cfg.seed + 1, start_step)
        unlabeled = array_dataset(data["x"], cfg.batch_size, cfg.seed + 2, start_step)
        return tf.data.Dataset.zip((labeled, unlabeled)).map(
            lambda lab, unl: {"labeled_images": lab[0], "labels": lab[1], "unlabeled_images": unl}
        )

    # ----------------------------------------------------------------- model
    def build_model(self):
        keras.utils.set_random_seed(self.config.seed)
        data = self._arrays()
        model = ImprovedGanModel(self.config, tuple(data["x"].shape[1:]), data["num_classes"])
        self._fixed_z = np.random.RandomState(self.config.seed + 5).uniform(size=(100, self.config.noise_dim))
        return model

    # ------------------------------------------------------------- evaluation
    def _test_errors(self, model):
        data = self._arrays()
        errors = {}
        for label, net in (("test_error", model.discriminator), ("baseline_test_error", model.baseline)):
            logits = np.concatenate(
                [np.asarray(net(data["x_test"][i : i + 512], training=False)[1]) for i in range(0, len(data["x_test"]), 512)]
            )
            errors[label] = float(np.mean(np.argmax(logits, -1) != data["y_test"]))
        return errors

    def on_log(self, model, step, writer):
        if step % self.config.sample_every:
            return
        if self.config.semi_supervised:
            for key, value in self._test_errors(model).items():
                tf.summary.scalar(key, value)
        images = np.asarray(model.generate(tf.constant(self._fixed_z, tf.float32)))
        tf.summary.image("samples", images[:16], max_outputs=16)

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.plots import plot_history

        images = np.asarray(model.generate(tf.constant(self._fixed_z, tf.float32)))
        save_grid(images, os.path.join(run_dir, "samples", "final.png"), scale=4)
        plot_history(
            history,
            ["loss_supervised", "loss_unsupervised", "g_loss", "baseline_loss", "labeled_accuracy"],
            os.path.join(run_dir, "plots", "losses.png"),
            title="improved_gan",
        )
        return self._test_errors(model) if self.config.semi_supervised else {}

    def evaluate(self, model):
        results = self._test_errors(model) if self.config.semi_supervised else {}
        if self.config.gan_metrics:
            from kerasnets.metrics import gan as gan_metrics

            data = self._arrays()
            classifier = gan_metrics.train_feature_classifier(
                data["x"], data["y"], data["num_classes"], epochs=30, seed=self.config.seed
            )
            z = np.random.RandomState(self.config.seed + 99).uniform(size=(len(data["x_test"]), self.config.noise_dim))
            fakes = np.asarray(model.generator.predict(z.astype("float32"), batch_size=256, verbose=0))
            results.update(gan_metrics.evaluate_samples(classifier, data["x_test"], fakes, seed=self.config.seed))
        return results

    # ----------------------------------------------------------------- export
    def export_endpoints(self, model):
        shape = tuple(self._arrays()["x"].shape[1:])

        def classify(images):
            logits = model.discriminator(images, training=False)[1]
            out = {"logits": logits}
            if self.config.semi_supervised:
                out["probabilities"] = tf.nn.softmax(logits)
                out["classes"] = tf.argmax(logits, axis=-1, output_type=tf.int32)
                out["real_probability"] = ig.k_plus_one_real_probability(logits)
            else:
                out["real_probability"] = tf.sigmoid(logits[:, 0])
            return out

        def generate(z):
            return {"images": model.generator(z, training=False)}

        return {
            "serving_default": Endpoint(classify, [tf.TensorSpec((None, *shape), tf.float32, name="images")]),
            "generate": Endpoint(generate, [tf.TensorSpec((None, self.config.noise_dim), tf.float32, name="z")]),
        }

    def representative_dataset(self, num_samples=64):
        x = self._arrays()["x"]
        for i in range(min(num_samples, len(x))):
            yield {"images": x[i : i + 1]}
