"""TCC: self-supervised frame embeddings by temporal cycle-consistency (Dwibedi et al., CVPR 2019).

Training, as the reference (google-research/tcc, `config.py`, `algos/alignment.py`):

* a batch holds `batch_size` videos of the same action (reference: 2);
  from each, `num_frames` distinct frames are drawn uniformly at random and
  sorted (`offset_uniform` sampling, reference: 20), each with its
  `num_context` context frames `t - (k-1) s, ..., t` (stride `s`, clipped at 0);
* the embedder (`kerasnets.models.tcc.build_tcc_embedder`) maps every context
  clip to a 128-d embedding;
* the loss (`kerasnets.losses.tcc.temporal_cycle_consistency_loss`) aligns every
  ordered pair of videos of the replica's batch by soft nearest neighbours
  and cycles back: cycle-back regression with variance (default,
  `L = (t - mu)^2 / sigma^2 + lambda log sigma^2`, lambda = 0.001) or cycle-back
  classification (label smoothing 0.1); similarity `-||u - v||^2 / D / tau`,
  tau = 0.1; times `t = frame / video length`;
* plus the embedder's L2 weight penalty (1e-5); Adam at a fixed rate
  (reference: 1e-4; 1e-3 here by default, for a short CPU run).

Dropout is 0 by default (reference: 0.1 before each Dense layer). Measured
here with a small embedder trained from scratch: with dropout the loss falls
while the embeddings stay uninformative -- independent dropout noise on every
frame spreads the embeddings randomly, which makes soft nearest neighbours
mutual and cycles close without any alignment (the loss of the same batch
without dropout stayed at chance, ln 20, and Kendall's tau at 0). The
reference starts from ImageNet features, which leave no such shortcut
cheaper than the real one.

Under a MirroredStrategy each replica aligns the pairs of its own share of the
batch (as the reference does per TPU core), so `batch_size / replicas >= 2`.

Evaluation (embeddings frozen; `kerasnets.metrics.alignment`): Kendall's tau
of nearest-neighbour alignment over all ordered pairs of validation videos,
phase progression (mean R^2 of linear regressions fit on the training videos)
and phase classification (RBF SVC accuracy).

Data: `embedded` renders synthetic squat-jump videos with random time warps,
speeds, performers, cameras and appearance, 4 labelled phases
(`kerasnets.data.action_videos`); `tcc_tfrecords` reads TCC's own TFRecords
(Pouring, Penn Action; `<data_dir>/<dataset>_<split>-*.tfrecord`).

Reference numbers (paper, TCC with ResNet-50 at 224x224; [UNVERIFIED] in the
project's notes): Pouring -- classification 91.53 %, progress 0.837,
Kendall's tau 0.864; Penn Action -- 81.35 %, 0.664, 0.701.

Measured here (default config, `kerasnets train recipe=tcc`, 1000 steps,
128k-parameter embedder, 96 training / 16 validation videos at 32x32): Kendall's
tau 0.694 (raw pixels: 0.074), phase progression R^2 0.729, phase
classification 83.7 %; 4.4 CPU-minutes (19 min wall at load ~25).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import action_videos
from kerasnets.data.streams import array_dataset
from kerasnets.errors import ConfigError
from kerasnets.losses import tcc as tcc_losses
from kerasnets.metrics import alignment
from kerasnets.models import tcc as tcc_models
from kerasnets.optimization import minimize, regularization_loss
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class TCCConfig(RecipeConfig):
    """TCC hyper-parameters; defaults: a small embedder on embedded 32x32 squat-jump videos."""

    steps: int = param(1000, help="training steps (reference: 150000)", min=1)
    batch_size: int = param(4, help="videos per global batch (reference: 2); >= 2 per replica", min=2)
    num_frames: int = param(20, help="frames sampled per video (reference: 20)", min=2)
    num_context: int = param(2, help="context frames stacked per embedded frame (reference: 2)", min=1)
    context_stride: int = param(3, help="frames between context frames (reference: 15 at the datasets' frame rate)", min=1)
    frame_size: int = param(32, help="frame height and width (reference: 224)", min=16)
    base: Literal["small", "resnet50v2"] = param(
        "small", help="per-frame CNN: small VGG-M-like, or the paper's ResNet50V2 cut at conv4c (random init)"
    )
    base_filters: tuple[int, ...] = param((16, 32, 32), help="small base: filters per block", min=1)
    conv_filters: tuple[int, ...] = param((32, 32), help="Conv3D filters of the context embedder (reference: 512, 512)", min=1)
    fc_units: tuple[int, ...] = param((128, 128), help="Dense units after pooling (reference: 512, 512)", min=1)
    embedding_dim: int = param(128, help="embedding size (reference: 128)", min=1)
    dropout: float = param(
        0.0, help="dropout before each Dense layer (reference: 0.1; 0 here, see the module docstring)", min=0.0, max=0.99
    )
    l2: float = param(1e-5, help="L2 weight penalty on the embedder (reference: 1e-5)", min=0.0)
    loss_type: Literal["regression_mse_var", "regression_mse", "regression_huber", "classification"] = param(
        "regression_mse_var", help="cycle-back loss (reference default: regression_mse_var)"
    )
    similarity: Literal["l2", "cosine"] = param("l2", help="similarity of embeddings (reference: l2)")
    temperature: float = param(0.1, help="softmax temperature tau (reference: 0.1)", min=1e-6)
    label_smoothing: float = param(0.1, help="classification: label smoothing (reference: 0.1)", min=0.0, max=1.0)
    variance_lambda: float = param(0.001, help="regression_mse_var: weight of log sigma^2 (reference: 0.001)", min=0.0)
    huber_delta: float = param(0.1, help="regression_huber: delta (reference: 0.1)", min=0.0)
    learning_rate: float = param(1e-3, help="Adam learning rate, fixed (reference: 1e-4)", min=0.0)
    kendall_stride: int = param(1, help="frame stride of the Kendall's tau evaluation (reference: 2 Pouring, 5 Penn Action)", min=1)
    data: Literal["embedded", "tcc_tfrecords"] = param(
        "embedded", help="embedded: synthetic squat-jump videos; tcc_tfrecords: TCC TFRecords under data_dir"
    )
    dataset: str = param("pouring", help="tcc_tfrecords: dataset name of the files <dataset>_<split>-*.tfrecord")
    num_phases: int = param(4, help="tcc_tfrecords: number of phase labels (Pouring: 5); embedded: 4", min=2)
    num_train: int = param(96, help="embedded: training videos", min=2)
    num_val: int = param(16, help="embedded: validation videos", min=2)
    min_len: int = param(40, help="embedded: shortest video (frames)", min=2)
    max_len: int = param(72, help="embedded: longest video (frames)", min=2)

    def validate(self) -> None:
        super().validate()
        if self.min_len > self.max_len:
            raise ConfigError(f"bad value for 'min_len': {self.min_len} > max_len {self.max_len}")
        if self.data == "embedded" and self.num_frames > self.min_len:
            raise ConfigError(
                f"bad value for 'num_frames': {self.num_frames}; at most min_len={self.min_len} distinct frames per video"
            )
        if self.data == "embedded" and self.num_phases != action_videos.NUM_PHASES:
            raise ConfigError(f"bad value for 'num_phases': the embedded videos have {action_videos.NUM_PHASES} phases")
        if self.data == "tcc_tfrecords" and not self.data_dir:
            raise ConfigError("data='tcc_tfrecords' needs data_dir=<folder with <dataset>_<split>-*.tfrecord files>")
        if self.data == "embedded" and self.batch_size > self.num_train:
            raise ConfigError(f"batch_size {self.batch_size} is larger than num_train {self.num_train}")


def pad_videos(videos) -> tuple[np.ndarray, np.ndarray]:
    """`(frames [V, L_max, H, W, 3] uint8 zero-padded, lengths [V] int32)`."""
    lengths = np.array([len(f) for f in videos.frames], np.int32)
    shape = videos.frames[0].shape[1:]
    out = np.zeros((len(lengths), int(lengths.max()), *shape), np.uint8)
    for i, f in enumerate(videos.frames):
        out[i, : len(f)] = f
    return out, lengths


def sample_steps(lengths, num_frames: int, max_len: int, seed):
    """`[B, num_frames]` sorted distinct frame indices per video, uniform over `[0, len)` (stateless).

    Videos shorter than `num_frames` repeat their last frame (indices clipped).
    """
    b = tf.shape(lengths)[0]
    keys = tf.random.stateless_uniform([b, max_len], seed=seed)
    valid = tf.range(max_len)[None, :] < lengths[:, None]
    keys = tf.where(valid, keys, 2.0 + tf.cast(tf.range(max_len), tf.float32)[None, :])  # padding last, in order
    chosen = tf.math.top_k(-keys, k=num_frames).indices
    chosen = tf.sort(chosen, axis=-1)
    return tf.minimum(chosen, lengths[:, None] - 1)


class TCCModel(RecipeModel):
    """Context clips `[N, T, k, H, W, 3]` -> embeddings `[N, T, D]`, with the TCC Adam step."""

    def __init__(self, embedder, optimizer, loss_kwargs, **kwargs):
        super().__init__(**kwargs)
        self.embedder = embedder
        self.optimizer = optimizer
        self.loss_kwargs = dict(loss_kwargs)

    def call(self, clips, training=False):
        return tcc_models.embed_clips(self.embedder, clips, training=training)

    def train_step(self, batch):
        clips, steps, lengths = batch
        with tf.GradientTape() as tape:
            embs = self(clips, training=True)
            tcc = tcc_losses.temporal_cycle_consistency_loss(embs, steps, lengths, **self.loss_kwargs)
        loss = minimize(tape, tcc, self.embedder.trainable_variables, self.optimizer, model=self.embedder)
        return {"loss": loss, "tcc_loss": tcc, "l2": regularization_loss(self.embedder)}


class TCCRecipe(Recipe):
    name = "tcc"
    paper = "Dwibedi, Aytar, Tompson, Sermanet, Zisserman 2019. Temporal Cycle-Consistency Learning. arXiv:1904.07846"
    summary = "TCC self-supervised video frame embeddings: cycle-back regression/classification, Kendall's tau, phase progression"
    config_class = TCCConfig
    key_metrics = ("loss", "tcc_loss")

    def __init__(self, config: TCCConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._splits: dict = {}
        self._embed = (None, None)

    # -------------------------------------------------------------------- data
    def split(self, name: str) -> action_videos.ActionVideos:
        """`"train"` or `"validation"` videos."""
        if name not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {name!r}")
        if name not in self._splits:
            c = self.config
            if c.data == "embedded":
                num, seed = (c.num_train, c.seed) if name == "train" else (c.num_val, c.seed + 1_000_003)
                self._splits[name] = action_videos.generate(num, c.frame_size, c.min_len, c.max_len, seed)
            else:
                split = "train" if name == "train" else "val"
                self._splits[name] = action_videos.read_tcc_tfrecords(c.data_dir, c.dataset, split, size=c.frame_size)
                if len(self._splits[name].frames) < 2:
                    raise ValueError(f"{c.dataset}_{split}: TCC needs at least 2 videos")
        return self._splits[name]

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        """Endless `(clips [B, T, k, H, W, 3] float32, steps [B, T] int32, lengths [B] int32)` batches."""
        c = self.config
        videos = self.split("train" if split == "train" else "validation")
        frames, lengths = pad_videos(videos)
        frames_t = tf.constant(frames)
        max_len = frames.shape[1]
        if split == "train" and c.batch_size > len(lengths):
            raise ConfigError(f"batch_size {c.batch_size} is larger than the {len(lengths)} training videos")

        def prepare(batch, step):
            idx = tf.cast(batch["video"], tf.int32)
            lens = tf.gather(lengths, idx)
            steps = sample_steps(lens, c.num_frames, max_len, tf.stack([tf.cast(c.seed, tf.int64), step]))
            clips = tcc_models.gather_context(tf.gather(frames_t, idx), steps, c.num_context, c.context_stride)
            return tf.cast(clips, tf.float32) / 255.0, steps, lens

        return array_dataset({"video": np.arange(len(lengths), dtype=np.int32)}, c.batch_size, c.seed + (split != "train"),
                             start_step, map_fn=prepare)  # fmt: skip

    # ------------------------------------------------------------------- model
    def loss_kwargs(self) -> dict:
        c = self.config
        return dict(loss_type=c.loss_type, similarity=c.similarity, temperature=c.temperature,
                    label_smoothing=c.label_smoothing, variance_lambda=c.variance_lambda,
                    huber_delta=c.huber_delta, normalize_indices=True)  # fmt: skip

    def build_model(self) -> TCCModel:
        c = self.config
        embedder = tcc_models.build_tcc_embedder(
            (c.frame_size, c.frame_size, 3), num_context=c.num_context, base=c.base, base_filters=c.base_filters,
            conv_filters=c.conv_filters, fc_units=c.fc_units, embedding_dim=c.embedding_dim, dropout=c.dropout,
            l2=c.l2, seed=c.seed,
        )  # fmt: skip
        optimizer = keras.optimizers.Adam(learning_rate=c.learning_rate)
        model = TCCModel(embedder, optimizer, self.loss_kwargs(), name="tcc")
        model(tf.zeros((1, 1, c.num_context, c.frame_size, c.frame_size, 3)))
        optimizer.build(embedder.trainable_variables)
        return model

    # -------------------------------------------------------------- embedding
    def _embed_fn(self, model):
        cached, fn = self._embed
        if cached is not model:
            c = self.config

            @tf.function(input_signature=[tf.TensorSpec([None, c.frame_size, c.frame_size, 3], tf.uint8)])
            def fn(frames):
                steps = tf.range(tf.shape(frames)[0])[None]
                clips = tcc_models.gather_context(frames[None], steps, c.num_context, c.context_stride)
                return model(tf.cast(clips, tf.float32) / 255.0, training=False)[0]

            self._embed = (model, fn)
        return fn

    def embed(self, model, videos, chunk: int = 128) -> list:
        """Per-frame embeddings `[T_i, D]` of every video (each frame with its context)."""
        fn = self._embed_fn(model)
        out = []
        for frames in videos.frames:
            out.append(fn(tf.constant(frames)).numpy())
        return out

    def evaluate(self, model) -> dict[str, float]:
        """Kendall's tau (validation videos), phase progression and phase classification (fit on train)."""
        c = self.config
        train, val = self.split("train"), self.split("validation")
        train_embs, val_embs = self.embed(model, train), self.embed(model, val)
        return evaluate_embeddings(train_embs, train.phases, val_embs, val.phases, c.num_phases, c.kendall_stride)

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.images import save_grid
        from kerasnets.utils.plots import plot_history

        c = self.config
        train, val = self.split("train"), self.split("validation")
        summary = {"trainable_params": int(sum(np.prod(v.shape) for v in model.embedder.trainable_variables))}
        summary.update(self.evaluate(model))
        # Context: the same metrics on raw pixels (flattened frames) as embeddings.
        pixels = [f.reshape(len(f), -1).astype(np.float32) / 255.0 for f in val.frames]
        summary["kendalls_tau_pixels"] = alignment.kendalls_tau_alignment(pixels, c.kendall_stride)
        # Alignment picture: every 4th frame of validation video 0 and its nearest neighbour in videos 1 and 2.
        embs = self.embed(model, val)
        rows = [val.frames[0][::4]]
        for j in (1, 2)[: len(embs) - 1]:
            nn = alignment.nearest_neighbours(embs[0][::4], embs[j])
            rows.append(val.frames[j][nn])
        grid = np.concatenate(rows).astype(np.float32) / 255.0
        summary["alignment_png"] = save_grid(grid, os.path.join(run_dir, "plots", "alignment.png"),
                                             columns=len(rows[0]), scale=3)  # fmt: skip
        curve = plot_history(history, ("loss", "tcc_loss"), os.path.join(run_dir, "plots", "training.png"), title="TCC")
        if curve:
            summary["training_png"] = curve
        return summary

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """`serving_default`: `frames` float32 `[N, T, H, W, 3]` (RGB in [0, 1], N videos of T frames).

        Output `embeddings [N, T, D]`: frame `t`'s embedding from its context
        frames `t - (k-1) s, ..., t` (indices clipped at 0), as in training.
        """
        c = self.config

        def serve(frames):
            t = tf.shape(frames)[1]
            steps = tf.tile(tf.range(t)[None], [tf.shape(frames)[0], 1])
            clips = tcc_models.gather_context(frames, steps, c.num_context, c.context_stride)
            return {"embeddings": model(clips, training=False)}

        spec = tf.TensorSpec([None, None, c.frame_size, c.frame_size, 3], tf.float32, name="frames")
        return {"serving_default": Endpoint(serve, [spec])}

    def representative_dataset(self, num_samples: int = 64):
        videos = self.split("validation")
        t = min(len(f) for f in videos.frames)
        for i in range(min(num_samples, len(videos.frames))):
            yield {"frames": videos.frames[i][None, :t].astype(np.float32) / 255.0}


def evaluate_embeddings(train_embs, train_phases, val_embs, val_phases, num_phases, kendall_stride=1) -> dict:
    """The three TCC evaluations of frozen per-frame embeddings (lists, one array per video)."""
    return {
        "kendalls_tau": alignment.kendalls_tau_alignment(val_embs, kendall_stride),
        "phase_progression": alignment.phase_progression(train_embs, train_phases, val_embs, val_phases, num_phases),
        "phase_classification": alignment.phase_classification(train_embs, train_phases, val_embs, val_phases),
    }
