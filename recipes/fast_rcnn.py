"""Fast R-CNN (Girshick 2015): one conv pass per image, RoI max pooling, a multi-task head.

The image goes through the conv trunk once; each selective-search proposal
(`kerasnets.data.proposals`, external to the network) is max-pooled from the
last conv map into a fixed `7 x 7` grid (`kerasnets.layers.RoIPool`, the Caffe
quantization), then two fully connected layers and two sibling outputs: a
softmax over `K + 1` classes and class-specific box deltas `t^k` for each
class (`kerasnets.models.rcnn.build_fast_rcnn_network`; the VGG16 layout is
documented there).

Multi-task loss (Eq. 1), per RoI with true class `u` and box target `v`:

    L(p, u, t^u, v) = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v),
    L_cls = -log p_u,   L_loc = sum_{i in x,y,w,h} smooth_L1(t^u_i - v_i)       (Eq. 2, 3)

with `lambda = 1`, averaged over the sampled RoIs (`kerasnets.losses.detection.
fast_rcnn_loss`). Targets `v` are the R-CNN box parametrisation normalised to
roughly zero mean / unit variance; here by the fixed weights (10, 10, 5, 5)
(= dividing by the stds 0.1, 0.1, 0.2, 0.2 that the reference code
py-faster-rcnn uses; the first release computed them from the training set).

Minibatches (Sec. 2.3): `N = 2` images, `R = 128` RoIs, i.e. 64 per image;
25 % foreground (IoU >= 0.5 with a ground truth, label = its class), the rest
background with max IoU in `[0.1, 0.5)` ("the lower threshold of 0.1 appears to
act as a heuristic for hard example mining"); ground-truth boxes join the
proposals, as in the reference code; horizontal flips with p = 0.5 (proposals
flip with the image). SGD, momentum 0.9, weight decay 0.0005.

Test (Sec. 3): score all proposals, decode the class-specific boxes, per-class
NMS at IoU 0.3 (the reference `test_net`), score floor 0.05, at most 100
detections per image.

Deviations, for a CPU and no downloads: a small VGG-style trunk with batch
normalization trained from scratch (the paper fine-tunes ImageNet VGG16, so
its learning rate 0.001 becomes 0.01 here with a short linear warm-up), stride
8 instead of 16, fc layers of 256 instead of 4096, one image scale. Paper
results (context, not a claim): VOC 2007 test mAP 66.9 (VGG16, trained on
VOC07 trainval), 70.0 with VOC 07+12; COCO test-dev AP 19.7 (AP50 35.9).

Measured (default config on shapes, 512 training / 64 validation images at
128 px, 2000 steps): COCO box AP 0.666, AP50 0.930, AP75 0.817; 21 min of
training + evaluation plus 10 min of selective search (cached afterwards) on
a 2-core machine shared with other jobs (load ~25), so not an idle timing.

Serving: selective search is OpenCV code and cannot be inside the SavedModel;
`serving_default` takes `images` (uint8, any size) **and** `proposals`
(`[N, P, 4]` xyxy in the input image's pixels) and returns boxes, classes,
scores, num_detections (see `kerasnets.tasks.proposal_detection`).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.losses.detection import fast_rcnn_loss
from kerasnets.models.rcnn import build_fast_rcnn_network
from kerasnets.ops import nms as nms_ops
from kerasnets.ops import targets as target_ops
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.tasks.proposal_detection import ProposalDetectionConfig, ProposalDetectionRecipe
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class FastRCNNConfig(ProposalDetectionConfig):
    steps: int = param(2000, help="SGD iterations (minibatches of batch_size images)", min=1)
    batch_size: int = param(2, help="images per minibatch (paper: N = 2)", min=1)
    rois_per_image: int = param(64, help="sampled RoIs per image (paper: R / N = 128 / 2)", min=1)
    foreground_fraction: float = param(0.25, help="share of foreground RoIs (paper: 25 %)", min=0.0, max=1.0)
    foreground_iou: float = param(0.5, help="foreground: IoU >= this with a ground truth", min=0.0, max=1.0)
    background_iou_low: float = param(0.1, help="background: max IoU in [this, foreground_iou) (paper: 0.1)",
                                      min=0.0, max=1.0)
    box_loss_weight: float = param(1.0, help="lambda of Eq. 1", min=0.0)
    learning_rate: float = param(0.01, help="SGD learning rate (paper 0.001 for pretrained VGG16)", min=0.0)
    momentum: float = param(0.9, help="SGD momentum", min=0.0, max=1.0)
    weight_decay: float = param(5e-4, help="coupled L2 weight decay (Caffe weight_decay)", min=0.0)
    warmup_steps: int = param(100, help="linear learning-rate warm-up from 1/10 (not in the paper)", min=0)
    lr_decay_at: float = param(0.75, help="divide the learning rate by 10 at this fraction of the steps "
                                         "(paper: 30k of 40k)", min=0.0, max=1.0)
    widths: tuple[int, ...] = param((32, 64, 128, 128), help="conv trunk block widths (stride 2^(blocks-1))")
    convs_per_block: tuple[int, ...] = param((2, 2, 2, 2), help="3x3 convolutions per block")
    fc_dim: int = param(256, help="fc6/fc7 width (VGG16: 4096)", min=1)
    pool_size: int = param(7, help="RoI pooling grid (paper: 7x7)", min=1)
    dropout: float = param(0.5, help="dropout after fc6 and fc7", min=0.0, max=0.99)
    batch_norm: bool = param(True, help="batch normalization in the trunk (training from scratch)")
    nms_iou_threshold: float = param(0.3, help="per-class NMS IoU (Fast R-CNN test_net: 0.3)", min=0.0, max=1.0)
    image_size: int = param(128, help="square model input; images are resized keeping aspect and zero-padded",
                            min=32)

    def validate(self) -> None:
        super().validate()
        if self.background_iou_low >= self.foreground_iou:
            raise ConfigError(f"background_iou_low ({self.background_iou_low}) must be < foreground_iou "
                              f"({self.foreground_iou})")
        if len(self.widths) != len(self.convs_per_block) or not self.widths:
            raise ConfigError(f"widths {self.widths} and convs_per_block {self.convs_per_block} need the same, "
                              "non-zero length")
        if any(w < 1 for w in self.widths) or any(n < 1 for n in self.convs_per_block):
            raise ConfigError("widths and convs_per_block must be positive")
        stride = 2 ** (len(self.widths) - 1)
        if self.image_size < stride:
            raise ConfigError(f"image_size {self.image_size} is smaller than the trunk's stride {stride}")


class FastRCNN(RecipeModel):
    """The Fast R-CNN network plus its training step (RoI sampling + Eq. 1 + SGD)."""

    def __init__(self, network, optimizer, recipe, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.optimizer = optimizer
        self.seed_generator = keras.random.SeedGenerator(recipe.config.seed, name="roi_sampling")
        self._recipe = recipe

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def sample_rois(self, batch, seed):
        """Fast R-CNN RoI sampling (Sec. 2.3) of a padded batch with proposals."""
        c = self._recipe.config
        num_props = tf.shape(batch["proposals"])[1]
        proposal_valid = tf.range(num_props)[None, :] < tf.cast(batch["num_proposals"], tf.int32)[:, None]
        return target_ops.roi_targets(
            batch["proposals"], batch["boxes"], batch["classes"], batch["num_objects"], seed,
            num_samples=c.rois_per_image, positive_fraction=c.foreground_fraction,
            foreground_threshold=c.foreground_iou, background_threshold=c.foreground_iou,
            background_min=c.background_iou_low, add_gt_as_proposals=True, proposal_valid=proposal_valid,
        )

    def train_step(self, batch):
        c = self._recipe.config
        images = self._recipe.preprocess(batch["images"])
        targets = self.sample_rois(batch, replica_seed(self.seed_generator))
        with tf.GradientTape() as tape:
            out = self.network([images, targets["rois"]], training=True)
            terms = fast_rcnn_loss(out["class_logits"], out["box_deltas"], targets["labels"],
                                   targets["target_deltas"], targets["valid"])
            loss = terms["classification"] + c.box_loss_weight * terms["box"]
        minimize(tape, loss, self.network.trainable_variables, self.optimizer, model=self.network)
        valid = tf.cast(targets["valid"], tf.float32)
        fg = tf.reduce_sum(tf.cast(targets["labels"] > 0, tf.float32)) / tf.maximum(tf.reduce_sum(valid), 1.0)
        return {"loss": loss, "classification": terms["classification"], "box": terms["box"],
                "foreground_fraction": fg}


class FastRCNNRecipe(ProposalDetectionRecipe):
    name = "fast_rcnn"
    paper = "Girshick 2015. Fast R-CNN. ICCV 2015, arXiv:1504.08083"
    summary = "Fast R-CNN: selective-search proposals, RoIPool 7x7, softmax + smooth-L1 multi-task loss, NMS 0.3"
    config_class = FastRCNNConfig
    key_metrics = ("loss", "classification", "box")

    def build_model(self) -> FastRCNN:
        c = self.config
        network = build_fast_rcnn_network(
            c.image_size, self.num_classes, c.widths, c.convs_per_block, c.pool_size, c.fc_dim, c.dropout,
            c.batch_norm, c.weight_decay, c.seed,
        )
        optimizer = keras.optimizers.SGD(learning_rate=self.learning_rate_schedule(), momentum=c.momentum)
        model = FastRCNN(network, optimizer, self, name="fast_rcnn")
        optimizer.build(network.trainable_variables)
        return model

    def learning_rate_schedule(self):
        """Linear warm-up from lr/10 over `warmup_steps`, then lr, then lr/10 after `lr_decay_at * steps`."""
        c = self.config
        return _WarmupStep(c.learning_rate, c.warmup_steps, int(round(c.lr_decay_at * c.steps)))

    def detect(self, model, images, proposals=None, proposal_valid=None) -> dict:
        """Class-specific decoding, score floor, per-class NMS (0.3), top `max_detections`."""
        c = self.config
        if proposals is None:
            raise ValueError("fast_rcnn detects on external proposals: pass proposals [B, P, 4]")
        proposals = tf.cast(proposals, tf.float32)
        out = model.network([images, proposals], training=False)
        dets = nms_ops.rcnn_postprocess(
            out["class_logits"], out["box_deltas"], proposals, (c.image_size, c.image_size),
            score_threshold=c.score_threshold, iou_threshold=c.nms_iou_threshold, max_detections=c.max_detections,
            roi_valid=proposal_valid,
        )
        return {k: dets[k] for k in ("boxes", "scores", "classes", "num_detections")}


@keras.saving.register_keras_serializable(package="kerasnets")
class _WarmupStep(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, base, warmup_steps, decay_step):
        self.base, self.warmup_steps, self.decay_step = float(base), int(warmup_steps), int(decay_step)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = tf.minimum(1.0, 0.1 + 0.9 * step / max(self.warmup_steps, 1)) if self.warmup_steps else 1.0
        decay = tf.where(step >= self.decay_step, 0.1, 1.0) if self.decay_step > 0 else 1.0
        return self.base * warm * decay

    def get_config(self):
        return {"base": self.base, "warmup_steps": self.warmup_steps, "decay_step": self.decay_step}
