"""HRNet top-down 2D pose estimation (Sun, Xiao, Liu, Wang, CVPR 2019, arXiv:1902.09212).

The recipe of the reference code (leoxiaobin/deep-high-resolution-net.pytorch,
`w32_256x192_adam_lr1e-3.yaml`), on a person crop of `image_height x
image_width`:

* model: `kerasnets.models.hrnet.build_hrnet` (W32: `width=32,
  num_modules=(1, 4, 3), num_blocks=4, stage1_planes=64, stage1_blocks=4`,
  28.5M parameters); the default here is a small CPU/on-device HRNet
  (`width=16`, one module per stage, 2 blocks per branch) at 96x64. Inputs
  are RGB in [0, 1], normalised inside the model with ImageNet's mean/std
  (as the reference's `transforms.Normalize`), so exports take [0, 1] images;
* targets (`kerasnets.ops.heatmaps.gaussian_heatmaps`): unnormalised Gaussians,
  sigma 2 at 1/4 of the input, centred at `int(p / 4 + 0.5)`; target weight
  1 for labelled joints, 0 otherwise;
* loss (`JointsMSELoss`): `L = 1/K sum_k 0.5 * mean((w_k (P_k - H_k))^2)`;
* update: Adam, lr 1e-3, x0.1 after 170/210 and 200/210 of training
  (`lr_decay_at`); the yaml's WD 1e-4 is ignored by the code's Adam branch,
  so there is none here either;
* augmentation: horizontal flip with probability 0.5 (image mirrored,
  `x -> W - 1 - x`, left/right joints swapped); the generator already
  varies scale, rotation and position (the reference's scale/rotation
  augmentation is not re-applied);
* test: argmax + quarter offset, optional flip test (mirror, `flip_back`,
  one-pixel shift, average); metrics PCK@0.2 (of the person box's longer
  side) in crop pixels and COCO OKS AP (pycocotools) in image pixels, with
  the reference's rescoring `score = mean of the heatmap maxima > 0.2`.

Data: `embedded` renders stick figures (`kerasnets.data.skeleton`);
`coco` (`kerasnets.data.coco_keypoints`) reads COCO person keypoints (`<data_dir>/annotations/
person_keypoints_<split>.json` and `<data_dir>/<split>/<file_name>`) with
pycocotools and crops every annotated, non-crowd person from its ground-truth
box (centre, aspect ratio of the input, x1.25 padding; the reference's
`USE_GT_BBOX: true`) with an affine warp. tfds' `coco/2017` has no keypoints,
so it is not used.

Reference (README, COCO val2017, detector boxes with person AP 56.4, flip
test): pose_hrnet_w32 256x192 AP 74.4 (AP50 90.5, AP75 81.9), 28.5M params,
7.1 GFLOPs; W48 256x192 AP 75.1, 63.6M.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import skeleton
from kerasnets.data.coco_keypoints import apply_affine, load_coco_people
from kerasnets.data.streams import array_dataset, eval_dataset
from kerasnets.errors import ConfigError
from kerasnets.metrics import pose as pose_metrics
from kerasnets.models.hrnet import build_hrnet
from kerasnets.ops import heatmaps as hm_ops
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Reference rescoring threshold on heatmap maxima (IN_VIS_THRE).
VISIBILITY_THRESHOLD = 0.2


@dataclasses.dataclass
class HRNetConfig(RecipeConfig):
    """HRNet pose hyper-parameters; defaults: a small HRNet on embedded stick figures at 96x64."""

    steps: int = param(1000, help="training steps (reference: 210 epochs of COCO at batch 128)", min=1)
    batch_size: int = param(32, help="global batch size (reference: 32 per GPU x 4)", min=1)
    image_height: int = param(96, help="input crop height (reference 256); multiple of 4", min=32)
    image_width: int = param(64, help="input crop width (reference 192); multiple of 4", min=32)
    width: int = param(16, help="HRNet width C of the 1/4 branch (W32: 32, W48: 48)", min=1)
    num_modules: tuple[int, ...] = param((1, 1, 1), help="modules in stages 2, 3, 4 (reference: 1, 4, 3)", min=1)
    num_blocks: int = param(2, help="basic blocks per branch (reference: 4)", min=1)
    stage1_planes: int = param(32, help="stage-1 bottleneck planes (reference: 64)", min=1)
    stage1_blocks: int = param(2, help="stage-1 bottleneck blocks (reference: 4)", min=1)
    sigma: float = param(2.0, help="Gaussian sigma of the targets in heatmap pixels (reference: 2)", min=0.5)
    learning_rate: float = param(1e-3, help="Adam learning rate (reference: 1e-3)", min=0.0)
    lr_decay_at: tuple[float, ...] = param(
        (170 / 210, 200 / 210), help="fractions of steps after which lr is x lr_decay_factor (reference: 170, 200 of 210)",
        min=0.0, max=1.0,
    )  # fmt: skip
    lr_decay_factor: float = param(0.1, help="lr multiplier at each boundary", min=0.0, max=1.0)
    flip_augment: bool = param(True, help="random horizontal flips (p=0.5) in training")
    flip_test: bool = param(True, help="report metrics with HRNet's flip test (plain ones are always reported)")
    pck_alpha: float = param(0.2, help="PCK threshold as a fraction of the person box's longer side", min=0.0)
    data: Literal["embedded", "coco"] = param(
        "embedded", help="embedded: synthetic stick figures; coco: person_keypoints JSON + images under data_dir"
    )
    num_train: int = param(4096, help="embedded: training images", min=1)
    num_val: int = param(256, help="embedded: validation images", min=1)
    truncate: float = param(0.1, help="embedded: share of figures placed partly outside the crop", min=0.0, max=1.0)
    train_split: str = param("train2017", help="coco: training split name")
    val_split: str = param("val2017", help="coco: validation split name")
    max_people: Optional[int] = param(None, help="coco: at most this many person crops per split (memory)", min=1)

    def validate(self) -> None:
        super().validate()
        if self.image_height % 4 or self.image_width % 4:
            raise ConfigError(
                f"bad value for 'image_height'/'image_width': {self.image_height}x{self.image_width}; "
                "expected multiples of 4 (heatmaps are at 1/4)"
            )
        if not 1 <= len(self.num_modules) <= 3:
            raise ConfigError(f"bad value for 'num_modules': {self.num_modules!r}; expected 1 to 3 stages")
        if list(self.lr_decay_at) != sorted(self.lr_decay_at):
            raise ConfigError(f"bad value for 'lr_decay_at': {self.lr_decay_at!r}; expected increasing fractions")
        if self.data == "coco" and not self.data_dir:
            raise ConfigError("data='coco' needs data_dir=<folder with annotations/ and the image folders>")
        if self.data == "embedded" and self.batch_size > self.num_train:
            raise ConfigError(f"batch_size {self.batch_size} is larger than num_train {self.num_train}")

    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_height, self.image_width, 3)

    def heatmap_size(self) -> tuple[int, int]:
        return (self.image_height // 4, self.image_width // 4)


# ------------------------------------------------------------------------ data


def embedded_people(num, out_hw, seed, truncate) -> dict:
    poses = skeleton.generate(num, height=out_hw[0], width=out_hw[1], seed=seed, truncate=truncate)
    ids = np.arange(1, num + 1)
    return {
        "images": (poses.images * 255.0 + 0.5).astype(np.uint8),
        "keypoints": poses.keypoints,
        "boxes": poses.boxes,
        "image_ids": ids,
        "to_image": np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (num, 1, 1)),
        "ground_truth": skeleton.to_coco_keypoints(poses.keypoints, poses.boxes, out_hw, ids),
        "pixel_offset": 0.0,
    }


# ----------------------------------------------------------------------- model


class HRNetPose(RecipeModel):
    """`images` in [0, 1] -> heatmaps, with the recipe's Adam step on `JointsMSELoss`."""

    def __init__(self, network, optimizer, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.optimizer = optimizer

    def call(self, images, training=False):
        x = (images - tf.constant(IMAGENET_MEAN, images.dtype)) * tf.constant(
            [1.0 / s for s in IMAGENET_STD], images.dtype
        )
        return self.network(x, training=training)

    def train_step(self, batch):
        images, target, weight = batch
        with tf.GradientTape() as tape:
            pred = self(images, training=True)
            loss = hm_ops.joints_mse_loss(pred, target, weight)
        lr = self.optimizer.learning_rate
        minimize(tape, loss, self.network.trainable_variables, self.optimizer, model=self.network)
        return {"loss": loss, "learning_rate": tf.cast(lr, tf.float32)}


class HRNetRecipe(Recipe):
    name = "hrnet"
    paper = "Sun, Xiao, Liu, Wang 2019. Deep High-Resolution Representation Learning for Human Pose Estimation. arXiv:1902.09212"
    summary = "HRNet top-down 2D pose: Gaussian heatmaps, JointsMSE, flip test, PCK + OKS AP; int8 TFLite on-device"
    config_class = HRNetConfig
    key_metrics = ("loss", "learning_rate")

    def __init__(self, config: HRNetConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._splits: dict = {}
        self._predict = (None, None)

    # -------------------------------------------------------------------- data
    def split(self, name: str) -> dict:
        """`"train"` or `"validation"` people (see `embedded_people` / `load_coco_people`)."""
        if name not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {name!r}")
        if name not in self._splits:
            c = self.config
            hw = (c.image_height, c.image_width)
            if c.data == "embedded":
                num, seed = (c.num_train, c.seed) if name == "train" else (c.num_val, c.seed + 1_000_003)
                self._splits[name] = embedded_people(num, hw, seed, c.truncate)
            else:
                split = c.train_split if name == "train" else c.val_split
                self._splits[name] = load_coco_people(c.data_dir, split, hw, c.max_people)
        return self._splits[name]

    def targets(self, keypoints):
        c = self.config
        return hm_ops.gaussian_heatmaps(
            keypoints, (c.image_height, c.image_width), c.heatmap_size(), sigma=c.sigma
        )

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        """Train: endless `(images, target, weight)` batches, flip-augmented by a stateless draw per step."""
        c = self.config
        data = self.split("train" if split == "train" else "validation")
        perm = tf.constant(skeleton.flip_permutation(), tf.int32)
        width = float(c.image_width)

        def prepare(batch, step):
            images = tf.cast(batch["images"], tf.float32) / 255.0
            kp = batch["keypoints"]
            if c.flip_augment:
                flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed=tf.stack([c.seed, step])) < 0.5
                mirrored_kp = tf.gather(kp, perm, axis=1)
                mirrored_kp = tf.concat([width - 1.0 - mirrored_kp[..., :1], mirrored_kp[..., 1:]], -1)
                images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
                kp = tf.where(flip[:, None, None], mirrored_kp, kp)
            target, weight = self.targets(kp)
            return images, target, weight

        arrays = {"images": data["images"], "keypoints": data["keypoints"]}
        if split == "train":
            return array_dataset(arrays, c.batch_size, c.seed, start_step, map_fn=prepare)
        return eval_dataset(arrays, c.batch_size).map(
            lambda b: (tf.cast(b["images"], tf.float32) / 255.0, *self.targets(b["keypoints"]))
        )

    # ------------------------------------------------------------------- model
    def build_model(self) -> HRNetPose:
        c = self.config
        network = build_hrnet(
            c.input_shape(),
            num_keypoints=skeleton.NUM_KEYPOINTS,
            width=c.width,
            num_modules=c.num_modules,
            num_blocks=c.num_blocks,
            stage1_planes=c.stage1_planes,
            stage1_blocks=c.stage1_blocks,
            seed=c.seed,
        )
        boundaries = [int(round(f * c.steps)) for f in c.lr_decay_at]
        values = [c.learning_rate * c.lr_decay_factor**i for i in range(len(boundaries) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if boundaries else c.learning_rate
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
        model = HRNetPose(network, optimizer, name="hrnet_pose")
        model(tf.zeros((1, *c.input_shape())))
        optimizer.build(network.trainable_variables)
        return model

    # -------------------------------------------------------------- prediction
    def _predict_fn(self, model):
        cached, fn = self._predict
        if cached is not model:
            spec = tf.TensorSpec([None, *self.config.input_shape()], tf.float32)
            pairs = skeleton.FLIP_PAIRS

            @tf.function(input_signature=[spec])
            def fn(images):
                plain = model(images, training=False)
                flipped = hm_ops.flip_test(lambda x: model(x, training=False), images, pairs, shift=True)
                return plain, flipped

            self._predict = (model, fn)
        return fn

    def predict(self, model, images, flip: bool = False, batch_size: int = 64):
        """Keypoints `[N, 17, 2]` in crop pixels and maxima `[N, 17]` for images `[N, H, W, 3]` in [0, 1]."""
        fn = self._predict_fn(model)
        coords, scores = [], []
        for i in range(0, len(images), batch_size):
            plain, flipped = fn(tf.constant(images[i : i + batch_size], tf.float32))
            c, m = hm_ops.decode_heatmaps(flipped if flip else plain)
            coords.append(c.numpy() * 4.0)
            scores.append(m.numpy())
        return np.concatenate(coords), np.concatenate(scores)

    def evaluate(self, model) -> dict[str, float]:
        """PCK@alpha (crop pixels) and OKS AP (image pixels), plain and with the flip test."""
        c = self.config
        data = self.split("validation")
        images = data["images"].astype(np.float32) / 255.0
        out = {}
        for flip in (False, True) if c.flip_test else (False,):
            kp, maxvals = self.predict(model, images, flip=flip)
            tag = "_flip" if flip else ""
            out[f"pck{tag}"], _ = pose_metrics.pck(kp, data["keypoints"], data["boxes"], alpha=c.pck_alpha)
            in_image = np.stack([apply_affine(k + data["pixel_offset"], a) for k, a in
                                 zip(kp, data["to_image"])])  # fmt: skip
            conf = np.where(maxvals > VISIBILITY_THRESHOLD, maxvals, 0.0)
            counted = np.maximum((maxvals > VISIBILITY_THRESHOLD).sum(-1), 1)
            score = conf.sum(-1) / counted
            ap = pose_metrics.oks_ap(
                in_image, score, None, None, None, image_ids=data["image_ids"], ground_truth=data["ground_truth"]
            )
            out[f"oks_ap{tag}"] = ap["AP"]
            out[f"oks_ap50{tag}"] = ap["AP50"]
        return out

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.images import save_grid
        from kerasnets.utils.plots import plot_history

        data = self.split("validation")
        images = data["images"][:16].astype(np.float32) / 255.0
        kp, maxvals = self.predict(model, images, flip=self.config.flip_test)
        drawn = np.stack(
            [skeleton.draw_keypoints(img, np.concatenate([k, m[:, None]], -1), min_score=VISIBILITY_THRESHOLD)
             for img, k, m in zip(images, kp, maxvals)]
        ) / 255.0  # fmt: skip
        summary = {
            "trainable_params": int(sum(np.prod(v.shape) for v in model.network.trainable_variables)),
            **self.evaluate(model),
            "predictions_png": save_grid(drawn, os.path.join(run_dir, "plots", "predictions.png"), columns=8),
        }
        curve = plot_history(history, ("loss", "learning_rate"), os.path.join(run_dir, "plots", "training.png"),
                             title="HRNet", log_y=True)  # fmt: skip
        if curve:
            summary["training_png"] = curve
        return summary

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """`serving_default`: `images` float32 `[N, H, W, 3]`, RGB in [0, 1] (a person crop).

        Preprocessing for clients: crop the person box grown to the input's
        aspect ratio and x1.25 (`kerasnets.data.coco_keypoints.box_to_affine`), resize to H x W, divide
        8-bit values by 255. ImageNet mean/std normalisation is inside the model.

        Outputs:
            heatmaps: `[N, H/4, W/4, 17]` (COCO keypoint order);
            keypoints: `[N, 17, 2]` (x, y) in input pixels (pixel centres at
                integers): argmax + quarter offset toward the higher neighbour, x4;
            scores: `[N, 17]` heatmap maxima (the reference keeps joints > 0.2).
        The flip test is not in the exported graph (it doubles the cost);
        run the model on the mirrored crop yourself if you want it.
        """

        def serve(images):
            heatmaps = model(images, training=False)
            coords, maxvals = hm_ops.decode_heatmaps(heatmaps)
            return {"heatmaps": heatmaps, "keypoints": coords * 4.0, "scores": maxvals}

        spec = tf.TensorSpec([None, *self.config.input_shape()], tf.float32, name="images")
        return {"serving_default": Endpoint(serve, [spec])}

    def representative_dataset(self, num_samples: int = 64):
        images = self.split("train")["images"]
        for i in range(min(num_samples, len(images))):
            yield {"images": images[i : i + 1].astype(np.float32) / 255.0}
