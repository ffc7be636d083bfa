"""SSD: Single Shot MultiBox Detector (Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg, ECCV 2016, arXiv:1512.02325).

One network predicts, on several feature maps of decreasing resolution, class
scores and box offsets for a fixed set of **default boxes** (Sec. 2.1-2.2);
no proposal stage. What the recipe does, with the paper's values:

* **default boxes** (`kerasnets.ops.anchors.ssd_default_boxes`): on map `k`
  of `m`, scale `s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)` (0.2 .. 0.9),
  aspect ratios {1, 2, 1/2} (+ {3, 1/3} on the middle maps) and an extra
  square of scale `sqrt(s_k s_{k+1})`, centred on the cells;
* **matching** (`kerasnets.ops.targets.ssd_targets`): every ground-truth box
  takes its best-overlapping default box, and every default box with jaccard
  overlap > 0.5 with some ground truth is matched to it; the others are
  background. Offsets are encoded with the variances 0.1 / 0.2 (weights
  10, 10, 5, 5, `kerasnets.ops.boxes.encode_boxes`);
* **objective** (Eq. 1, `kerasnets.losses.detection.ssd_loss`):

      L = (L_conf + alpha L_loc) / N,   N = number of matched default boxes, alpha = 1

  `L_loc` smooth L1 over the positives, `L_conf` softmax cross-entropy over
  the positives and the **hard negatives**: per image the background boxes
  with the highest confidence loss, at most 3 per positive (Sec. 2.2);
* **augmentation** (Sec. 2.2 "Data augmentation"): each training image is
  either kept, or replaced by a patch whose minimum jaccard overlap with the
  objects is 0.1, 0.3, 0.5, 0.7 or 0.9, or a random patch (size 0.3-1 of the
  image, aspect 1/2-2, as in the reference Caffe sampler); objects whose centre
  falls in the patch are kept; the patch is resized back to S x S; then a
  horizontal flip with p = 0.5 and photometric distortions (brightness,
  contrast, saturation; the paper follows Howard 2013). The later "zoom out"
  expansion for small objects is not implemented;
* **optimisation**: SGD with momentum 0.9 and weight decay 5e-4 (coupled:
  kernels carry `L2(5e-4 / 2)`, so the gradient gets `+ 5e-4 w`, as Caffe),
  batch 32; the paper trains VOC at lr 1e-3 for 40k iterations, then 1e-4 and
  1e-5 for 10k each (x0.1 at 2/3 and 5/6 of training, `lr_decay_at`). The
  reduced network here trains from scratch with BatchNorm, so its default lr
  is higher (0.02) with a linear warm-up over the first `warmup_steps`;
* **inference** (Sec. 3, `kerasnets.ops.nms.ssd_postprocess`): softmax, per
  class the top 400 boxes above a 0.01 score, per-class NMS at jaccard 0.45,
  top 200 per image.

The network (`kerasnets.models.ssd.build_ssd`) is the SSD300 layout (VGG16
base + extra layers + 3x3 predictors) reduced for CPU training on the 96 x
96 synthetic shapes; `kerasnets.models.ssd.build_ssd300_vgg16` is the
paper's. Paper results: SSD300 74.3 mAP on VOC2007 test (59 FPS on a Titan
X), 23.2 AP on COCO test-dev (SSD512: 76.8 / 26.8).

Export: `serving_default` takes uint8 images of any size, with the resize,
NMS and the mapping of boxes back to the input image inside the graph (TF
Serving); `fixed_size` (uint8 `[1, S, S, 3]`, letterboxed by the caller) is
converted to TFLite with builtin ops only, NMS included
(`NON_MAX_SUPPRESSION_V4`): `kerasnets export recipe=ssd run=... format=tflite`
(or `tflite-fp16`). Full-integer TFLite cannot hold NMS (and the TF converter's
int8 calibrator crashes on that graph), so `format=tflite-int8` is not
supported for `fixed_size`; `format=tflite-int8` converts the `raw` endpoint
instead (all decoded default boxes and class probabilities, no NMS), with the
0.01 floor / NMS 0.45 / top 200 done on the device.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.losses.detection import ssd_loss
from kerasnets.models.ssd import build_ssd, default_aspect_ratios, ssd_feature_sizes
from kerasnets.ops import anchors as anchor_ops
from kerasnets.ops import boxes as box_ops
from kerasnets.ops.nms import ssd_postprocess
from kerasnets.ops.targets import ssd_targets, valid_objects
from kerasnets.tasks.detection import DetectionConfig, DetectionRecipe
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint
from kerasnets.models.recipe_model import RecipeModel

#: VGG's per-channel RGB means on 0..255, subtracted by the Caffe SSD.
PIXEL_MEAN = (123.0, 117.0, 104.0)
#: The Caffe SSD's patch sampler: minimum jaccard overlaps (None = any patch), plus "keep the whole image".
MIN_OVERLAPS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclasses.dataclass
class SSDConfig(DetectionConfig):
    """SSD hyper-parameters; defaults: a reduced SSD on 96x96 shapes (paper values in the help texts)."""

    steps: int = param(1200, help="training steps (paper VOC: 60k iterations at batch 32)", min=1)
    batch_size: int = param(32, help="global batch size (paper: 32)", min=1)
    image_size: int = param(96, help="square input side (paper: 300 or 512)", min=32)
    data: Literal["shapes", "coco", "tfds"] = param(
        "shapes", help="shapes: embedded synthetic data; coco: COCO-format JSON + images; tfds: coco/2017, voc"
    )
    # network
    stage_widths: tuple[int, ...] = param((16, 32, 64, 128), help="VGG stage widths up to conv4_3 (paper: 64, 128, "
                                          "256, 512)", min=1)
    stage_depths: tuple[int, ...] = param((1, 1, 2, 2), help="convs per stage (paper: 2, 2, 3, 3)", min=1)
    top_widths: tuple[int, ...] = param((128,), help="conv5_x widths after pool4 (paper: 512, 512, 512)", min=1)
    fc_width: int = param(256, help="fc6/fc7 width (paper: 1024)", min=1)
    fc_dilation: int = param(1, help="fc6 dilation (paper: 6 at 19x19)", min=1)
    extra_widths: tuple[int, ...] = param((128, 128, 128), help="widths of the extra source layers, stride 2 "
                                          "(paper: 512, 256, 256, 256)", min=1)
    batch_norm: bool = param(True, help="BatchNorm after every base/extra conv (paper: none, ImageNet VGG16 + "
                             "L2Norm on conv4_3)")
    # default boxes and matching
    s_min: float = param(0.2, help="scale of the first map's default boxes (paper: 0.2)", min=0.0, max=1.0)
    s_max: float = param(0.9, help="scale of the last map's default boxes (paper: 0.9)", min=0.0, max=2.0)
    aspect_ratios: tuple[float, ...] = param((2.0, 3.0), help="ratios r (used as r and 1/r) on the middle maps; "
                                             "the first and last use only the first (SSD300)", min=1.0)
    match_threshold: float = param(0.5, help="jaccard overlap for a positive default box (paper: 0.5)",
                                   min=0.0, max=1.0)
    neg_pos_ratio: float = param(3.0, help="hard negatives per positive (paper: 3)", min=0.0)
    alpha: float = param(1.0, help="weight of the localisation loss (paper: 1)", min=0.0)
    # optimisation
    learning_rate: float = param(0.02, help="SGD learning rate (paper: 1e-3 with an ImageNet VGG16)", min=0.0)
    momentum: float = param(0.9, help="SGD momentum (paper: 0.9)", min=0.0, max=1.0)
    weight_decay: float = param(5e-4, help="coupled L2 weight decay (paper: 5e-4)", min=0.0)
    warmup_steps: int = param(100, help="linear learning-rate warm-up steps", min=0)
    lr_decay_at: tuple[float, ...] = param((2 / 3, 5 / 6), help="fractions of steps after which lr is x0.1 "
                                           "(paper: 40k, 50k of 60k)", min=0.0, max=1.0)
    # augmentation
    random_crop: bool = param(True, help="the paper's patch sampling (min jaccard 0.1..0.9 or any patch)")
    crop_min_scale: float = param(0.3, help="smallest patch side as a fraction of the image (Caffe SSD: 0.3)",
                                  min=0.05, max=1.0)
    photometric: bool = param(True, help="random brightness, contrast and saturation")
    # inference (paper: Sec. 3)
    score_threshold: float = param(0.01, help="detections need a score > this (paper: 0.01)", min=0.0, max=1.0)
    nms_iou_threshold: float = param(0.45, help="per-class NMS jaccard threshold (paper: 0.45)", min=0.0, max=1.0)
    max_detections: int = param(200, help="detections kept per image (paper: 200)", min=1)
    pre_nms_top_k: int = param(400, help="candidates per class before NMS (reference: 400)", min=1)

    def validate(self) -> None:
        super().validate()
        if not self.s_min < self.s_max:
            raise ConfigError(f"bad values for 's_min'/'s_max': {self.s_min}, {self.s_max}; expected s_min < s_max")
        if len(self.stage_widths) != len(self.stage_depths):
            raise ConfigError(f"bad value for 'stage_depths': {self.stage_depths!r}; needs one depth per stage "
                              f"width {self.stage_widths!r}")
        if list(self.lr_decay_at) != sorted(self.lr_decay_at):
            raise ConfigError(f"bad value for 'lr_decay_at': {self.lr_decay_at!r}; expected increasing fractions")
        if not self.aspect_ratios:
            raise ConfigError("bad value for 'aspect_ratios': expected at least one ratio")


# ------------------------------------------------------------------ augmentation


def _compact_objects(boxes, classes, keep):
    """Move kept objects to the front of the padded arrays; the rest become padding."""
    order = tf.argsort(tf.cast(~keep, tf.int32), axis=-1, stable=True)
    boxes = tf.gather(boxes, order, batch_dims=1)
    classes = tf.gather(classes, order, batch_dims=1)
    num = tf.reduce_sum(tf.cast(keep, tf.int32), axis=-1)
    real = tf.range(tf.shape(classes)[1])[None, :] < num[:, None]
    return tf.where(real[..., None], boxes, 0.0), tf.where(real, classes, 0), num


def ssd_random_crop(batch: dict, seed, min_scale: float = 0.3, num_trials: int = 16) -> dict:
    """The SSD patch sampler on a padded batch (uint8 square images), stateless in `seed` (shape [2]).

    Per image one option is drawn uniformly: the whole image, a patch with
    minimum jaccard overlap 0.1, 0.3, 0.5, 0.7 or 0.9 with some object, or
    any patch. `num_trials` candidate patches (side `[min_scale, 1]` of the
    image, aspect ratio in [1/2, 2]) are drawn, and the first that satisfies
    the option and contains the centre of some object is used (else the whole
    image). Objects whose centre lies in the patch are kept, clipped to it;
    the patch is resized to the full size (bilinear).
    """
    images = batch["images"]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    b = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    shape = tf.stack([b, num_trials])
    scale = tf.random.stateless_uniform(shape, seeds[0], min_scale, 1.0)
    log_ratio = tf.random.stateless_uniform(shape, seeds[1], math.log(0.5), math.log(2.0))
    w = scale * tf.exp(0.5 * log_ratio)
    h = scale * tf.exp(-0.5 * log_ratio)
    ok_shape = (w <= 1.0) & (h <= 1.0) & (w / h >= 0.5) & (w / h <= 2.0)
    w, h = tf.minimum(w, 1.0), tf.minimum(h, 1.0)
    x0 = tf.random.stateless_uniform(shape, seeds[2]) * (1.0 - w)
    y0 = tf.random.stateless_uniform(shape, seeds[3]) * (1.0 - h)
    patches = tf.stack([x0, y0, x0 + w, y0 + h], axis=-1) * size  # [B, T, 4] pixels
    valid = valid_objects(batch["num_objects"], tf.shape(batch["boxes"])[1])
    iou = box_ops.pairwise_iou(patches, batch["boxes"])  # [B, T, G]
    best = tf.reduce_max(tf.where(valid[:, None, :], iou, -1.0), axis=-1)
    centres = (batch["boxes"][..., :2] + batch["boxes"][..., 2:]) / 2.0  # [B, G, 2]
    inside = ((centres[:, None, :, 0] > patches[..., 0:1]) & (centres[:, None, :, 0] < patches[..., 2:3])
              & (centres[:, None, :, 1] > patches[..., 1:2]) & (centres[:, None, :, 1] < patches[..., 3:4])
              & valid[:, None, :])  # [B, T, G]
    thresholds = tf.constant((-2.0,) + MIN_OVERLAPS + (-1.0,))  # -2: keep the image, -1: any patch
    option = tf.random.stateless_uniform([b], seeds[4], 0, len(MIN_OVERLAPS) + 2, dtype=tf.int32)
    min_iou = tf.gather(thresholds, option)
    good = ok_shape & tf.reduce_any(inside, axis=-1) & (best >= min_iou[:, None]) & (min_iou[:, None] > -2.0)
    found = tf.reduce_any(good, axis=-1)
    pick = tf.argmax(tf.cast(good, tf.int32), axis=-1, output_type=tf.int32)
    whole = tf.stack([0.0, 0.0, size, size])
    patch = tf.where(found[:, None], tf.gather(patches, pick, batch_dims=1), whole[None])  # [B, 4]
    keep = tf.where(found[:, None], tf.gather(inside, pick, batch_dims=1), valid)
    px1, py1, px2, py2 = tf.unstack(patch, axis=-1)
    pw, ph = px2 - px1, py2 - py1
    # crop_and_resize samples at corners: map the patch's pixel interval [p1, p2) onto output pixel centres.
    corner = tf.stack([py1 + 0.5 * ph / size - 0.5, px1 + 0.5 * pw / size - 0.5,
                       py2 - 0.5 * ph / size - 0.5, px2 - 0.5 * pw / size - 0.5], axis=-1) / (size - 1.0)
    crop_boxes = tf.where(found[:, None], corner, tf.constant([0.0, 0.0, 1.0, 1.0])[None])
    side = tf.shape(images)[1]
    cropped = tf.image.crop_and_resize(tf.cast(images, tf.float32), crop_boxes, tf.range(b), tf.stack([side, side]))
    cropped = tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)
    offset = tf.stack([px1, py1, px1, py1], axis=-1)[:, None, :]
    stretch = tf.stack([size / pw, size / ph, size / pw, size / ph], axis=-1)[:, None, :]
    moved = tf.clip_by_value((batch["boxes"] - offset) * stretch, 0.0, size)
    boxes = tf.where(found[:, None, None], moved, batch["boxes"])
    boxes, classes, num = _compact_objects(boxes, batch["classes"], keep)
    return {**batch, "images": cropped, "boxes": boxes, "classes": classes, "num_objects": num}


def photometric_distort(images, seed, brightness: float = 32.0, contrast=(0.5, 1.5), saturation=(0.5, 1.5)):
    """Random brightness (+-32 levels), contrast and saturation per image, each with p = 0.5 (uint8 in/out)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    x = tf.cast(images, tf.float32)
    b = tf.shape(x)[0]

    def draw(i, lo, hi):
        apply = tf.random.stateless_uniform([b, 1, 1, 1], seeds[2 * i]) < 0.5
        value = tf.random.stateless_uniform([b, 1, 1, 1], seeds[2 * i + 1], lo, hi)
        return apply, value

    apply, delta = draw(0, -brightness, brightness)
    x = tf.where(apply, x + delta, x)
    apply, factor = draw(1, *contrast)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = tf.where(apply, (x - mean) * factor + mean, x)
    apply, factor = draw(2, *saturation)
    grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    x = tf.where(apply, grey + (x - grey) * factor, x)
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


