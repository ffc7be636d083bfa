"""Faster R-CNN (Ren, He, Girshick, Sun, NeurIPS 2015, arXiv:1506.01497): RPN + RoI box head.

The detector (`kerasnets.models.two_stage.TwoStageDetector`) on one stride-16
feature map, as the paper's VGG16 conv5_3 / ResNet C4 layouts:

* **anchors** (Sec. 3.1.1): 3 scales x 3 aspect ratios (0.5, 1, 2) = 9 per
  position of the stride-16 map. The paper's scales 128, 256, 512 are for
  images with a 600-pixel shorter side; `anchor_sizes=None` rescales them to
  `image_size` (`size * image_size / 600`: 27, 55, 109 px at 128);
* **RPN** (Sec. 3.1): 3x3 conv + sibling 1x1 convs (objectness logit, 4 deltas
  per anchor). Labels: IoU >= 0.7 positive (plus each ground truth's best
  anchor), < 0.3 negative; 256 anchors per image with up to 50 % positives;

      L_rpn = 1/N_cls sum_i BCE(p_i, p*_i) + lambda/N_reg sum_i p*_i smoothL1(t_i - t*_i)

  (Eq. 1; both sums normalised by the 256 sampled anchors, the reference
  implementations' choice, which equals `lambda/N_reg` with `lambda ~ 10`);
  smooth L1 with beta = 1/9 (torchvision);
* **proposals** (Sec. 3.3): top 2000 objectness (train; 1000 at test),
  decoded with weights (1, 1, 1, 1) and the log(1000/16) clamp, clipped,
  NMS at IoU 0.7, at most 2000 (train) / 1000 (test) kept;
* **RoI head**: RoIAlign 7x7 (Mask R-CNN's fix of RoIPool's quantisation;
  `kerasnets.layers.RoIAlign`, aligned, sampling ratio 2) -> 2 FC (1024 in
  the paper; `fc_dim`) -> K + 1 class logits and class-specific deltas
  (weights 10, 10, 5, 5). Ground-truth boxes join the proposals; 512 RoIs per
  image with up to 25 % foreground (IoU >= 0.5), the rest background (< 0.5)
  (`roi_batch_size`: 128 by default for 128-px images on a CPU);
  Fast R-CNN's multi-task loss `L = L_cls + [u >= 1] smoothL1(t^u - v)`;
* **approximate joint training** (Sec. 3.2): one SGD step on the sum of the
  four losses, the proposals treated as constants;
* **test**: softmax scores > 0.05, per-class NMS at IoU 0.5, 100 detections
  per image (`kerasnets.ops.nms.rcnn_postprocess`).

Optimiser: SGD with momentum 0.9, coupled weight decay 1e-4 (kernel L2),
linear warm-up then x0.1 steps (the reference schedules); horizontal flips
are the only augmentation (Sec. 3.3). The backbone is a small ResNet trained
from scratch (no ImageNet weights offline); `backbone_blocks=(3, 4, 6, 3),
backbone_block="bottleneck", backbone_width=64` is ResNet-50 (C4 layout with
the 2-FC head instead of the res5 head).

Reference numbers (context, not a claim): VGG16, COCO test-dev AP 21.9
(AP@0.5 42.7), VOC 2007 test mAP 73.2 (07+12 training) at 5 fps.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import keras
import tensorflow as tf

from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.models import resnet_fpn, two_stage
from kerasnets.ops import anchors as anchor_ops
from kerasnets.saving import register
from kerasnets.tasks.detection import DetectionConfig, DetectionRecipe


@dataclasses.dataclass
class FasterRCNNConfig(DetectionConfig):
    """Faster R-CNN hyper-parameters: paper defaults, a small CPU backbone, and shapes at 128 px."""

    steps: int = param(1000, help="training steps (paper: 80k/240k iterations on VOC/COCO)", min=1)
    batch_size: int = param(8, help="global batch size (paper: 1-2 images per GPU)", min=1)
    backbone_blocks: tuple[int, ...] = param((1, 1, 1, 1), help="residual blocks in stages 2-5 (ResNet-50: 3,4,6,3)",
                                             min=1)
    backbone_width: int = param(16, help="stem channels / stage-2 planes, doubled per stage (ResNet: 64)", min=1)
    backbone_block: Literal["basic", "bottleneck"] = param("basic", help="residual block (ResNet-50/101: bottleneck)")
    norm: Literal["group", "batch"] = param("group", help="normalisation in the backbone (from scratch: group)")
    anchor_sizes: Optional[tuple[float, ...]] = param(
        None, help="anchor sizes in pixels (default: the paper's 128, 256, 512 for 600 px, rescaled to image_size)",
        min=1.0)
    anchor_aspect_ratios: tuple[float, ...] = param((0.5, 1.0, 2.0), help="anchor height/width ratios", min=0.01)
    rpn_conv_dim: Optional[int] = param(None, help="RPN 3x3 conv channels (default: the feature channels)", min=1)
    rpn_positive_iou: float = param(0.7, help="anchor IoU for a positive RPN label", min=0.0, max=1.0)
    rpn_negative_iou: float = param(0.3, help="anchor IoU below which an anchor is negative", min=0.0, max=1.0)
    rpn_batch_size: int = param(256, help="anchors sampled per image for the RPN loss", min=1)
    rpn_positive_fraction: float = param(0.5, help="maximum share of positive sampled anchors", min=0.0, max=1.0)
    rpn_pre_nms_top_k_train: int = param(2000, help="proposal candidates per level before NMS (training)", min=1)
    rpn_post_nms_top_k_train: int = param(2000, help="proposals kept after NMS (training)", min=1)
    rpn_pre_nms_top_k_test: int = param(1000, help="proposal candidates per level before NMS (test)", min=1)
    rpn_post_nms_top_k_test: int = param(1000, help="proposals kept after NMS (test)", min=1)
    rpn_nms_iou: float = param(0.7, help="NMS IoU threshold of the proposals", min=0.0, max=1.0)
    roi_batch_size: int = param(
        128, help="RoIs sampled per image for the box head (paper: 512 on 600-1000 px images; 128 for the "
        "128-px CPU default, where the head dominates the step time)", min=1)
    roi_positive_fraction: float = param(0.25, help="maximum share of foreground RoIs (paper: 25 %)",
                                         min=0.0, max=1.0)
    roi_foreground_iou: float = param(0.5, help="RoI IoU for foreground; below is background", min=0.0, max=1.0)
    fc_dim: int = param(256, help="width of the box head's 2 FC layers (paper: 1024)", min=1)
    optimizer: Literal["sgd", "adam"] = param("sgd", help="sgd (paper, momentum 0.9) or adam")
    learning_rate: float = param(0.02, help="peak learning rate (Mask R-CNN: 0.02 at 16 images)", min=0.0)
    momentum: float = param(0.9, help="SGD momentum", min=0.0, max=1.0)
    weight_decay: float = param(1e-4, help="coupled L2 weight decay on kernels (paper: 1e-4 ResNet, 5e-4 VGG)",
                                min=0.0)
    warmup_steps: int = param(100, help="linear learning-rate warm-up steps (from warmup_factor x lr)", min=0)
    warmup_factor: float = param(1.0 / 3.0, help="learning-rate factor at step 0 of the warm-up", min=0.0, max=1.0)
    lr_decay_at: tuple[float, ...] = param((2 / 3, 8 / 9), help="fractions of steps after which lr is x0.1",
                                           min=0.0, max=1.0)

    def validate(self) -> None:
        super().validate()
        if len(self.backbone_blocks) != 4:
            raise ConfigError(f"bad value for 'backbone_blocks': {self.backbone_blocks!r}; expected 4 stages")
        if self.rpn_negative_iou > self.rpn_positive_iou:
            raise ConfigError("rpn_negative_iou must be <= rpn_positive_iou")
        if self.image_size % 32:
            raise ConfigError(f"bad value for 'image_size': {self.image_size}; expected a multiple of 32")
        if list(self.lr_decay_at) != sorted(self.lr_decay_at):
            raise ConfigError(f"bad value for 'lr_decay_at': {self.lr_decay_at!r}; expected increasing fractions")


@register
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr * warmup(step) * 0.1 ** (#boundaries passed)`, warm-up linear from `warmup_factor` to 1."""

    def __init__(self, learning_rate, boundaries=(), warmup_steps=0, warmup_factor=1.0 / 3.0, decay=0.1):
        self.learning_rate = float(learning_rate)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)
        self.decay = float(decay)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        factor = tf.constant(1.0)
        if self.warmup_steps > 0:
            alpha = tf.minimum(step / self.warmup_steps, 1.0)
            factor = self.warmup_factor * (1.0 - alpha) + alpha
        passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries]) if self.boundaries else 0.0
        return self.learning_rate * factor * tf.pow(self.decay, passed)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "boundaries": self.boundaries,
                "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor, "decay": self.decay}


