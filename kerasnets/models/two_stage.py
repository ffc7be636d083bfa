"""Two-stage detectors: Faster R-CNN (RPN + RoI box head) and Mask R-CNN (+ mask / keypoint heads).

One family, one code path. `TwoStageDetector` glues together

* a **feature extractor** (`kerasnets.models.resnet_fpn`): one stride-16 map (the
  C4 layout of Faster R-CNN) or an FPN pyramid P2..P6 (Mask R-CNN);
* the **RPN head** (`build_rpn_head`, Ren et al. 2015 Sec. 3.1): a 3x3 conv
  (ReLU) shared by all levels, then sibling 1x1 convs giving `A` objectness
  logits and `4A` box deltas per position (`A` anchors per location);
* the **RoI box head** (`build_box_head`, FPN Sec. 4.2 "2fc"): RoIAlign 7x7 ->
  two fully connected layers (1024 in the paper, ReLU) -> `K + 1` class logits
  and class-specific deltas `[K + 1, 4]` (coder weights 10, 10, 5, 5);
* optionally the **mask head** (`build_mask_head`, Mask R-CNN Fig. 4 right):
  RoIAlign 14x14 -> four 3x3 convs (256) -> 2x2 stride-2 deconv -> 1x1 conv to
  `K` per-class 28x28 mask logits (sigmoid, loss only on the ground-truth
  class's channel of positive RoIs);
* or the **keypoint head** (`build_keypoint_head`, Mask R-CNN Sec. 5): RoIAlign
  14x14 -> eight 3x3 convs (512) -> deconv x2 -> bilinear x2 -> `K` 56x56
  heatmaps, softmax over the `56^2` positions of each keypoint (one-hot target).

Training (`TwoStageDetector.train_step`) is the paper's **approximate joint
training** (Faster R-CNN Sec. 3.2): one loss

    L = L_rpn_cls + L_rpn_box + L_cls + L_box (+ L_mask or L_keypoint)

where proposals are treated as constants (`generate_proposals` stops the
gradient). Per image: anchors labelled by IoU (>= 0.7 positive, < 0.3
negative, plus each ground truth's best anchor), 256 sampled at up to 50 %
positives; proposals = top-k objectness per level, decoded, clipped, NMS 0.7;
ground-truth boxes join the proposals; 512 RoIs sampled at up to 25 %
foreground (IoU >= 0.5). The mask/keypoint heads run on the first
`int(512 * 0.25)` sampled RoIs, which hold every sampled positive
(`sampled_indices` orders positives first), so their shapes stay static.

Inference (`TwoStageDetector.detect`): proposals (test top-k), box head,
class-specific decoding, 0.05 score floor, per-class NMS 0.5, top 100
(`rcnn_postprocess`), then the mask/keypoint head on the final boxes
(Mask R-CNN Sec. 3.1 "Inference"). Every shape is static, so the same graph
runs under MirroredStrategy and in a SavedModel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerasnets.layers.multilevel_roi_align import MultiLevelRoIAlign
from kerasnets.layers.roi_align import RoIAlign
from kerasnets.losses import detection as det_losses
from kerasnets.models.resnet_fpn import he_normal
from kerasnets.ops import keypoints as kp_ops
from kerasnets.ops import masks as mask_ops
from kerasnets.ops import matching
from kerasnets.ops import nms as nms_ops
from kerasnets.ops import proposals as proposal_ops
from kerasnets.ops import sampling
from kerasnets.ops import targets as target_ops
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.models.recipe_model import RecipeModel

HEADS = ("mask", "keypoints")


def _normal(stddev, seed):
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


def _seed(seed, salt):
    return None if seed is None else (int(seed) * 104729 + salt) % (2**31 - 1)


def _reg(weight_decay):
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


# --------------------------------------------------------------------------- heads


def build_rpn_head(channels: int, num_anchors: int, conv_dim: int | None = None, weight_decay: float = 0.0,
                   seed: int | None = None, name: str = "rpn_head") -> keras.Model:
    """RPN head for maps of any size: `[B, h, w, C] -> (logits [B, h, w, A], deltas [B, h, w, 4A])`.

    3x3 conv (`conv_dim`, default `C`; 512 on VGG16's conv5, 256 with FPN) + ReLU,
    then 1x1 convs; all initialised N(0, 0.01) with zero bias (Ren et al. Sec. 3.1.3).
    Shared across pyramid levels.
    """
    conv_dim = conv_dim or channels
    inputs = keras.Input((None, None, channels), name="features")
    x = keras.layers.Conv2D(conv_dim, 3, padding="same", activation="relu", kernel_initializer=_normal(0.01, _seed(seed, 1)),
                            kernel_regularizer=_reg(weight_decay), name="rpn_conv")(inputs)
    logits = keras.layers.Conv2D(num_anchors, 1, kernel_initializer=_normal(0.01, _seed(seed, 2)),
                                 kernel_regularizer=_reg(weight_decay), name="rpn_objectness")(x)
    deltas = keras.layers.Conv2D(4 * num_anchors, 1, kernel_initializer=_normal(0.01, _seed(seed, 3)),
                                 kernel_regularizer=_reg(weight_decay), name="rpn_deltas")(x)
    return keras.Model(inputs, [logits, deltas], name=name)


def build_box_head(pool_size: int, channels: int, num_classes: int, fc_dim: int = 1024, num_fc: int = 2,
                   weight_decay: float = 0.0, seed: int | None = None, name: str = "box_head") -> keras.Model:
    """Box head: `[N, p, p, C] -> (class logits [N, K + 1], deltas [N, K + 1, 4])`.

    `num_fc` fully connected layers of `fc_dim` (the paper's 2 x 1024) with ReLU;
    classifier N(0, 0.01), regressor N(0, 0.001) as in Detectron.
    """
    inputs = keras.Input((pool_size, pool_size, channels), name="pooled")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i in range(num_fc):
        x = keras.layers.Dense(fc_dim, activation="relu",
                               kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform",
                                                                                     _seed(seed, 10 + i)),
                               kernel_regularizer=_reg(weight_decay), name=f"fc{i + 1}")(x)
    logits = keras.layers.Dense(num_classes + 1, kernel_initializer=_normal(0.01, _seed(seed, 20)),
                                kernel_regularizer=_reg(weight_decay), name="class_logits")(x)
    deltas = keras.layers.Dense(4 * (num_classes + 1), kernel_initializer=_normal(0.001, _seed(seed, 21)),
                                kernel_regularizer=_reg(weight_decay), name="box_deltas")(x)
    deltas = keras.layers.Reshape((num_classes + 1, 4), name="box_deltas_per_class")(deltas)
    return keras.Model(inputs, [logits, deltas], name=name)


def _conv_stack(x, num_convs, conv_dim, weight_decay, seed, prefix):
    for i in range(num_convs):
        x = keras.layers.Conv2D(conv_dim, 3, padding="same", activation="relu",
                                kernel_initializer=he_normal(_seed(seed, 30 + i)),
                                kernel_regularizer=_reg(weight_decay), name=f"{prefix}_conv{i + 1}")(x)
    return x


def build_mask_head(pool_size: int, channels: int, num_classes: int, conv_dim: int = 256, num_convs: int = 4,
                    weight_decay: float = 0.0, seed: int | None = None, name: str = "mask_head") -> keras.Model:
    """Mask head: `[N, 14, 14, C] -> [N, 28, 28, K]` per-class mask logits (Mask R-CNN Fig. 4, FPN head)."""
    inputs = keras.Input((pool_size, pool_size, channels), name="pooled")
    x = _conv_stack(inputs, num_convs, conv_dim, weight_decay, seed, "mask")
    x = keras.layers.Conv2DTranspose(conv_dim, 2, strides=2, activation="relu",
                                     kernel_initializer=he_normal(_seed(seed, 40)),
                                     kernel_regularizer=_reg(weight_decay), name="mask_deconv")(x)
    logits = keras.layers.Conv2D(num_classes, 1, kernel_initializer=he_normal(_seed(seed, 41)),
                                 kernel_regularizer=_reg(weight_decay), name="mask_logits")(x)
    return keras.Model(inputs, logits, name=name)


def build_keypoint_head(pool_size: int, channels: int, num_keypoints: int, conv_dim: int = 512, num_convs: int = 8,
                        heatmap_size: int = 56, weight_decay: float = 0.0, seed: int | None = None,
                        name: str = "keypoint_head") -> keras.Model:
    """Keypoint head: `[N, 14, 14, C] -> [N, 56, 56, K]` heatmap logits (Mask R-CNN Sec. 5).

    `num_convs` 3x3 convs (8 x 512 in the paper), a 4x4 stride-2 deconv to
    2x the pool size, then bilinear upsampling to `heatmap_size` (x2: "high
    output resolution (56x56) is required for keypoint-level localization").
    """
    inputs = keras.Input((pool_size, pool_size, channels), name="pooled")
    x = _conv_stack(inputs, num_convs, conv_dim, weight_decay, seed, "keypoint")
    x = keras.layers.Conv2DTranspose(num_keypoints, 4, strides=2, padding="same",
                                     kernel_initializer=he_normal(_seed(seed, 50)),
                                     kernel_regularizer=_reg(weight_decay), name="keypoint_deconv")(x)
    factor = heatmap_size // (2 * pool_size)
    if factor * 2 * pool_size != heatmap_size:
        raise ValueError(f"heatmap_size ({heatmap_size}) must be a multiple of 2 x pool_size ({2 * pool_size})")
    if factor > 1:
        x = keras.layers.UpSampling2D(factor, interpolation="bilinear", name="keypoint_upsample")(x)
    return keras.Model(inputs, x, name=name)


# ------------------------------------------------------------------------ detector


@dataclasses.dataclass(frozen=True)
class TwoStageSpec:
    """Everything a `TwoStageDetector` needs besides its networks (paper defaults in comments)."""

    image_size: int
    num_classes: int
    anchors: np.ndarray  # [A, 4] xyxy pixels, level by level
    level_counts: tuple  # anchors per RPN level
    roi_levels: tuple | None = None  # FPN levels for RoIAlign (None: one map of `feature_stride`)
    feature_stride: int = 16
    canonical_size: float = 224.0  # FPN Eq. 1 (scaled to the image size by the recipes)
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_train: int = 2000
    rpn_post_nms_train: int = 2000
    rpn_pre_nms_test: int = 1000
    rpn_post_nms_test: int = 1000
    rpn_nms_iou: float = 0.7
    rpn_beta: float = 1.0 / 9.0
    roi_batch_size: int = 512
    roi_positive_fraction: float = 0.25
    roi_foreground_iou: float = 0.5
    box_beta: float = 1.0
    box_pool_size: int = 7
    mask_pool_size: int = 14
    sampling_ratio: int = 2
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    max_detections: int = 100
    heads: tuple = ()  # () | ("mask",) | ("keypoints",)
    num_keypoints: int = 0
    head_rois: int | None = None  # cap on the mask/keypoint heads' RoIs per image (None: every sampled positive)

    @property
    def num_head_rois(self) -> int:
        """RoIs per image the mask/keypoint heads train on: the `int(512 * 0.25)` slots that can hold
        positives (positives come first), or fewer with `head_rois` (CPU budget; positives beyond it are
        skipped by those heads only)."""
        slots = max(1, int(self.roi_batch_size * self.roi_positive_fraction))
        return slots if self.head_rois is None else max(1, min(slots, int(self.head_rois)))


class TwoStageDetector(RecipeModel):
    """Faster / Mask R-CNN: `features` (list of maps) + RPN + RoI heads, trained end to end.

    Args:
        features: functional model `images [B, S, S, 3] -> [maps...]` (one stride-16
            map, or P2..P6 when `spec.roi_levels` is set).
        rpn_head: `build_rpn_head` model shared by all maps.
        box_head: `build_box_head` model.
        spec: `TwoStageSpec`.
        optimizer: built in `build()` of the recipe.
        preprocess: uint8 images -> float network input (the recipe's `preprocess`).
        mask_head / keypoint_head: optional heads (`spec.heads`).
        seed: seed of the per-step anchor/RoI sampling (replica-distinct).
    """

    def __init__(self, features, rpn_head, box_head, spec: TwoStageSpec, optimizer=None,
                 preprocess: Callable | None = None, mask_head=None, keypoint_head=None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.features = features
        self.rpn_head = rpn_head
        self.box_head = box_head
        self.mask_head = mask_head
        self.keypoint_head = keypoint_head
        self.spec = spec
        self.optimizer = optimizer
        self._preprocess = preprocess or (lambda images: tf.cast(images, tf.float32) / 255.0)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.anchors = tf.constant(np.asarray(spec.anchors, np.float32))
        if ("mask" in spec.heads) != (mask_head is not None):
            raise ValueError("spec.heads and mask_head disagree")
        if ("keypoints" in spec.heads) != (keypoint_head is not None):
            raise ValueError("spec.heads and keypoint_head disagree")
        if spec.roi_levels is None:
            self.box_pooler = RoIAlign(spec.box_pool_size, 1.0 / spec.feature_stride, spec.sampling_ratio, True,
                                       name="box_roi_align")
            self.head_pooler = RoIAlign(spec.mask_pool_size, 1.0 / spec.feature_stride, spec.sampling_ratio, True,
                                        name="mask_roi_align")
        else:
            common = dict(levels=spec.roi_levels, sampling_ratio=spec.sampling_ratio, aligned=True,
                          canonical_size=spec.canonical_size)
            self.box_pooler = MultiLevelRoIAlign(spec.box_pool_size, name="box_roi_align", **common)
            self.head_pooler = MultiLevelRoIAlign(spec.mask_pool_size, name="mask_roi_align", **common)

    def build(self, input_shape=None):
        # Sub-models are functional (built at construction); the poolers have no weights.
        self.built = True

    # ----------------------------------------------------------------- pieces
    def preprocess(self, images):
        return self._preprocess(images)

    def backbone_and_rpn(self, images, training=False):
        """`(maps, objectness logits [B, A], deltas [B, A, 4])` for preprocessed images."""
        maps = self.features(images, training=training)
        maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
        logits, deltas = [], []
        for fmap in maps:
            lg, dl = self.rpn_head(fmap, training=training)
            logits.append(tf.reshape(lg, [tf.shape(lg)[0], -1]))
            deltas.append(tf.reshape(dl, [tf.shape(dl)[0], -1, 4]))
        return maps, tf.concat(logits, 1), tf.concat(deltas, 1)

    def _roi_maps(self, maps):
        if self.spec.roi_levels is None:
            return maps[0]
        return maps[: len(self.spec.roi_levels)]

    def pool(self, pooler, maps, boxes):
        """RoIAlign `boxes [B, N, 4]` -> `[B * N, p, p, C]` (no gradient to the boxes)."""
        boxes = tf.stop_gradient(boxes)
        pooled = pooler([self._roi_maps(maps), boxes])
        shape = tf.shape(pooled)
        return tf.reshape(pooled, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))

    def proposals(self, logits, deltas, training):
        s = self.spec
        pre, post = (s.rpn_pre_nms_train, s.rpn_post_nms_train) if training else (s.rpn_pre_nms_test, s.rpn_post_nms_test)
        return proposal_ops.generate_proposals(logits, deltas, self.anchors, (s.image_size, s.image_size),
                                               s.level_counts, pre, post, s.rpn_nms_iou)

    def box_predictions(self, maps, rois, training=False):
        """`(class logits [B, R, K + 1], deltas [B, R, K + 1, 4])` for `rois [B, R, 4]`."""
        b, r = tf.shape(rois)[0], tf.shape(rois)[1]
        logits, deltas = self.box_head(self.pool(self.box_pooler, maps, rois), training=training)
        k1 = self.spec.num_classes + 1
        return tf.reshape(logits, [b, r, k1]), tf.reshape(deltas, [b, r, k1, 4])

    def head_logits(self, head, maps, boxes, training=False):
        """Mask / keypoint head logits `[B, R, m, m, C]` for `boxes [B, R, 4]`."""
        out = head(self.pool(self.head_pooler, maps, boxes), training=training)
        return tf.reshape(out, tf.concat([tf.shape(boxes)[:2], tf.shape(out)[1:]], 0))

    # --------------------------------------------------------------- training
    def compute_losses(self, batch, seed, training=True):
        """All loss terms of one replica's batch (dict of scalars; `total` is their sum)."""
        s = self.spec
        images = self.preprocess(batch["images"])
        gt_boxes = tf.cast(batch["boxes"], tf.float32)
        gt_classes = tf.cast(batch["classes"], tf.int32)
        num_objects = tf.cast(batch["num_objects"], tf.int32)
        rpn_seed = seed
        roi_seed = tf.random.experimental.stateless_fold_in(seed, 1)

        maps, rpn_logits, rpn_deltas = self.backbone_and_rpn(images, training=training)
        # RPN (Faster R-CNN Eq. 1): 256 anchors per image, up to half positive.
        labels, target_deltas, _ = target_ops.rpn_targets(self.anchors, gt_boxes, num_objects,
                                                          positive_threshold=s.rpn_positive_iou,
                                                          negative_threshold=s.rpn_negative_iou)
        pos, neg = sampling.sample_rpn_anchors(labels, rpn_seed, s.rpn_batch_size, s.rpn_positive_fraction)
        rpn = det_losses.rpn_loss(rpn_logits, rpn_deltas, target_deltas, pos, neg, beta=s.rpn_beta)

        # Proposals are constants for the heads (approximate joint training).
        props = self.proposals(rpn_logits, rpn_deltas, training=True)
        t = target_ops.roi_targets(props["boxes"], gt_boxes, gt_classes, num_objects, roi_seed,
                                   num_samples=s.roi_batch_size, positive_fraction=s.roi_positive_fraction,
                                   foreground_threshold=s.roi_foreground_iou,
                                   background_threshold=s.roi_foreground_iou, proposal_valid=props["valid"])
        cls_logits, box_deltas = self.box_predictions(maps, t["rois"], training=training)
        frcnn = det_losses.fast_rcnn_loss(cls_logits, box_deltas, t["labels"], t["target_deltas"], t["valid"],
                                          beta=s.box_beta)
        out = {
            "rpn_objectness": rpn["objectness"],
            "rpn_box": rpn["box"],
            "classification": frcnn["classification"],
            "box": frcnn["box"],
        }
        if s.heads:
            p = s.num_head_rois
            rois = t["rois"][:, :p]
            head_labels = t["labels"][:, :p]
            positive = head_labels > 0
            matched = tf.where(positive, t["matches"][:, :p], matching.NEGATIVE)
            if "mask" in s.heads:
                targets = mask_ops.mask_targets(batch["masks"], rois, matched, self._mask_size())
                logits = self.head_logits(self.mask_head, maps, rois, training=training)
                out["mask"] = det_losses.mask_rcnn_loss(logits, head_labels, targets)
            if "keypoints" in s.heads:
                logits = self.head_logits(self.keypoint_head, maps, rois, training=training)
                gt_kp = matching.gather_matched(matched, tf.cast(batch["keypoints"], tf.float32))
                index, valid = kp_ops.keypoint_targets(gt_kp, rois, int(logits.shape[-2]))
                valid &= positive[..., None]
                out["keypoint"] = det_losses.keypoint_rcnn_loss(logits, index, valid)
        out["total"] = tf.add_n(list(out.values()))
        out["num_positive_rois"] = tf.reduce_mean(tf.reduce_sum(tf.cast(t["labels"] > 0, tf.float32), 1))
        return out

    def _mask_size(self):
        return int(self.mask_head.outputs[0].shape[1])

    def train_step(self, batch):
        seed = replica_seed(self.seed_generator)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            logs = self.compute_losses(batch, seed, training=True)
        minimize(tape, logs["total"], variables, self.optimizer, model=self)
        logs = dict(logs)
        logs["loss"] = logs.pop("total")
        logs["learning_rate"] = tf.cast(self.optimizer.learning_rate, tf.float32)
        return logs

    # -------------------------------------------------------------- inference
    def detect(self, images):
        """Detections for preprocessed images `[B, S, S, 3]` (the `DetectionRecipe.detect` format).

        Returns `boxes [B, D, 4]` (xyxy input pixels), `scores [B, D]`, `classes
        [B, D]` (1..K, 0 padding), `num_detections [B]`, plus `masks [B, D, 28, 28]`
        (sigmoid of the detected class's mask) and/or `keypoints [B, D, K, 3]`
        `(x, y, score)`.
        """
        s = self.spec
        maps, logits, deltas = self.backbone_and_rpn(images, training=False)
        props = self.proposals(logits, deltas, training=False)
        cls_logits, box_deltas = self.box_predictions(maps, props["boxes"])
        det = nms_ops.rcnn_postprocess(cls_logits, box_deltas, props["boxes"], (s.image_size, s.image_size),
                                       s.score_threshold, s.nms_iou, s.max_detections, roi_valid=props["valid"])
        out = {k: det[k] for k in ("boxes", "scores", "classes", "num_detections")}
        if "mask" in s.heads:
            mask_logits = self.head_logits(self.mask_head, maps, det["boxes"])
            channel = tf.maximum(det["classes"] - 1, 0)
            picked = tf.gather(mask_logits, channel, axis=-1, batch_dims=2)
            out["masks"] = tf.sigmoid(picked)
        if "keypoints" in s.heads:
            heat = self.head_logits(self.keypoint_head, maps, det["boxes"])
            out["keypoints"] = kp_ops.decode_keypoint_heatmaps(heat, det["boxes"])
        return out

    def call(self, images, training=False):
        return self.detect(images)


def head_parameter_counts(model: TwoStageDetector) -> dict:
    """Trainable parameters per part (for the recipes' summaries)."""
    parts = {"features": model.features, "rpn_head": model.rpn_head, "box_head": model.box_head,
             "mask_head": model.mask_head, "keypoint_head": model.keypoint_head}
    return {k: int(sum(np.prod(v.shape) for v in m.trainable_variables)) for k, m in parts.items() if m is not None}


def scaled_sizes(sizes: Sequence[float], image_size: int, reference_size: float) -> tuple:
    """Paper anchor sizes for a `reference_size` image (600 Faster R-CNN, 800 FPN), rescaled to `image_size`."""
    return tuple(float(round(z * image_size / reference_size, 1)) for z in sizes)
