"""Mask R-CNN (He, Gkioxari, Dollar, Girshick, ICCV 2017, arXiv:1703.06870): Faster R-CNN + FPN + a mask branch.

`MaskRCNNRecipe` extends `kerasnets.recipes.faster_rcnn.FasterRCNNRecipe`
(same RPN, proposals, RoI sampling, box head, joint training, test-time
post-processing) with:

* a **ResNet-FPN backbone** (`kerasnets.models.resnet_fpn.build_fpn`, Lin et
  al. 2017): P2..P5 from C2..C5 (top-down + lateral 1x1, 3x3 outputs), P6 by
  subsampling P5; the RPN head is shared over P2..P6 with one anchor size per
  level (32, 64, 128, 256, 512 for 800-pixel images, rescaled to
  `image_size`) x 3 ratios, NMS per level; RoIs are pooled from P2..P5 at
  level `floor(4 + log2(sqrt(wh) / 224))` (FPN Eq. 1, `MultiLevelRoIAlign`;
  the 224 is rescaled to `image_size` with the anchors);
* **RoIAlign** everywhere (7x7 box, 14x14 mask; aligned, sampling ratio 2);
* the **mask head** (`heads="mask"`, Fig. 4 right): four 3x3 convs, a 2x2
  stride-2 deconv and a 1x1 conv to K 28x28 mask logits. "L_mask is defined
  as the average binary cross-entropy loss ... on the k-th mask" for an RoI of
  ground-truth class k, only on positive RoIs, with the RoI's intersection
  with its ground-truth mask RoIAligned to 28x28 as target
  (`kerasnets.ops.masks.mask_targets`, `kerasnets.losses.detection.mask_rcnn_loss`):

      L = L_cls + L_box + L_mask   (+ the RPN's two terms)

  At test time the mask head runs on the 100 final boxes, the predicted
  class's mask is taken, pasted into the image (`paste_masks`, threshold 0.5)
  for COCO mask AP;
* or the **keypoint head** (`heads="keypoints"`, Sec. 5): a conv stack (8 x
  512 in the paper), deconv and x2 bilinear upsampling to K 56x56 heatmaps;
  each visible keypoint of a positive RoI is a one-hot 56x56 target trained
  with softmax cross-entropy over the 56^2 positions
  (`keypoint_targets`, `keypoint_rcnn_loss`); at test time the arg-max cell
  of each heatmap (`decode_keypoint_heatmaps`). On shapes the 5 keypoints are
  centre + 4 extreme points; COCO keypoint AP uses OKS with sigma 0.05.

CPU defaults (paper values in the help texts): a basic-block ResNet with 4
stages of one block, FPN width 64 (256), mask head 4 x 64 channels (256),
keypoint head 4 x 64 (8 x 512), 2 x 256 FC (1024), mask/keypoint heads on at
most `head_rois_per_image` positives per image.

Reference numbers (context, not a claim): ResNet-101-FPN, COCO test-dev box
AP 38.2, mask AP 35.7; keypoints ResNet-50-FPN keypoint AP 63.1 (Table 4,
test-dev) at ~5 fps on a GPU.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import keras

from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.models import resnet_fpn, two_stage
from kerasnets.ops import anchors as anchor_ops
from kerasnets.recipes.faster_rcnn import FasterRCNNConfig, FasterRCNNRecipe

FPN_LEVELS = (2, 3, 4, 5, 6)  # RPN levels; RoIs use P2..P5
ROI_LEVELS = (2, 3, 4, 5)


@dataclasses.dataclass
class MaskRCNNConfig(FasterRCNNConfig):
    """Mask R-CNN hyper-parameters on top of Faster R-CNN's."""

    steps: int = param(500, help="training steps (paper: 90k-160k iterations on COCO; ~10 CPU-minutes here)",
                       min=1)
    heads: Literal["mask", "keypoints"] = param("mask", help="mask: instance masks (segm AP); keypoints: the "
                                                "keypoint head (keypoint AP) instead")
    anchor_sizes: Optional[tuple[float, ...]] = param(
        None, help="one anchor size per level P2..P6 in pixels (default: FPN's 32..512 for 800 px, rescaled to "
        "image_size)", min=1.0)
    fpn_channels: int = param(64, help="FPN channels (paper: 256)", min=1)
    mask_conv_dim: int = param(64, help="mask head conv channels (paper: 256)", min=1)
    mask_num_convs: int = param(4, help="mask head 3x3 convs (paper: 4)", min=0)
    keypoint_conv_dim: int = param(64, help="keypoint head conv channels (paper: 512)", min=1)
    keypoint_num_convs: int = param(4, help="keypoint head 3x3 convs (paper: 8)", min=0)
    keypoint_heatmap_size: int = param(56, help="keypoint heatmap side (paper: 56)", min=2)
    head_rois_per_image: Optional[int] = param(
        32, help="mask/keypoint heads train on at most this many positive RoIs per image (None: all, up to "
        "512 x 25 %)", min=1)

    def validate(self) -> None:
        super().validate()
        if self.anchor_sizes is not None and len(self.anchor_sizes) != len(FPN_LEVELS):
            raise ConfigError(f"bad value for 'anchor_sizes': {self.anchor_sizes!r}; expected one size per FPN level "
                              f"P2..P6 ({len(FPN_LEVELS)} values)")
        if self.keypoint_heatmap_size % 28:
            raise ConfigError(f"bad value for 'keypoint_heatmap_size': {self.keypoint_heatmap_size}; expected a "
                              "multiple of 28 (2 x the 14x14 RoIAlign)")


