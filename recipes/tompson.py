"""Tompson et al. 2014: a ConvNet part detector and an MRF spatial model, trained in stages.

"Joint Training of a Convolutional Network and a Graphical Model for Human
Pose Estimation" (Tompson, Jain, LeCun, Bregler, NIPS 2014, arXiv:1406.2984).

* **model** (`kerasnets.models.tompson`): a multi-resolution part detector
  (full- and half-resolution banks of 5x5 convolutions, summed after
  upsampling, two 9x9 convolutions, 1x1 to one heatmap per joint at 1/4 of
  the input) followed by the spatial model
  `e_A = exp( sum_v log( SoftPlus(w_{A|v}) * ReLU(e_v) + SoftPlus(b_{v->A}) ) )`
  (`kerasnets.layers.MRFSpatialModel`), its pairwise kernels initialised from
  the training set's joint-displacement histograms;
* **targets and loss**: Gaussian heatmaps (sigma `sigma` heatmap pixels, peak
  1, `kerasnets.ops.heatmaps.gaussian_heatmaps`), mean squared error over
  labelled joints (the paper's MSE against small Gaussians);
* **stages** (the paper's schedule; fractions of `steps`):
  1. the part detector alone on its heatmaps;
  2. the spatial model on its output, the part detector frozen;
  3. both jointly on the spatial model's output.
  Each part has its own Adam optimizer; a frozen part's learning rate is 0 in
  that stage (its weights do not move; its Adam moments keep being updated);
* **metric**: PCK@0.2 (of the person box's longer side, and of the torso
  `||left shoulder - right hip||`), for the full model and for the part
  detector alone, from the argmax (+ quarter offset) of each heatmap.

Data: `embedded` renders stick figures (`kerasnets.data.skeleton`, COCO-17
joints); the spatial graph is each joint with itself and its COCO skeleton
neighbours (`graph="skeleton"`) or all joint pairs (`graph="full"`, the paper's
fully connected graph on FLIC's few joints).

Reference: FLIC (3987 train / 1016 test images), the paper reports detection
rate curves; PCK@0.2 elbow 93.1 %, wrist 89.0 % as quoted by later papers
[UNVERIFIED in the project's notes].

Measured here (default config, `kerasnets train recipe=tompson`, 1500 steps =
750 + 375 + 375, 64x64 crops, 17 joints, 256 validation images): PCK@0.2 of the
box 92.5 % with the spatial model vs 79.5 % for its part detector alone; of the
torso 58.3 % vs 37.3 % (elbows 38.5 %, wrists 21.9 %); 6.0 CPU-minutes (19 min
wall at load ~18). With sigma 1 and 900 steps: 54.5 % vs 27.4 % (box).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import skeleton
from kerasnets.data.streams import array_dataset, eval_dataset
from kerasnets.errors import ConfigError
from kerasnets.metrics import pose as pose_metrics
from kerasnets.models import tompson as tompson_models
from kerasnets.ops import heatmaps as hm_ops
from kerasnets.optimization import scaled_gradients
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel

STRIDE = 4
ELBOWS, WRISTS = (7, 8), (9, 10)


@dataclasses.dataclass
class TompsonConfig(RecipeConfig):
    """Tompson 2014 hyper-parameters; defaults: a small model on 64x64 embedded stick figures."""

    steps: int = param(1500, help="training steps over all three stages", min=3)
    batch_size: int = param(16, help="global batch size", min=1)
    stage_fractions: tuple[float, ...] = param(
        (0.5, 0.25, 0.25), help="shares of steps for (detector, spatial model with detector frozen, joint)", min=0.0, max=1.0
    )  # fmt: skip
    image_size: int = param(64, help="square input size (FLIC: 320x240); multiple of 8", min=16)
    bank_filters: tuple[int, ...] = param((16, 16, 32), help="filters of the three 5x5 convs per bank (paper: 128 each)", min=1)
    fc_filters: tuple[int, ...] = param((32, 32), help="filters of the 9x9 convs (reimplementation: 512, 256)", min=1)
    graph: Literal["skeleton", "full"] = param("skeleton", help="spatial-model pairs: joint + skeleton neighbours, or all pairs")
    spatial_kernel: int = param(0, help="pairwise kernel size (odd); 0 = 2 x heatmap size - 1 (every displacement)", min=0)
    sigma: float = param(1.5, help="Gaussian target sigma in heatmap pixels", min=0.3)
    learning_rate: float = param(1e-3, help="Adam learning rate of both parts", min=0.0)
    pck_alpha: float = param(0.2, help="PCK threshold as a fraction of the reference length", min=0.0)
    data: Literal["embedded"] = param("embedded", help="embedded: synthetic stick figures (COCO 17 joints)")
    num_train: int = param(2048, help="embedded: training images", min=1)
    num_val: int = param(256, help="embedded: validation images", min=1)

    def validate(self) -> None:
        super().validate()
        if self.image_size % 8:
            raise ConfigError(f"bad value for 'image_size': {self.image_size}; expected a multiple of 8")
        if len(self.stage_fractions) != 3 or abs(sum(self.stage_fractions) - 1.0) > 1e-6:
            raise ConfigError(f"bad value for 'stage_fractions': {self.stage_fractions!r}; expected 3 shares summing to 1")
        if len(self.bank_filters) != 3:
            raise ConfigError(f"bad value for 'bank_filters': {self.bank_filters!r}; expected 3 values")
        if self.spatial_kernel and self.spatial_kernel % 2 == 0:
            raise ConfigError(f"bad value for 'spatial_kernel': {self.spatial_kernel}; expected an odd size or 0")
        if self.batch_size > self.num_train:
            raise ConfigError(f"batch_size {self.batch_size} is larger than num_train {self.num_train}")

    def heatmap_size(self) -> int:
        return self.image_size // STRIDE

    def stage_boundaries(self) -> tuple[int, int]:
        """Last step of stage 1 and of stage 2 (steps count from 1)."""
        f1, f2, _ = self.stage_fractions
        b1 = int(round(f1 * self.steps))
        return b1, int(round((f1 + f2) * self.steps))


def stage_of_step(step, boundaries):
    """Stage (1, 2 or 3) of 1-based training step `step`."""
    b1, b2 = boundaries
    return 1 if step <= b1 else (2 if step <= b2 else 3)


class _StageRate(keras.optimizers.schedules.LearningRateSchedule):
    """`rate` in the stages where a part trains, 0 elsewhere (`iterations` = steps done so far)."""

    def __init__(self, rate, boundaries, active):
        self.rate, self.boundaries, self.active = float(rate), tuple(int(b) for b in boundaries), tuple(active)

    def __call__(self, iterations):
        step = tf.cast(iterations, tf.int64) + 1  # the step being taken
        b1, b2 = self.boundaries
        stage = tf.where(step <= b1, 1, tf.where(step <= b2, 2, 3))
        on = tf.reduce_any(tf.equal(tf.cast(stage, tf.int32), tf.constant(self.active, tf.int32)))
        return tf.where(on, tf.constant(self.rate, tf.float32), 0.0)

    def get_config(self):
        return {"rate": self.rate, "boundaries": self.boundaries, "active": self.active}


def masked_mse(pred, target, weight):
    """Mean squared error over the maps of labelled joints: `sum_k w_k mean((P_k - H_k)^2) / sum_k w_k`."""
    w = tf.cast(weight, pred.dtype)[:, None, None, :]
    num = tf.reduce_sum(w * tf.square(pred - tf.cast(target, pred.dtype)))
    den = tf.maximum(tf.reduce_sum(w) * tf.cast(tf.shape(pred)[1] * tf.shape(pred)[2], pred.dtype), 1.0)
    return num / den


class TompsonPose(RecipeModel):
    """Images -> (part-detector heatmaps, spatial-model heatmaps), with the staged update."""

    def __init__(self, detector, spatial, det_optimizer, spatial_optimizer, boundaries, **kwargs):
        super().__init__(**kwargs)
        self.detector = detector
        self.spatial = spatial
        self.det_optimizer = det_optimizer
        self.spatial_optimizer = spatial_optimizer
        self.boundaries = tuple(boundaries)

    def call(self, images, training=False):
        part = self.detector(images, training=training)
        return part, self.spatial(part, training=training)

    def train_step(self, batch):
        images, target, weight = batch
        step = tf.cast(self.det_optimizer.iterations, tf.int64) + 1
        b1, _ = self.boundaries
        in_stage1 = tf.cast(step <= b1, tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            part, refined = self(images, training=True)
            det_loss = masked_mse(part, target, weight)
            spatial_loss = masked_mse(refined, target, weight)
            # Stage 1 trains the detector on its own heatmaps; stages 2 and 3 train on the spatial model's.
            loss = in_stage1 * det_loss + (1.0 - in_stage1) * spatial_loss
        # Both optimizers step every step (their iteration counters stay the global step);
        # a frozen part's learning rate is 0 in that stage. In stage 1 the spatial model
        # is not on the loss's path: zero gradients, not None.
        for net, optimizer in ((self.detector, self.det_optimizer), (self.spatial, self.spatial_optimizer)):
            variables = net.trainable_variables
            _, grads = scaled_gradients(tape, loss, variables, optimizer, model=net,
                                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
            optimizer.apply(grads, variables)
        del tape
        return {"loss": loss, "detector_loss": det_loss, "spatial_loss": spatial_loss,
                "stage": 3.0 - 2.0 * in_stage1 - tf.cast(step <= self.boundaries[1], tf.float32) * (1.0 - in_stage1)}  # fmt: skip


class TompsonRecipe(Recipe):
    name = "tompson"
    paper = ("Tompson, Jain, LeCun, Bregler 2014. Joint Training of a Convolutional Network and a Graphical Model "
             "for Human Pose Estimation. arXiv:1406.2984")  # fmt: skip
    summary = "Multi-resolution ConvNet part detector + MRF spatial model (log/exp energy, large kernels), staged training, PCK"
    config_class = TompsonConfig
    key_metrics = ("loss", "stage")

    def __init__(self, config: TompsonConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._splits: dict = {}
        self._predict = (None, None)

    # -------------------------------------------------------------------- data
    def split(self, name: str) -> skeleton.PoseSet:
        if name not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {name!r}")
        if name not in self._splits:
            c = self.config
            num, seed = (c.num_train, c.seed) if name == "train" else (c.num_val, c.seed + 1_000_003)
            self._splits[name] = skeleton.generate(num, height=c.image_size, width=c.image_size, seed=seed)
        return self._splits[name]

    def targets(self, keypoints):
        c = self.config
        size = (c.image_size, c.image_size)
        return hm_ops.gaussian_heatmaps(keypoints, size, (c.heatmap_size(),) * 2, sigma=c.sigma, subpixel=True)

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        """`(images [B, S, S, 3] in [0, 1], target heatmaps [B, S/4, S/4, 17], weights [B, 17])` batches."""
        c = self.config
        data = self.split("train" if split == "train" else "validation")
        arrays = {"images": (data.images * 255 + 0.5).astype(np.uint8), "keypoints": data.keypoints}

        def prepare(batch, step=None):
            return (tf.cast(batch["images"], tf.float32) / 255.0, *self.targets(batch["keypoints"]))

        if split == "train":
            return array_dataset(arrays, c.batch_size, c.seed, start_step, map_fn=prepare)
        return eval_dataset(arrays, c.batch_size).map(prepare)

    # ------------------------------------------------------------------- model
    def pairs(self):
        k = skeleton.NUM_KEYPOINTS
        if self.config.graph == "full":
            return [(a, v) for a in range(k) for v in range(k)]
        return tompson_models.skeleton_pairs(k, skeleton.SKELETON)

    def kernel_size(self):
        c = self.config
        size = c.spatial_kernel or 2 * c.heatmap_size() - 1
        return (size, size)

    def build_model(self) -> TompsonPose:
        c = self.config
        hm = c.heatmap_size()
        detector = tompson_models.build_part_detector((c.image_size, c.image_size, 3), skeleton.NUM_KEYPOINTS,
                                                      c.bank_filters, c.fc_filters, seed=c.seed)  # fmt: skip
        pairs = self.pairs()
        prior = tompson_models.pairwise_displacement_prior(self.split("train").keypoints, pairs, self.kernel_size(), STRIDE)
        spatial = tompson_models.build_spatial_model((hm, hm, skeleton.NUM_KEYPOINTS), pairs, self.kernel_size(), prior)
        bounds = c.stage_boundaries()
        det_opt = keras.optimizers.Adam(_StageRate(c.learning_rate, bounds, (1, 3)))
        sp_opt = keras.optimizers.Adam(_StageRate(c.learning_rate, bounds, (2, 3)))
        model = TompsonPose(detector, spatial, det_opt, sp_opt, bounds, name="tompson")
        model(tf.zeros((1, c.image_size, c.image_size, 3)))
        det_opt.build(detector.trainable_variables)
        sp_opt.build(spatial.trainable_variables)
        return model

    def checkpoint_items(self, model):
        return {"model": model, "det_optimizer": model.det_optimizer, "spatial_optimizer": model.spatial_optimizer}

    # -------------------------------------------------------------- prediction
    def _predict_fn(self, model):
        cached, fn = self._predict
        if cached is not model:
            s = self.config.image_size

            @tf.function(input_signature=[tf.TensorSpec([None, s, s, 3], tf.float32)])
            def fn(images):
                return model(images, training=False)

            self._predict = (model, fn)
        return fn

    def predict(self, model, images, batch_size: int = 64):
        """`(keypoints, scores)` of the full model and `(keypoints, scores)` of the detector alone (input pixels)."""
        fn = self._predict_fn(model)
        out = {"part": ([], []), "full": ([], [])}
        for i in range(0, len(images), batch_size):
            part, refined = fn(tf.constant(images[i : i + batch_size], tf.float32))
            for key, maps in (("part", part), ("full", refined)):
                xy, m = hm_ops.decode_heatmaps(maps)
                out[key][0].append(xy.numpy() * STRIDE)
                out[key][1].append(m.numpy())
        return {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in out.items()}

    def evaluate(self, model) -> dict[str, float]:
        c = self.config
        data = self.split("validation")
        preds = self.predict(model, data.images)
        out = {}
        for key, tag in (("full", ""), ("part", "_detector")):
            kp = preds[key][0]
            total, per_joint = pose_metrics.pck(kp, data.keypoints, data.boxes, alpha=c.pck_alpha)
            torso, per_joint_torso = pose_metrics.pck(kp, data.keypoints, alpha=c.pck_alpha, reference="torso")
            out[f"pck{tag}"] = total
            out[f"pck_torso{tag}"] = torso
            out[f"pck_torso_elbow{tag}"] = float(np.nanmean(per_joint_torso[list(ELBOWS)]))
            out[f"pck_torso_wrist{tag}"] = float(np.nanmean(per_joint_torso[list(WRISTS)]))
        return out

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.images import save_grid
        from kerasnets.utils.plots import plot_history

        data = self.split("validation")
        images = data.images[:16]
        preds = self.predict(model, images)
        kp, scores = preds["full"]
        drawn = np.stack([skeleton.draw_keypoints(img, np.concatenate([k, s[:, None]], -1), min_score=-np.inf)
                          for img, k, s in zip(images, kp, scores)]) / 255.0  # fmt: skip
        summary = {
            "detector_params": int(sum(np.prod(v.shape) for v in model.detector.trainable_variables)),
            "spatial_params": int(sum(np.prod(v.shape) for v in model.spatial.trainable_variables)),
            **self.evaluate(model),
            "predictions_png": save_grid(drawn, os.path.join(run_dir, "plots", "predictions.png"), columns=8),
        }
        curve = plot_history(history, ("detector_loss", "spatial_loss", "stage"),
                             os.path.join(run_dir, "plots", "training.png"), title="Tompson 2014")  # fmt: skip
        if curve:
            summary["training_png"] = curve
        return summary

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """`serving_default`: `images` float32 `[N, S, S, 3]`, RGB in [0, 1] (a person crop).

        Outputs: `heatmaps [N, S/4, S/4, 17]` (spatial model), `detector_heatmaps`
        (part detector alone), `keypoints [N, 17, 2]` (x, y) in input pixels from
        the spatial model's heatmaps (argmax + quarter offset, x4) and `scores
        [N, 17]` (heatmap maxima). COCO keypoint order.
        """

        def serve(images):
            part, refined = model(images, training=False)
            xy, maxvals = hm_ops.decode_heatmaps(refined)
            return {"heatmaps": refined, "detector_heatmaps": part, "keypoints": xy * float(STRIDE), "scores": maxvals}

        s = self.config.image_size
        return {"serving_default": Endpoint(serve, [tf.TensorSpec([None, s, s, 3], tf.float32, name="images")])}

    def representative_dataset(self, num_samples: int = 64):
        images = self.split("validation").images
        for i in range(min(num_samples, len(images))):
            yield {"images": images[i : i + 1].astype(np.float32)}
