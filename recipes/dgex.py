"""D-GEX: gene expression inference with deep learning (Chen, Li, Narayan, Subramanian, Xie 2016).

Bioinformatics 32(12):1832-1839, doi:10.1093/bioinformatics/btw074. The L1000
assay measures ~1,000 *landmark* genes; D-GEX infers the expression of the
other (*target*) genes from them with a tanh MLP (`kerasnets.models.dgex`):

    x = (landmarks - mean_train) / (std_train + 1e-3)          per gene, training split only
    y_hat = MLP(x)  (1-3 tanh layers, dropout on hidden units, linear output)
    loss  = mean over samples of sum over target genes (y_hat - y)^2   (pylearn2 Linear's MSE cost)
    MAE   = mean over genes of mean over samples |y - y_hat|   (standardized units, the paper's metric)

Optimization as the reference scripts: SGD, momentum 0.5, batch 200,
learning rate 5e-4 (1 hidden layer) / 3e-4 (2-3 layers), the layers after the
first with a 3x learning rate (`W_lr_scale=3`), the learning rate multiplied by
0.9 whenever the MAE on a fixed training monitor subset increases (checked
every `monitor_every` steps here, every epoch in the paper), floored at 1e-5.
Because plain momentum SGD is linear in `lr * g`, the per-layer scale and the
decay are applied by scaling the gradients, which is the same update.

The baseline is least-squares linear regression per target gene on the same
standardized data (closed form, `fit_linear_regression`); `evaluate` reports
both test MAEs, their relative improvement `(LR - DGEX) / LR` (paper: 15.33 %
on GEO, 0.3204 vs 0.3784) and the fraction of genes where D-GEX is better
(paper: 99.97 %).

Data: `embedded` = synthetic expression with a low-rank nonlinear structure
(`kerasnets.data.gene_expression.synthetic_expression`); `files` = the paper's
matrices as `.npz` or genes x samples TSV + `map_lm.txt` / `map_tg.txt`.
Export: `serving_default` takes raw `landmarks` float32 `[N, L]` and returns raw
`targets` `[N, T]`; the standardization (fitted on the training split and
stored in the model as non-trainable weights) is inside.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import streams
from kerasnets.data.gene_expression import Standardizer, load_gene_expression
from kerasnets.errors import ConfigError
from kerasnets.metrics.regression import mae_per_gene
from kerasnets.models.dgex import build_dgex, fit_linear_regression
from kerasnets.optimization import scaled_gradients
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.plots import plot_history
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class DGEXConfig(RecipeConfig):
    """Defaults: the paper's optimizer and a CPU-sized network/data set (paper: 943 -> 3x9000 -> 9520)."""

    steps: int = param(1500, help="training steps (~30 epochs of the embedded data)", min=1)
    batch_size: int = param(200, help="global batch size (paper: 200)", min=1)
    data: Literal["embedded", "files"] = param(
        "embedded", help="embedded: synthetic expression (no download); files: expression.npz / .tsv in data_dir"
    )
    hidden_units: tuple[int, ...] = param((1000,), help="tanh hidden layer sizes (paper: 1-3 x 3000/6000/9000)", min=1)
    dropout: float = param(0.1, help="dropout on hidden activations (paper: 0, 0.1, 0.25)", min=0.0, max=0.9)
    learning_rate: float = param(5e-4, help="SGD lr (paper: 5e-4 for 1 layer, 3e-4 for 2-3)", min=0.0)
    momentum: float = param(0.5, help="SGD momentum (paper: 0.5)", min=0.0, max=0.999)
    upper_lr_scale: float = param(3.0, help="lr multiplier of the layers after the first (paper: 3)", min=0.0)
    lr_decay: float = param(0.9, help="lr factor when the monitor MAE increases (paper: 0.9)", min=0.0, max=1.0)
    min_learning_rate: float = param(1e-5, help="lr floor (paper: 1e-5)", min=0.0)
    monitor_every: int = param(100, help="check the training monitor MAE every N steps", min=1)
    monitor_samples: int = param(5000, help="fixed training monitor subset (paper: 5000)", min=1)
    # embedded data
    n_samples: int = param(6000, help="embedded: samples (80/10/10 split)", min=20)
    n_landmarks: int = param(100, help="embedded: landmark genes (paper: 943)", min=1)
    n_targets: int = param(1000, help="embedded: target genes (paper: 9520)", min=1)
    latent_rank: int = param(10, help="embedded: rank of the latent expression programs", min=1)
    noise: float = param(0.1, help="embedded: measurement noise std (standardized-ish units)", min=0.0)
    log_every: int = param(100, help="log every N steps", min=1)

    def validate(self) -> None:
        super().validate()
        if not self.hidden_units:
            raise ConfigError("bad value for 'hidden_units': expected at least one hidden layer")
        if self.min_learning_rate > self.learning_rate:
            raise ConfigError("bad value for 'min_learning_rate': larger than learning_rate")


