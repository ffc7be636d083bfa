"""Batch Normalization's MNIST experiment (Ioffe & Szegedy 2015, arXiv:1502.03167, section 4.1, Figure 1).

Two fully connected networks with 3 hidden layers of 100 sigmoid units and a
10-way softmax output, one without and one with batch normalization, are
trained side by side on the *same* mini-batches with the same SGD:

    without BN:  h_l = sigmoid(W_l h_{l-1} + b_l)
    with BN:     h_l = sigmoid(BN(W_l h_{l-1})),                       (section 3.2: b is dropped,
                 BN(z) = gamma * (z - mu_B) / sqrt(var_B + eps) + beta   beta takes its role)
    both:        logits = W_4 h_3 + b_4,  L = cross-entropy(softmax(logits), y)
    update:      w <- w - lr * dL/dw   (plain SGD; one optimizer over both nets'
                 disjoint variables, so each net gets its own gradient)

Weights start as "small random Gaussian values" (`init_stddev`). The paper
trains 50k steps of 60 examples; it does not give the learning rate. Figure 1
shows (a) the test accuracy of both nets against the training step and
(b, c) the 15th, 50th and 85th percentiles of the input to one sigmoid of the
last hidden layer over training, without (b) and with (c) BN: with BN the
distribution is stable, without it the percentiles drift.

Here every `log_every` steps the train step also measures, on a fixed subset
of the test set (`curve_examples`), both nets' accuracy and the percentiles of
the input to sigmoid unit `tracked_unit` of the last hidden layer (inference
mode for the accuracy; the BN net's sigmoid input with the probe set's own batch
statistics, as a sigmoid sees it in training). They are ordinary step metrics,
so they go to TensorBoard and `metrics.jsonl` with the losses and survive a
resumed run; `on_train_end` draws Figure 1 from them into
`<run_dir>/plots/figure1.png`. `evaluate` reports both nets' accuracy on the
whole test set. The export (`serving_default`) is the BN net: `images`
`[N, H, W, 1]` in [0, 1] -> `probabilities` `[N, 10]`.

Data: `embedded` = scikit-learn's 8x8 digits (64 inputs, no download);
`mnist` = tensorflow-datasets MNIST (784 inputs) from `data_dir`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import streams
from kerasnets.data.image_classification import image_shape, load_image_classification
from kerasnets.errors import ConfigError
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel

PERCENTILES = (15, 50, 85)
NUM_CLASSES = 10
NETS = ("no_bn", "bn")


@dataclasses.dataclass
class BatchNormConfig(RecipeConfig):
    """Defaults: the paper's network and batch size, sized for a CPU run on the embedded digits."""

    steps: int = param(3000, help="training steps (paper: 50000)", min=1)
    batch_size: int = param(60, help="global batch size (paper: 60)", min=1)
    learning_rate: float = param(0.5, help="SGD learning rate (not given in the paper)", min=0.0)
    hidden_units: int = param(100, help="units per hidden layer (paper: 100)", min=1)
    hidden_layers: int = param(3, help="sigmoid hidden layers (paper: 3)", min=1)
    init_stddev: float = param(0.1, help="stddev of the Gaussian weight init ('small random Gaussian values')", min=0.0)
    bn_momentum: float = param(0.99, help="BN moving-average momentum (inference statistics)", min=0.0, max=1.0)
    bn_epsilon: float = param(1e-3, help="BN epsilon", min=0.0)
    sync_bn: bool = param(
        True, help="BN statistics over the global batch when it is split over replicas (as on one device)"
    )
    tracked_unit: int = param(0, help="sigmoid unit of the last hidden layer whose input is tracked", min=0)
    curve_examples: int = param(1000, help="test examples for the accuracy / percentile curves", min=1)
    log_every: int = param(50, help="log (and measure the Figure 1 curves) every N steps", min=1)
    data: Literal["embedded", "mnist"] = param(
        "embedded", help="embedded: scikit-learn digits (no download); mnist: tensorflow-datasets"
    )
    max_train: Optional[int] = param(None, help="use at most this many training images", min=1)
    max_test: Optional[int] = param(None, help="use at most this many test images", min=1)

    def validate(self) -> None:
        super().validate()
        if self.tracked_unit >= self.hidden_units:
            raise ConfigError(
                f"bad value for 'tracked_unit': {self.tracked_unit}; expected < hidden_units ({self.hidden_units})"
            )
        if self.bn_momentum >= 1.0:
            raise ConfigError("bad value for 'bn_momentum': 1.0 would never update the moving statistics")
        if self.bn_epsilon <= 0.0:
            raise ConfigError("bad value for 'bn_epsilon': expected > 0")