# ------------------------------------------------------------------------ model


class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `lr` over `warmup_steps`, then x`factor` at each boundary."""

    def __init__(self, lr, warmup_steps, boundaries, factor=0.1):
        self.lr, self.warmup_steps, self.boundaries, self.factor = float(lr), int(warmup_steps), list(boundaries), factor

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.lr, tf.float32)
        for boundary in self.boundaries:
            lr = tf.where(step >= boundary, lr * self.factor, lr)
        if self.warmup_steps:
            lr = lr * tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
        return lr

    def get_config(self):
        return {"lr": self.lr, "warmup_steps": self.warmup_steps, "boundaries": self.boundaries,
                "factor": self.factor}


class SSDModel(RecipeModel):
    """The SSD network plus its default boxes and the training step of Eq. 1."""

    def __init__(self, network, default_boxes, optimizer, preprocess, config: SSDConfig, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.default_boxes = tf.constant(default_boxes, tf.float32)
        self.optimizer = optimizer
        self.preprocess = preprocess
        self.cfg = config

    def call(self, images, training=False):
        return self.network(images, training=training)

    def targets(self, batch):
        labels, deltas, _ = ssd_targets(self.default_boxes, batch["boxes"], batch["classes"], batch["num_objects"],
                                        self.cfg.match_threshold)
        return labels, deltas

    def losses_on(self, batch, training=True):
        labels, target_deltas = self.targets(batch)
        class_logits, box_deltas = self(self.preprocess(batch["images"]), training=training)
        return ssd_loss(class_logits, box_deltas, labels, target_deltas, self.cfg.neg_pos_ratio, self.cfg.alpha)

    def train_step(self, batch):
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.losses_on(batch, training=True)
            loss = terms["classification"] + terms["box"]
        minimize(tape, loss, variables, self.optimizer, model=self.network)
        lr = self.optimizer.learning_rate
        return {"loss": loss, "classification": terms["classification"], "box": terms["box"],
                "num_positives": terms["num_positives"], "learning_rate": tf.cast(lr, tf.float32)}


class SSDRecipe(DetectionRecipe):
    name = "ssd"
    paper = ("Liu, Anguelov, Erhan, Szegedy, Reed, Fu, Berg 2016. SSD: Single Shot MultiBox Detector. "
             "arXiv:1512.02325")
    summary = "SSD: multi-scale default boxes, 3:1 hard negatives, smooth L1 + softmax CE; COCO AP, TFLite with NMS"
    config_class = SSDConfig
    key_metrics = ("loss", "classification", "box", "learning_rate")
    #: full-integer TFLite cannot hold the NMS: int8 converts `raw` (NMS on the device).
    tflite_endpoints = {"tflite-int8": "raw"}

    # ------------------------------------------------------------------ data
    def augment(self, batch, seed):
        """The paper's patch sampling, horizontal flip and photometric distortions (each switchable)."""
        c = self.config
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
        if c.random_crop:
            batch = ssd_random_crop(batch, seeds[0], c.crop_min_scale)
        batch = super().augment(batch, seeds[1])
        if c.photometric:
            batch = {**batch, "images": photometric_distort(batch["images"], seeds[2])}
        return batch

    def preprocess(self, images):
        """VGG mean subtraction as the Caffe SSD, scaled by 1/128 (the reduced network trains from scratch)."""
        return (tf.cast(images, tf.float32) - tf.constant(PIXEL_MEAN)) / 128.0

    # ----------------------------------------------------------------- model
    def aspect_ratios(self, num_sources: int):
        c = self.config
        pattern = default_aspect_ratios(num_sources)
        return [tuple(c.aspect_ratios) if len(p) > 1 else tuple(c.aspect_ratios[:1]) for p in pattern]

    def build_network(self) -> keras.Model:
        c = self.config
        num_sources = 2 + len(c.extra_widths)
        return build_ssd(
            c.image_size, self.num_classes, stage_widths=c.stage_widths, stage_depths=c.stage_depths,
            top_widths=c.top_widths, fc_width=c.fc_width, fc_dilation=c.fc_dilation,
            extras=tuple((w, 2, "same") for w in c.extra_widths), aspect_ratios=self.aspect_ratios(num_sources),
            batch_norm=c.batch_norm, weight_decay=c.weight_decay, seed=c.seed,
        )

    def default_boxes(self, network) -> np.ndarray:
        """`[A, 4]` default boxes in input pixels for `network`'s source maps."""
        c = self.config
        sizes = ssd_feature_sizes(network)
        scales = anchor_ops.ssd_scales(len(sizes), c.s_min, c.s_max)
        return anchor_ops.ssd_default_boxes(sizes, c.image_size, self.aspect_ratios(len(sizes)), scales=scales)

    def build_model(self) -> SSDModel:
        c = self.config
        network = self.build_network()
        boundaries = [int(round(f * c.steps)) for f in c.lr_decay_at]
        optimizer = keras.optimizers.SGD(WarmupPiecewise(c.learning_rate, c.warmup_steps, boundaries),
                                         momentum=c.momentum)
        model = SSDModel(network, self.default_boxes(network), optimizer, self.preprocess, c, name="ssd_detector")
        model(tf.zeros((1, *self.image_shape)))
        optimizer.build(network.trainable_variables)
        return model

    def detect(self, model, images):
        c = self.config
        class_logits, box_deltas = model(images, training=False)
        return ssd_postprocess(
            class_logits, box_deltas, model.default_boxes, (c.image_size, c.image_size),
            score_threshold=c.score_threshold, iou_threshold=c.nms_iou_threshold, max_detections=c.max_detections,
            pre_nms_top_k=c.pre_nms_top_k,
        )

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """The base's `serving_default` and `fixed_size` (NMS inside), plus `raw` for own post-processing.

        `raw`: uint8 `[1, S, S, 3]` letterboxed images -> `boxes [1, A, 4]`
        (every default box decoded, xyxy input pixels, clipped) and `scores
        [1, A, K]` (softmax without the background column): no NMS, so it
        also converts to full-integer TFLite, which cannot hold NMS
        (`kerasnets.export.tflite.convert_saved_model(dir, "tflite-int8",
        "raw", ...)`); apply the 0.01 floor, per-class NMS at 0.45 and top 200
        on the device.
        """
        endpoints = super().export_endpoints(model)
        size = self.config.image_size

        def raw(images):
            class_logits, box_deltas = model(self.preprocess(images), training=False)
            boxes = box_ops.decode_boxes(box_deltas, model.default_boxes[None])
            return {"boxes": box_ops.clip_boxes(boxes, (size, size)),
                    "scores": tf.nn.softmax(class_logits, axis=-1)[..., 1:]}

        endpoints["raw"] = Endpoint(raw, [tf.TensorSpec([1, *self.image_shape], tf.uint8, "images")])
        return endpoints