class DGEXModel(RecipeModel):
    """The MLP plus the training split's standardization (non-trainable, saved in checkpoints)."""

    def __init__(self, net, optimizer, standardizers, monitor, *, upper_lr_scale, lr_decay, min_lr_scale,
                 monitor_every, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.optimizer = optimizer
        sx, sy = standardizers

        def const(name, value):
            return self.add_weight(name=name, shape=value.shape, initializer=keras.initializers.Constant(value),
                                   trainable=False)

        self.x_mean, self.x_scale = const("x_mean", sx.mean), const("x_scale", sx.scale)
        self.y_mean, self.y_scale = const("y_mean", sy.mean), const("y_scale", sy.scale)
        self.lr_scale = tf.Variable(1.0, trainable=False, name="lr_scale", aggregation=tf.VariableAggregation.MEAN)
        # Large finite start: the first measurement never counts as an increase.
        self.last_monitor = tf.Variable(1e30, trainable=False, name="last_monitor_mae",
                                        aggregation=tf.VariableAggregation.MEAN)
        self._monitor_x = tf.constant(monitor[0])
        self._monitor_y = tf.constant(monitor[1])
        self.upper_lr_scale = float(upper_lr_scale)
        self.lr_decay = float(lr_decay)
        self.min_lr_scale = float(min_lr_scale)
        self.monitor_every = int(monitor_every)

    def call(self, x_std, training=False):
        return self.net(x_std, training=training)

    def predict_raw(self, landmarks):
        """Raw landmark expression `[N, L]` -> raw target expression `[N, T]`."""
        x = (tf.cast(landmarks, tf.float32) - self.x_mean) / self.x_scale
        return self.net(x, training=False) * self.y_scale + self.y_mean

    def monitor_mae(self):
        """MAE of the current net on the fixed training monitor subset (standardized units)."""
        return tf.reduce_mean(tf.abs(self.net(self._monitor_x, training=False) - self._monitor_y))

    def update_learning_rate(self, measure):
        """If `measure`: lr_scale *= lr_decay (floored) when the monitor MAE rose since the last check.

        Returns the measured MAE, or 0 when not measuring. The assignments sit outside
        `tf.cond` (a mirrored variable's assign is a cross-replica sync point).
        """
        measure = tf.convert_to_tensor(measure)
        mae = tf.cond(measure, self.monitor_mae, lambda: tf.identity(self.last_monitor))
        worse = tf.logical_and(measure, mae > self.last_monitor)
        self.lr_scale.assign(
            tf.where(worse, tf.maximum(self.lr_scale * self.lr_decay, self.min_lr_scale), self.lr_scale)
        )
        self.last_monitor.assign(mae)
        return tf.where(measure, mae, 0.0)

    def train_step(self, batch):
        x, y = batch
        with tf.GradientTape() as tape:
            pred = self.net(x, training=True)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(pred - y), axis=-1))
        variables = self.net.trainable_variables
        # scaled_gradients, not minimize: the per-layer learning rates multiply the gradients.
        _, grads = scaled_gradients(tape, loss, variables, self.optimizer, model=self.net)
        first = self.net.get_layer("hidden_1")
        first_ids = {id(v) for v in first.trainable_variables}
        grads = [g * self.lr_scale * (1.0 if id(v) in first_ids else self.upper_lr_scale)
                 for g, v in zip(grads, variables)]
        self.optimizer.apply(grads, variables)
        step = self.optimizer.iterations
        # monitor_mae is 0 on steps that do not measure it (keep monitor_every a multiple of log_every).
        monitor = self.update_learning_rate(tf.equal(step % self.monitor_every, 0))
        return {"loss": loss, "mae": tf.reduce_mean(tf.abs(pred - y)), "monitor_mae": monitor,
                "learning_rate": self.optimizer.learning_rate * self.lr_scale}