def percentiles(values, qs=PERCENTILES):
    """`np.percentile(values, qs)` (linear interpolation) of a 1-D tensor, in TF."""
    values = tf.sort(tf.reshape(tf.cast(values, tf.float32), [-1]))
    n = tf.shape(values)[0]
    out = []
    for q in qs:
        pos = q / 100.0 * tf.cast(n - 1, tf.float32)
        lo = tf.cast(tf.floor(pos), tf.int32)
        hi = tf.minimum(lo + 1, n - 1)
        frac = pos - tf.floor(pos)
        out.append(values[lo] * (1.0 - frac) + values[hi] * frac)
    return tf.stack(out)


def build_mlp(input_dim, *, batch_norm, hidden_units=100, hidden_layers=3, init_stddev=0.1,
              bn_momentum=0.99, bn_epsilon=1e-3, sync_bn=False, seed=0, name=None):
    """The paper's MNIST net: `(logits, sigmoid input of the last hidden layer)` from flat images."""
    inputs = keras.Input((input_dim,), name="pixels")
    h = inputs
    pre = None
    for i in range(hidden_layers):
        init = keras.initializers.RandomNormal(stddev=init_stddev, seed=seed * 100 + i)
        dense = keras.layers.Dense(
            hidden_units, use_bias=not batch_norm, kernel_initializer=init, name=f"dense_{i + 1}"
        )
        pre = dense(h)
        if batch_norm:
            pre = keras.layers.BatchNormalization(
                momentum=bn_momentum, epsilon=bn_epsilon, synchronized=sync_bn, name=f"bn_{i + 1}"
            )(pre)
        h = keras.layers.Activation("sigmoid", name=f"sigmoid_{i + 1}")(pre)
    init = keras.initializers.RandomNormal(stddev=init_stddev, seed=seed * 100 + hidden_layers)
    logits = keras.layers.Dense(NUM_CLASSES, kernel_initializer=init, name="logits")(h)
    return keras.Model(inputs, [logits, pre], name=name)


def sigmoid_input_batch_stats(net, pixels):
    """Input of the BN net's last sigmoids on `pixels` with batch statistics, side-effect free.

    The training-mode forward pass `sigmoid(BN_B(W h))`, with `BN_B` using the
    moments of `pixels` itself, but without the moving-average updates that
    `net(pixels, training=True)` would make.
    """
    h = pixels
    pre = None
    i = 1
    while True:
        try:
            dense = net.get_layer(f"dense_{i}")
        except ValueError:
            return pre
        bn = net.get_layer(f"bn_{i}")
        z = dense(h)
        mean, var = tf.nn.moments(z, axes=[0])
        pre = tf.nn.batch_normalization(z, mean, var, bn.beta, bn.gamma, bn.epsilon)
        h = tf.sigmoid(pre)
        i += 1