class MaskRCNNRecipe(FasterRCNNRecipe):
    name = "mask_rcnn"
    paper = "He, Gkioxari, Dollar, Girshick 2017. Mask R-CNN. arXiv:1703.06870"
    summary = "Mask R-CNN: ResNet-FPN Faster R-CNN + RoIAlign + per-class sigmoid 28x28 masks (or 56x56 keypoints)"
    config_class = MaskRCNNConfig
    key_metrics = ("loss", "classification", "box", "mask", "keypoint")
    paper_anchor_sizes = (32.0, 64.0, 128.0, 256.0, 512.0)
    paper_image_size = 800.0

    def __init__(self, config: MaskRCNNConfig | None = None):
        super().__init__(config)
        self.iou_types = ("bbox", "segm") if self.config.heads == "mask" else ("bbox", "keypoints")

    def num_keypoints(self) -> int:
        names = next((c.get("keypoints") for c in self.categories() if c.get("keypoints")), None)
        if not names:
            raise ConfigError("heads='keypoints' needs keypoint names in the categories (shapes or COCO keypoints)")
        return len(names)

    # ---------------------------------------------------------------- hooks
    def build_features(self) -> keras.Model:
        """`images -> [P2, P3, P4, P5, P6]`."""
        c = self.config
        backbone = resnet_fpn.build_resnet_backbone(
            self.image_shape, c.backbone_blocks, c.backbone_width, c.backbone_block, last_stage=5, norm=c.norm,
            weight_decay=c.weight_decay, seed=c.seed,
        )
        return resnet_fpn.build_fpn(backbone, c.fpn_channels, extra_p6=True, weight_decay=c.weight_decay, seed=c.seed)

    def anchor_layout(self, features: keras.Model):
        shapes = [tuple(int(v) for v in out.shape[1:3]) for out in features.outputs]
        strides = [2**level for level in FPN_LEVELS]
        anchors, counts = anchor_ops.multilevel_anchors(
            shapes, strides, [(size,) for size in self.anchor_sizes()], self.config.anchor_aspect_ratios)
        return anchors, tuple(counts), len(self.config.anchor_aspect_ratios)

    def spec_options(self, features: keras.Model) -> dict:
        c = self.config
        options = {
            "roi_levels": ROI_LEVELS,
            "canonical_size": 224.0 * c.image_size / self.paper_image_size,
            "heads": (c.heads,),
            "head_rois": c.head_rois_per_image,
        }
        if c.heads == "keypoints":
            options["num_keypoints"] = self.num_keypoints()
        return options

    def build_extra_heads(self, channels: int) -> dict:
        c = self.config
        pool = two_stage.TwoStageSpec.mask_pool_size
        if c.heads == "mask":
            return {"mask_head": two_stage.build_mask_head(pool, channels, self.num_classes, c.mask_conv_dim,
                                                           c.mask_num_convs, c.weight_decay, seed=c.seed)}
        return {"keypoint_head": two_stage.build_keypoint_head(pool, channels, self.num_keypoints(),
                                                               c.keypoint_conv_dim, c.keypoint_num_convs,
                                                               c.keypoint_heatmap_size, c.weight_decay, seed=c.seed)}