class DGEXRecipe(Recipe):
    name = "dgex"
    paper = ("Chen, Li, Narayan, Subramanian, Xie 2016. Gene expression inference with deep learning. "
             "Bioinformatics 32(12):1832-1839")
    summary = "D-GEX: tanh MLP inferring target genes from landmark genes, vs least-squares LR (MAE)"
    config_class = DGEXConfig
    key_metrics = ("loss", "mae", "monitor_mae")

    def __init__(self, config: DGEXConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._splits = None
        self._std = None

    # ------------------------------------------------------------------ data
    def splits(self):
        if self._splits is None:
            c = self.config
            self._splits = load_gene_expression(
                c.data, data_dir=c.data_dir, seed=c.seed, n_samples=c.n_samples, n_landmarks=c.n_landmarks,
                n_targets=c.n_targets, rank=c.latent_rank, landmark_noise=c.noise, target_noise=c.noise,
            )
            if len(self._splits.train[0]) < c.batch_size:
                raise ConfigError(f"batch_size {c.batch_size} is larger than the training split "
                                  f"({len(self._splits.train[0])} samples)")
        return self._splits

    def standardizers(self) -> tuple[Standardizer, Standardizer]:
        """Per-gene standardization of landmarks and targets, fitted on the training split."""
        if self._std is None:
            x, y = self.splits().train
            self._std = (Standardizer.fit(x), Standardizer.fit(y))
        return self._std

    def standardized(self, split: str):
        sx, sy = self.standardizers()
        s = self.splits()
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split '{split}'; expected 'train', 'val' or 'test'")
        x, y = getattr(s, split)
        return sx.transform(x), sy.transform(y)

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        x, y = self.standardized(split)
        if split == "train":
            return streams.array_dataset((x, y), self.config.batch_size, self.config.seed, start_step)
        return streams.eval_dataset((x, y), 1000)

    # ----------------------------------------------------------------- model
    def build_model(self) -> DGEXModel:
        c = self.config
        s = self.splits()
        net = build_dgex(s.n_landmarks, s.n_targets, c.hidden_units, c.dropout, seed=c.seed)
        x, y = self.standardized("train")
        k = min(c.monitor_samples, len(x))
        idx = np.random.default_rng(c.seed + 1).choice(len(x), k, replace=False)
        optimizer = keras.optimizers.SGD(learning_rate=c.learning_rate, momentum=c.momentum)
        model = DGEXModel(
            net, optimizer, self.standardizers(), (x[idx], y[idx]), upper_lr_scale=c.upper_lr_scale,
            lr_decay=c.lr_decay, min_lr_scale=(c.min_learning_rate / c.learning_rate if c.learning_rate else 1.0),
            monitor_every=c.monitor_every, name="dgex_model",
        )
        model(tf.zeros((1, s.n_landmarks)))
        optimizer.build(net.trainable_variables)
        return model

    # ------------------------------------------------------------ evaluation
    def linear_baseline(self):
        """`(W, b)` of least squares on the standardized training split."""
        return fit_linear_regression(*self.standardized("train"))

    def evaluate(self, model) -> dict[str, float]:
        """Test MAE (standardized units, averaged over genes) of D-GEX and LR, and the paper's comparisons."""
        x, y = self.standardized("test")
        predict = tf.function(lambda t: model.net(t, training=False))
        pred = np.concatenate([predict(x[i : i + 1000]).numpy() for i in range(0, len(x), 1000)])
        w, b = self.linear_baseline()
        lr_pred = x @ w + b
        dgex_genes, lr_genes = mae_per_gene(y, pred), mae_per_gene(y, lr_pred)
        dgex, lr = float(dgex_genes.mean()), float(lr_genes.mean())
        return {
            "test_mae_dgex": dgex,
            "test_mae_lr": lr,
            "relative_improvement": (lr - dgex) / lr,
            "genes_better_fraction": float(np.mean(dgex_genes < lr_genes)),
        }

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        plot = plot_history(history, ["loss", "mae", "monitor_mae", "learning_rate"],
                            os.path.join(run_dir, "plots", "training.png"), title="D-GEX")
        if plot:
            summary["plot"] = plot
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default`: raw `landmarks` float32 `[N, L]` -> raw `targets` `[N, T]`."""
        n = self.splits().n_landmarks

        def serve(landmarks):
            return {"targets": model.predict_raw(landmarks)}

        return {"serving_default": Endpoint(serve, [tf.TensorSpec([None, n], tf.float32, name="landmarks")])}

    def representative_dataset(self, num_samples: int = 64):
        x, _ = self.splits().train
        for i in range(min(num_samples, len(x))):
            yield {"landmarks": x[i : i + 1]}