class BatchNormComparison(RecipeModel):
    """The nets without and with BN, trained side by side on the same batches."""

    def __init__(self, nets, optimizer, probe_x, probe_y, *, tracked_unit, log_every, total_steps, **kwargs):
        super().__init__(**kwargs)
        self.nets = dict(nets)
        self.no_bn, self.bn = self.nets["no_bn"], self.nets["bn"]
        self.optimizer = optimizer
        self.tracked_unit = int(tracked_unit)
        self.log_every = int(log_every)
        self.total_steps = int(total_steps)
        # Plain tensors (not weights): kept out of checkpoints.
        self._probe_x = tf.constant(probe_x)
        self._probe_y = tf.constant(probe_y)

    def call(self, pixels, training=False):
        """BN net's logits (the exported model)."""
        return self.bn(pixels, training=training)[0]

    def figure1_metrics(self):
        """Test accuracy (inference mode) and sigmoid-input percentiles of both nets on the probe set.

        The BN net's sigmoid input is measured as in training, normalized with
        the probe set's own batch statistics (`sigmoid_input_batch_stats`),
        without touching the moving statistics.
        """
        out = {}
        for name, net in self.nets.items():
            logits, pre = net(self._probe_x, training=False)
            predicted = tf.argmax(logits, -1, output_type=tf.int32)
            out[f"test_accuracy_{name}"] = tf.reduce_mean(tf.cast(tf.equal(predicted, self._probe_y), tf.float32))
            if name == "bn":
                pre = sigmoid_input_batch_stats(net, self._probe_x)
            p = percentiles(pre[:, self.tracked_unit])
            for i, q in enumerate(PERCENTILES):
                out[f"sigmoid_input_{name}/p{q}"] = p[i]
        return out

    def train_step(self, batch):
        """One replica's SGD step of both nets on the same `(pixels, labels)`."""
        pixels, labels = batch
        labels = tf.cast(labels, tf.int32)
        losses = {}
        with tf.GradientTape() as tape:
            for name, net in self.nets.items():
                logits, _ = net(pixels, training=True)
                losses[name] = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                )
            # Disjoint variables: d(sum)/dw is each net's own gradient.
            total = losses["no_bn"] + losses["bn"]
        variables = self.no_bn.trainable_variables + self.bn.trainable_variables
        minimize(tape, total, variables, self.optimizer, model=self)
        logs = {f"loss_{name}": loss for name, loss in losses.items()}

        # The engine records steps that are multiples of log_every, and the last one.
        step = self.optimizer.iterations
        measure = tf.logical_or(tf.equal(step % self.log_every, 0), tf.equal(step, self.total_steps))
        zeros = {k: tf.zeros([], tf.float32) for k in self._figure1_keys()}
        logs.update(tf.cond(measure, self.figure1_metrics, lambda: zeros))
        return logs

    def _figure1_keys(self):
        keys = []
        for name in self.nets:
            keys.append(f"test_accuracy_{name}")
            keys += [f"sigmoid_input_{name}/p{q}" for q in PERCENTILES]
        return keys