class FasterRCNNRecipe(DetectionRecipe):
    """Faster R-CNN on a stride-16 map; `MaskRCNNRecipe` extends it with FPN and mask/keypoint heads."""

    name = "faster_rcnn"
    paper = ("Ren, He, Girshick, Sun 2015. Faster R-CNN: Towards Real-Time Object Detection with Region Proposal "
             "Networks. arXiv:1506.01497")
    summary = "Faster R-CNN: RPN (9 anchors, 256 @ 50 %) + RoIAlign 2-FC box head (512 RoIs @ 25 %), joint training"
    config_class = FasterRCNNConfig
    key_metrics = ("loss", "rpn_objectness", "classification", "box")
    #: The paper's anchor sizes and the image side they were chosen for.
    paper_anchor_sizes = (128.0, 256.0, 512.0)
    paper_image_size = 600.0

    # ---------------------------------------------------------------- hooks
    def build_features(self) -> keras.Model:
        """`images -> [C4]` (stride 16)."""
        c = self.config
        backbone = resnet_fpn.build_resnet_backbone(
            self.image_shape, c.backbone_blocks, c.backbone_width, c.backbone_block, last_stage=4, norm=c.norm,
            weight_decay=c.weight_decay, seed=c.seed,
        )
        return keras.Model(backbone.inputs, backbone.outputs[-1:], name="c4_features")

    def anchor_sizes(self) -> tuple:
        c = self.config
        if c.anchor_sizes is not None:
            return tuple(c.anchor_sizes)
        return two_stage.scaled_sizes(self.paper_anchor_sizes, c.image_size, self.paper_image_size)

    def anchor_layout(self, features: keras.Model):
        """`(anchors [A, 4], level_counts, anchors per location)` for the feature maps."""
        shape = tuple(int(v) for v in features.outputs[0].shape[1:3])
        stride = self.config.image_size // shape[0]
        anchors = anchor_ops.anchors_for_feature_map(shape, stride, self.anchor_sizes(), self.config.anchor_aspect_ratios)
        per_location = anchor_ops.num_anchors_per_location(self.anchor_sizes(), self.config.anchor_aspect_ratios)
        return anchors, (len(anchors),), per_location

    def spec_options(self, features: keras.Model) -> dict:
        shape = int(features.outputs[0].shape[1])
        return {"feature_stride": self.config.image_size // shape}

    def build_extra_heads(self, channels: int) -> dict:
        """Extra RoI heads (`mask_head` / `keypoint_head`); none for Faster R-CNN."""
        return {}

    def spec(self, features: keras.Model) -> two_stage.TwoStageSpec:
        c = self.config
        anchors, counts, _ = self.anchor_layout(features)
        return two_stage.TwoStageSpec(
            image_size=c.image_size, num_classes=self.num_classes, anchors=anchors, level_counts=tuple(counts),
            rpn_positive_iou=c.rpn_positive_iou, rpn_negative_iou=c.rpn_negative_iou,
            rpn_batch_size=c.rpn_batch_size, rpn_positive_fraction=c.rpn_positive_fraction,
            rpn_pre_nms_train=c.rpn_pre_nms_top_k_train, rpn_post_nms_train=c.rpn_post_nms_top_k_train,
            rpn_pre_nms_test=c.rpn_pre_nms_top_k_test, rpn_post_nms_test=c.rpn_post_nms_top_k_test,
            rpn_nms_iou=c.rpn_nms_iou, roi_batch_size=c.roi_batch_size, roi_positive_fraction=c.roi_positive_fraction,
            roi_foreground_iou=c.roi_foreground_iou, score_threshold=c.score_threshold,
            nms_iou=c.nms_iou_threshold, max_detections=c.max_detections, **self.spec_options(features),
        )

    # ---------------------------------------------------------------- model
    def build_optimizer(self):
        c = self.config
        boundaries = [int(round(f * c.steps)) for f in c.lr_decay_at]
        schedule = WarmupStepDecay(c.learning_rate, boundaries, c.warmup_steps, c.warmup_factor)
        if c.optimizer == "adam":
            return keras.optimizers.Adam(schedule)
        return keras.optimizers.SGD(schedule, momentum=c.momentum)

    def build_model(self) -> two_stage.TwoStageDetector:
        c = self.config
        features = self.build_features()
        spec = self.spec(features)
        _, _, per_location = self.anchor_layout(features)
        channels = int(features.outputs[0].shape[-1])
        rpn_head = two_stage.build_rpn_head(channels, per_location, c.rpn_conv_dim, c.weight_decay, seed=c.seed)
        box_head = two_stage.build_box_head(spec.box_pool_size, channels, self.num_classes, c.fc_dim,
                                            weight_decay=c.weight_decay, seed=c.seed)
        optimizer = self.build_optimizer()
        model = two_stage.TwoStageDetector(features, rpn_head, box_head, spec, optimizer, preprocess=self.preprocess,
                                           seed=c.seed, name=self.name, **self.build_extra_heads(channels))
        model(tf.zeros((1, *self.image_shape)))
        optimizer.build(model.trainable_variables)
        return model

    def detect(self, model, images) -> dict:
        return model.detect(images)

    def on_train_end(self, model, run_dir, history) -> dict:
        summary = super().on_train_end(model, run_dir, history)
        summary["trainable_params"] = two_stage.head_parameter_counts(model)
        summary["anchor_sizes"] = list(self.anchor_sizes())
        return summary