class BatchNormRecipe(Recipe):
    name = "batchnorm"
    paper = (
        "Ioffe, Szegedy 2015. Batch Normalization: Accelerating Deep Network Training by Reducing "
        "Internal Covariate Shift. arXiv:1502.03167"
    )
    summary = "BN paper's MNIST experiment: 3x100 sigmoid MLP with vs without BN, Figure 1 curves"
    config_class = BatchNormConfig
    key_metrics = ("loss_no_bn", "loss_bn")

    def __init__(self, config: BatchNormConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._data = None

    # ------------------------------------------------------------------ data
    def data(self):
        """`(x_train, y_train), (x_test, y_test)` with flat float32 pixels in [0, 1]."""
        if self._data is None:
            c = self.config
            (x_tr, y_tr), (x_te, y_te) = load_image_classification(
                c.data, data_dir=c.data_dir, download=c.download, seed=c.seed,
                max_train=c.max_train, max_test=c.max_test,
            )
            if len(x_tr) < c.batch_size:
                raise ConfigError(f"batch_size {c.batch_size} is larger than the training set ({len(x_tr)} images)")
            flat = lambda x: x.reshape(len(x), -1).astype("float32")  # noqa: E731
            self._data = (flat(x_tr), y_tr.astype("int32")), (flat(x_te), y_te.astype("int32"))
        return self._data

    def image_shape(self):
        return image_shape(self.config.data)

    def input_dim(self) -> int:
        return int(np.prod(self.image_shape()))

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        (x_tr, y_tr), (x_te, y_te) = self.data()
        c = self.config
        if split == "train":
            return streams.array_dataset((x_tr, y_tr), c.batch_size, c.seed, start_step)
        if split == "test":
            return streams.eval_dataset((x_te, y_te), 1000)
        raise ValueError(f"unknown split '{split}'; expected 'train' or 'test'")

    # ----------------------------------------------------------------- model
    def build_model(self) -> BatchNormComparison:
        c = self.config
        _, (x_te, y_te) = self.data()
        n = min(c.curve_examples, len(x_te))
        common = dict(hidden_units=c.hidden_units, hidden_layers=c.hidden_layers, init_stddev=c.init_stddev,
                      bn_momentum=c.bn_momentum, bn_epsilon=c.bn_epsilon, seed=c.seed)
        bn_only = dict(sync_bn=c.sync_bn)
        nets = {
            "no_bn": build_mlp(self.input_dim(), batch_norm=False, name="mlp_no_bn", **common),
            "bn": build_mlp(self.input_dim(), batch_norm=True, name="mlp_bn", **common, **bn_only),
        }
        optimizer = keras.optimizers.SGD(learning_rate=c.learning_rate)
        model = BatchNormComparison(
            nets, optimizer, x_te[:n], y_te[:n], tracked_unit=c.tracked_unit, log_every=c.log_every,
            total_steps=c.steps, name="batchnorm_comparison",
        )
        model(tf.zeros((1, self.input_dim())))
        optimizer.build(nets["no_bn"].trainable_variables + nets["bn"].trainable_variables)
        return model

    # ------------------------------------------------------------ evaluation
    def evaluate(self, model) -> dict[str, float]:
        """Test accuracy of both nets on the whole test split."""
        predict = tf.function(
            lambda x: [
                tf.argmax(net(x, training=False)[0], -1, output_type=tf.int32) for net in (model.no_bn, model.bn)
            ]
        )
        correct, total = np.zeros(2), 0
        for pixels, labels in self.build_dataset("test"):
            for i, pred in enumerate(predict(pixels)):
                correct[i] += int(tf.reduce_sum(tf.cast(pred == labels, tf.int32)))
            total += int(labels.shape[0])
        return {"test_accuracy_no_bn": correct[0] / total, "test_accuracy_bn": correct[1] / total}

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        rows = [row for row in history if "test_accuracy_bn" in row]
        if rows:
            summary["plot"] = plot_figure1(rows, os.path.join(run_dir, "plots", "figure1.png"))
            for name in NETS:
                summary[f"sigmoid_input_drift_{name}"] = percentile_drift(rows, name)
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default`: `images` float32 `[N, H, W, 1]` in [0, 1] -> `probabilities` (the BN net)."""
        dim = self.input_dim()

        def serve(images):
            logits = model(tf.reshape(images, [-1, dim]), training=False)
            return {"probabilities": tf.nn.softmax(logits, axis=-1)}

        spec = tf.TensorSpec([None, *self.image_shape()], tf.float32, name="images")
        return {"serving_default": Endpoint(serve, [spec])}

    def representative_dataset(self, num_samples: int = 64):
        (x_tr, _), _ = self.data()
        shape = self.image_shape()
        for i in range(min(num_samples, len(x_tr))):
            yield {"images": x_tr[i : i + 1].reshape((1, *shape))}


def percentile_drift(rows, name: str) -> float:
    """How much the tracked sigmoid's input distribution moves over training.

    Mean over the 15/50/85th percentiles of the mean absolute change between
    consecutive measurements, in units of the final 15-85 spread (so the two
    nets, whose inputs have different scales, are comparable).
    """
    series = np.array([[row[f"sigmoid_input_{name}/p{q}"] for q in PERCENTILES] for row in rows])
    if len(series) < 2:
        return 0.0
    spread = max(series[-1, 2] - series[-1, 0], 1e-6)
    return float(np.abs(np.diff(series, axis=0)).mean() / spread)


def plot_figure1(rows, path: str) -> str:
    """The paper's Figure 1: (a) test accuracy, (b, c) sigmoid-input percentiles without / with BN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    steps = [row["step"] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.plot(steps, [row["test_accuracy_no_bn"] for row in rows], "--", label="Without BN")
    ax.plot(steps, [row["test_accuracy_bn"] for row in rows], label="With BN")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title("(a)")
    ax.legend(loc="lower right")
    lo = min(min(row["sigmoid_input_no_bn/p15"], row["sigmoid_input_bn/p15"]) for row in rows)
    hi = max(max(row["sigmoid_input_no_bn/p85"], row["sigmoid_input_bn/p85"]) for row in rows)
    pad = 0.05 * (hi - lo + 1e-6)
    for ax, name, title in ((axes[1], "no_bn", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        for q in PERCENTILES:
            ax.plot(steps, [row[f"sigmoid_input_{name}/p{q}"] for row in rows], color="k",
                    linewidth=1.5 if q == 50 else 0.8)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel("training step")
        ax.set_ylabel("input to a last-layer sigmoid (15/50/85th pct)")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
