"""R-CNN (Girshick, Donahue, Darrell, Malik 2014): warped proposals, CNN features, per-class linear SVMs.

Pipeline (Sec. 2):

1. ~2000 selective-search proposals per image, "fast" mode
   (`kerasnets.data.proposals`, computed once and cached);
2. each proposal is dilated so that `p = 16` pixels of context surround it at
   the warped size and warped anisotropically to `227 x 227`
   (`kerasnets.models.rcnn.warp_regions`; here `warp_size = 32` with
   `context_padding = 2`, the same 16/227 proportion), pixels outside the
   image filled with the mean (0 after mean subtraction);
3. a CNN computes features of each window (`build_rcnn_network`);
4. one linear SVM per class scores the fc7 features; class-specific
   bounding-box regression (appendix C) refines the box from pool5 features;
5. per class, greedy NMS: "rejects a region if it has an IoU overlap with a
   higher scoring selected region larger than a learned threshold" (0.3).

Training (Sec. 2.3):

* **fine-tuning** of the CNN with a `K + 1`-way softmax on warped proposals:
  IoU >= 0.5 with a ground truth -> that box's class, the rest background;
  minibatches of 128 windows with 32 positives (25 %), SGD;
* **SVMs**: per class, positives are only the ground-truth boxes of the
  class, negatives the proposals with IoU < 0.3 with every instance of the
  class (the rest ignored); features scaled to an average L2 norm of 20;
  liblinear's L2-regularised hinge loss (`C = 0.001`, positive weight 2, bias
  multiplier 10, as the reference code; here `sklearn.svm.LinearSVC`) with
  **hard negative mining**: negatives scoring above -1 (margin violators) are
  added to a cache, the SVM is retrained, easy negatives (score < -1.2) are
  evicted, over passes through the training images;
* **box regression** (appendix C): per class, ridge regression (lambda =
  1000) from scaled pool5 features of proposals with IoU > 0.6 to the
  targets `t = ((G_x - P_x) / P_w, (G_y - P_y) / P_h, log(G_w / P_w), log(G_h / P_h))`.

The SVMs and the regressors are trained after the fine-tuning steps (in
`post_train`, before the engine writes the last checkpoint) and live in the model
as `Dense` layers (`svm`: fc7 -> K, `bbox_regressor`: pool5 -> 4K, the feature
scaling folded into their weights), so the exported SavedModel runs the whole
detector. Until they are trained (`svm_trained = 0`) `detect` scores with the
fine-tuned softmax (the paper's appendix B compares both: softmax instead of
the SVMs drops VOC 2007 mAP from 54.2 to 50.9).
Scores are `sigmoid(SVM margin)`: monotone in the margin (same ranking, same
AP), in (0, 1) so `score_threshold` keeps its meaning; 0.5 is the SVM's
decision boundary.

Deviations (CPU, no downloads): a small CNN trained from scratch on the
windows instead of ImageNet-pretrained AlexNet fine-tuned at 227 x 227;
windows of 32 pixels. Paper results (context, not a claim; from memory of the
paper, not re-checked here): VOC 2007 test mAP 54.2 (AlexNet fc7, fine-tuned),
58.5 with box regression, 66.0 with VGG16 and box regression; VOC 2010 53.7;
ILSVRC2013 detection 31.4.

Measured (default config on shapes, 512 training / 64 validation images at
128 px, 1000 fine-tuning steps, then SVMs and regressors): COCO box AP 0.669,
AP50 0.811, AP75 0.778; without box regression AP 0.616 (AP50 0.827); with the
fine-tuned softmax instead of the SVMs (no regression) AP 0.623 -- on this
data the SVMs do not beat the softmax, unlike the paper's 54.2 vs 50.9.
21 min of fine-tuning + SVM training + evaluation (proposals cached) on a
2-core machine shared with other jobs (load ~25), so not an idle timing.

Serving: selective search is OpenCV code and cannot be inside the SavedModel;
`serving_default` takes `images` (uint8, any size) **and** `proposals`
(`[N, P, 4]` xyxy in the input image's pixels; see
`kerasnets.tasks.proposal_detection`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.models.rcnn import build_rcnn_network, warp_regions
from kerasnets.ops import boxes as box_ops
from kerasnets.ops import nms as nms_ops
from kerasnets.ops import targets as target_ops
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.tasks.proposal_detection import ProposalDetectionConfig, ProposalDetectionRecipe
from kerasnets.models.recipe_model import RecipeModel

REGRESSION_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # R-CNN appendix C: unweighted targets, ridge-regularised


@dataclasses.dataclass
class RCNNConfig(ProposalDetectionConfig):
    steps: int = param(1000, help="fine-tuning SGD iterations", min=1)
    batch_size: int = param(4, help="images per fine-tuning minibatch", min=1)
    windows_per_image: int = param(32, help="warped windows per image (4 x 32 = the paper's 128)", min=1)
    foreground_fraction: float = param(0.25, help="fine-tuning: share of positive windows (paper 32/128)",
                                       min=0.0, max=1.0)
    foreground_iou: float = param(0.5, help="fine-tuning: positive if IoU >= this", min=0.0, max=1.0)
    warp_size: int = param(32, help="warped window side (paper: 227)", min=8)
    context_padding: int = param(2, help="context pixels around the box at the warped size (paper: 16 of 227)",
                                 min=0)
    learning_rate: float = param(0.01, help="fine-tuning SGD learning rate (paper 0.001 from ImageNet weights)",
                                 min=0.0)
    momentum: float = param(0.9, help="SGD momentum", min=0.0, max=1.0)
    weight_decay: float = param(5e-4, help="coupled L2 weight decay", min=0.0)
    lr_decay_at: float = param(0.75, help="divide the learning rate by 10 at this fraction of the steps",
                               min=0.0, max=1.0)
    widths: tuple[int, ...] = param((32, 64, 128), help="window CNN block widths", )
    convs_per_block: tuple[int, ...] = param((1, 1, 1), help="3x3 convolutions per block")
    fc_dim: int = param(256, help="fc6/fc7 width (AlexNet: 4096)", min=1)
    dropout: float = param(0.5, help="dropout after fc6 and fc7", min=0.0, max=0.99)
    batch_norm: bool = param(True, help="batch normalization in the CNN (training from scratch)")
    svm_negative_iou: float = param(0.3, help="SVM negatives: IoU < this with every instance of the class",
                                    min=0.0, max=1.0)
    svm_c: float = param(1e-3, help="SVM C (liblinear -c)", min=0.0)
    svm_positive_weight: float = param(2.0, help="SVM positive-class loss weight (liblinear -w1)", min=0.0)
    svm_bias_multiplier: float = param(10.0, help="SVM bias feature value (liblinear -B)", min=0.0)
    feature_norm: float = param(20.0, help="features are scaled to this average L2 norm", min=0.0)
    hard_negative_threshold: float = param(-1.0001, help="mining: negatives scoring above this are hard")
    easy_negative_threshold: float = param(-1.2, help="mining: cached negatives scoring below this are evicted")
    mining_passes: int = param(2, help="passes of hard negative mining over the training images", min=1)
    mining_chunks: int = param(4, help="retrain the SVM after each of this many chunks of images", min=1)
    bbox_regression: bool = param(True, help="class-specific ridge box regression on pool5 (appendix C)")
    bbox_iou: float = param(0.6, help="box regression: proposals with IoU > this", min=0.0, max=1.0)
    ridge_lambda: float = param(1000.0, help="box regression ridge lambda", min=0.0)
    nms_iou_threshold: float = param(0.3, help="per-class greedy NMS IoU (paper: 0.3)", min=0.0, max=1.0)
    eval_batch_size: int = param(4, help="images per batch in evaluation (each has P warped windows)", min=1)

    def validate(self) -> None:
        super().validate()
        if not 0 <= 2 * self.context_padding < self.warp_size:
            raise ConfigError(f"context_padding {self.context_padding} must be < warp_size / 2 = {self.warp_size / 2}")
        if len(self.widths) != len(self.convs_per_block) or not self.widths:
            raise ConfigError(f"widths {self.widths} and convs_per_block {self.convs_per_block} need the same, "
                              "non-zero length")
        if self.warp_size < 2 ** len(self.widths):
            raise ConfigError(f"warp_size {self.warp_size} is too small for {len(self.widths)} pooling blocks")
        if self.easy_negative_threshold > self.hard_negative_threshold:
            raise ConfigError("easy_negative_threshold must be <= hard_negative_threshold")


# ------------------------------------------------------------------ SVM / regression training (NumPy)


def _iou(a, b):
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def svm_negatives(proposals, gt_boxes, gt_classes, num_classes: int, negative_iou: float = 0.3):
    """Per class `k = 1..K`, which proposals are SVM negatives: IoU < `negative_iou` with every instance of `k`.

    Proposals overlapping an instance of `k` by >= `negative_iou` are ignored
    for class `k` (neither positive nor negative); objects of *other* classes
    are ordinary negatives for `k`. (Positives are the ground-truth boxes.)

    Returns `[P, K]` bool.
    """
    proposals = np.asarray(proposals, np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes).reshape(-1)
    out = np.ones((len(proposals), num_classes), bool)
    if len(gt_classes):
        iou = _iou(proposals, gt_boxes)  # [P, G]
        for k in range(1, num_classes + 1):
            of_k = gt_classes == k
            if of_k.any():
                out[:, k - 1] = iou[:, of_k].max(axis=1) < negative_iou
    return out


def train_linear_svm(features, labels, c: float, positive_weight: float, bias_multiplier: float, seed: int = 0):
    """liblinear-style L2-regularised hinge-loss SVM (`-s 3 -c C -w1 w -B b`) -> `(w [D], b)`."""
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=c, loss="hinge", dual=True, class_weight={1: positive_weight, 0: 1.0},
                    intercept_scaling=bias_multiplier, max_iter=20000, random_state=seed, tol=1e-4)
    svm.fit(features, labels)
    return svm.coef_[0].astype(np.float32), np.float32(svm.intercept_[0])


def train_svm_with_hard_negatives(positives, negative_chunks, c: float = 1e-3, positive_weight: float = 2.0,
                                  bias_multiplier: float = 10.0, hard_threshold: float = -1.0001,
                                  easy_threshold: float = -1.2, passes: int = 2, seed: int = 0):
    """One class's SVM by hard negative mining (R-CNN Sec. 2.3, the reference `rcnn_train`).

    Args:
        positives: `[Np, D]` features of the ground-truth boxes of the class.
        negative_chunks: list of `[Ni, D]` negative features (chunks of images).
        passes: passes over the chunks; after each chunk the negatives scoring
            above `hard_threshold` (all of them at the start, when `w = 0`) that
            are not cached yet join the cache, the SVM is retrained, and cached
            negatives scoring below `easy_threshold` are evicted.

    Returns `(w, b, info)`; `info` has `cache_size`, `retrains` and the final
    `hard_remaining` (uncached negatives still above the hard threshold).
    """
    dim = positives.shape[1]
    w, b = np.zeros(dim, np.float32), np.float32(0.0)
    cached = [np.zeros(0, bool) if len(n) == 0 else np.zeros(len(n), bool) for n in negative_chunks]
    retrains = 0
    for _ in range(passes):
        for i, chunk in enumerate(negative_chunks):
            if len(chunk) == 0:
                continue
            scores = chunk @ w + b
            new = (scores > hard_threshold) & ~cached[i]
            if not new.any():
                continue
            cached[i] |= new
            neg = np.concatenate([n[m] for n, m in zip(negative_chunks, cached) if len(n)], axis=0)
            x = np.concatenate([positives, neg], axis=0)
            y = np.concatenate([np.ones(len(positives), int), np.zeros(len(neg), int)])
            w, b = train_linear_svm(x, y, c, positive_weight, bias_multiplier, seed)
            retrains += 1
            for j, n in enumerate(negative_chunks):
                if len(n):
                    cached[j] &= ~((n @ w + b) < easy_threshold)
    hard_remaining = sum(int(np.sum(((n @ w + b) > hard_threshold) & ~m)) for n, m in zip(negative_chunks, cached)
                         if len(n))
    return w, b, {"cache_size": int(sum(m.sum() for m in cached)), "retrains": retrains,
                  "hard_remaining": hard_remaining}


def ridge_regression(features, targets, lam: float):
    """`argmin_W ||X W + b - T||^2 + lam ||W||^2` (bias unregularised, via centring) -> `(W [D, 4], b [4])`."""
    x = np.asarray(features, np.float64)
    t = np.asarray(targets, np.float64)
    mx, mt = x.mean(0), t.mean(0)
    xc, tc = x - mx, t - mt
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ tc)
    return w.astype(np.float32), (mt - mx @ w).astype(np.float32)


# ------------------------------------------------------------------ model


class RCNN(RecipeModel):
    """Window CNN + SVM and box-regressor `Dense` layers, with the fine-tuning step."""

    def __init__(self, cnn, num_classes, optimizer, recipe, **kwargs):
        super().__init__(**kwargs)
        self.cnn = cnn
        self.optimizer = optimizer
        self._recipe = recipe
        self.num_classes = num_classes
        self.svm = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="svm", trainable=False)
        self.bbox_regressor = keras.layers.Dense(4 * num_classes, kernel_initializer="zeros", name="bbox_regressor",
                                                 trainable=False)
        self.svm_trained = tf.Variable(0.0, trainable=False, name="svm_trained")
        self.seed_generator = keras.random.SeedGenerator(recipe.config.seed, name="window_sampling")
        out = cnn.output
        self.svm.build(tuple(out["fc7"].shape))
        self.bbox_regressor.build(tuple(out["pool5"].shape))

    def call(self, windows, training=False):
        out = self.cnn(windows, training=training)
        return {**out, "svm_scores": self.svm(out["fc7"]), "box_deltas": self.bbox_regressor(out["pool5"])}

    def warp(self, images, boxes):
        c = self._recipe.config
        return warp_regions(images, boxes, c.warp_size, c.context_padding)

    def sample_windows(self, batch, seed):
        """Fine-tuning windows: IoU >= 0.5 -> class, else background; 25 % positives (Sec. 2.3)."""
        c = self._recipe.config
        num_props = tf.shape(batch["proposals"])[1]
        valid = tf.range(num_props)[None, :] < tf.cast(batch["num_proposals"], tf.int32)[:, None]
        return target_ops.roi_targets(
            batch["proposals"], batch["boxes"], batch["classes"], batch["num_objects"], seed,
            num_samples=c.windows_per_image, positive_fraction=c.foreground_fraction,
            foreground_threshold=c.foreground_iou, background_threshold=c.foreground_iou, background_min=0.0,
            add_gt_as_proposals=True, proposal_valid=valid,
        )

    def train_step(self, batch):
        images = self._recipe.preprocess(batch["images"])
        t = self.sample_windows(batch, replica_seed(self.seed_generator))
        windows = self.warp(images, t["rois"])
        labels = tf.reshape(t["labels"], [-1])
        valid = tf.reshape(t["valid"], [-1])
        with tf.GradientTape() as tape:
            logits = self.cnn(windows, training=True)["class_logits"]
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0), logits=logits)
            loss = tf.reduce_sum(tf.where(valid, ce, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
        minimize(tape, loss, self.cnn.trainable_variables, self.optimizer, model=self.cnn)
        accuracy = tf.reduce_sum(tf.where(valid, tf.cast(tf.argmax(logits, -1, output_type=tf.int32) ==
                                                         tf.maximum(labels, 0), tf.float32), 0.0))
        return {"loss": loss, "window_accuracy": accuracy / tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)}


class RCNNRecipe(ProposalDetectionRecipe):
    name = "rcnn"
    paper = ("Girshick, Donahue, Darrell, Malik 2014. Rich feature hierarchies for accurate object detection and "
             "semantic segmentation. CVPR 2014, arXiv:1311.2524")
    summary = "R-CNN: selective search, warped windows, fine-tuned CNN, per-class SVMs with hard negatives, NMS 0.3"
    config_class = RCNNConfig
    key_metrics = ("loss", "window_accuracy")

    def preprocess(self, images):
        """`images / 255 - 0.5`: mean-subtracted, so the warp's out-of-image fill 0 is the (grey) mean."""
        return tf.cast(images, tf.float32) / 255.0 - 0.5

    def build_model(self) -> RCNN:
        c = self.config
        cnn = build_rcnn_network(c.warp_size, self.num_classes, c.widths, c.convs_per_block, c.fc_dim, c.dropout,
                                 c.batch_norm, c.weight_decay, c.seed)
        decay = int(round(c.lr_decay_at * c.steps))
        lr = keras.optimizers.schedules.PiecewiseConstantDecay([decay], [c.learning_rate, c.learning_rate * 0.1]) \
            if 0 < decay < c.steps else c.learning_rate
        optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=c.momentum)
        model = RCNN(cnn, self.num_classes, optimizer, self, name="rcnn")
        optimizer.build(cnn.trainable_variables)
        return model

    # ----------------------------------------------------------- inference
    def detect(self, model, images, proposals=None, proposal_valid=None) -> dict:
        """Warp every proposal, score with the SVMs (softmax before they exist), regress, per-class NMS 0.3."""
        c = self.config
        if proposals is None:
            raise ValueError("rcnn detects on external proposals: pass proposals [B, P, 4]")
        proposals = tf.cast(proposals, tf.float32)
        batch, count = tf.shape(proposals)[0], tf.shape(proposals)[1]
        out = model(model.warp(images, proposals), training=False)
        k = model.num_classes
        svm_scores = tf.sigmoid(out["svm_scores"])
        softmax = tf.nn.softmax(out["class_logits"], axis=-1)[:, 1:]
        scores = tf.reshape(tf.cond(model.svm_trained > 0.5, lambda: svm_scores, lambda: softmax), [batch, count, k])
        if proposal_valid is not None:
            scores = tf.where(tf.cast(proposal_valid, tf.bool)[..., None], scores, 0.0)
        deltas = tf.reshape(out["box_deltas"], [batch, count, k, 4])
        boxes = box_ops.decode_boxes(deltas, proposals[:, :, None], REGRESSION_WEIGHTS)
        boxes = box_ops.clip_boxes(boxes, (c.image_size, c.image_size))
        dets = nms_ops.multiclass_nms(boxes, scores, c.max_detections, c.nms_iou_threshold, c.score_threshold,
                                      pre_nms_top_k=None)
        return {key: dets[key] for key in ("boxes", "scores", "classes", "num_detections")}

    # ----------------------------------------------------- SVMs + regression
    def window_features(self, model, examples, boxes_per_example, batch_windows: int = 512):
        """fc7 and pool5 features of each example's boxes (inference mode): lists of `[n_i, D]`."""
        feats_fn = self._features_fn(model)
        fc7, pool5 = [], []
        for ex, boxes in zip(examples, boxes_per_example):
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            f7, p5 = [], []
            for s in range(0, len(boxes), batch_windows):
                a, b = feats_fn(tf.constant(ex["image"][None]), tf.constant(boxes[None, s:s + batch_windows]))
                f7.append(a.numpy())
                p5.append(b.numpy())
            dim7, dim5 = model.cnn.output["fc7"].shape[-1], model.cnn.output["pool5"].shape[-1]
            fc7.append(np.concatenate(f7) if f7 else np.zeros((0, dim7), np.float32))
            pool5.append(np.concatenate(p5) if p5 else np.zeros((0, dim5), np.float32))
        return fc7, pool5

    def _features_fn(self, model):
        @tf.function(input_signature=[tf.TensorSpec([1, *self.image_shape], tf.uint8),
                                      tf.TensorSpec([1, None, 4], tf.float32)])
        def fn(image, boxes):
            out = model.cnn(model.warp(self.preprocess(image), boxes), training=False)
            return out["fc7"], out["pool5"]

        return fn

    def train_svms(self, model) -> dict:
        """Train the per-class SVMs (hard negative mining) and box regressors; write them into `model`."""
        c = self.config
        examples, proposals = self.examples("train"), self.proposals("train")
        k = self.num_classes
        boxes = [np.concatenate([np.asarray(ex["boxes"], np.float32).reshape(-1, 4), p], 0)
                 for ex, p in zip(examples, proposals)]
        fc7, pool5 = self.window_features(model, examples, boxes)
        all7 = np.concatenate(fc7)
        scale7 = c.feature_norm / max(float(np.mean(np.linalg.norm(all7, axis=1))), 1e-6)
        chunks = np.array_split(np.arange(len(examples)), min(c.mining_chunks, len(examples)))
        kernel = np.zeros((all7.shape[1], k), np.float32)
        bias = np.zeros((k,), np.float32)
        info = {}
        for cls in range(1, k + 1):
            pos, neg_chunks = [], []
            for idx in chunks:
                negs = []
                for i in idx:
                    n_gt = len(examples[i]["classes"])
                    classes = np.asarray(examples[i]["classes"])
                    pos.append(fc7[i][:n_gt][classes == cls])
                    mask = svm_negatives(proposals[i], examples[i]["boxes"], classes, k, c.svm_negative_iou)[:, cls - 1]
                    negs.append(fc7[i][n_gt:][mask])
                neg_chunks.append(np.concatenate(negs) * scale7)
            pos = np.concatenate(pos) * scale7
            if len(pos) == 0:
                info[f"svm{cls}_positives"] = 0
                bias[cls - 1] = -10.0  # no training example of this class: never detect it
                continue
            w, b, stats = train_svm_with_hard_negatives(
                pos, neg_chunks, c.svm_c, c.svm_positive_weight, c.svm_bias_multiplier, c.hard_negative_threshold,
                c.easy_negative_threshold, c.mining_passes, c.seed,
            )
            kernel[:, cls - 1], bias[cls - 1] = w * scale7, b
            info.update({f"svm{cls}_positives": len(pos), f"svm{cls}_cache": stats["cache_size"],
                         f"svm{cls}_retrains": stats["retrains"]})
        model.svm.set_weights([kernel, bias])
        reg_kernel = np.zeros((pool5[0].shape[1], 4 * k), np.float32)
        reg_bias = np.zeros((4 * k,), np.float32)
        if c.bbox_regression:
            all5 = np.concatenate(pool5)
            scale5 = c.feature_norm / max(float(np.mean(np.linalg.norm(all5, axis=1))), 1e-6)
            for cls in range(1, k + 1):
                xs, ts = [], []
                for i, ex in enumerate(examples):
                    n_gt = len(ex["classes"])
                    if not n_gt:
                        continue
                    iou = _iou(proposals[i], ex["boxes"])
                    if iou.size == 0:
                        continue
                    best = iou.argmax(1)
                    keep = (iou.max(1) > c.bbox_iou) & (np.asarray(ex["classes"])[best] == cls)
                    if keep.any():
                        xs.append(pool5[i][n_gt:][keep])
                        ts.append(box_ops.encode_boxes(np.asarray(ex["boxes"], np.float32)[best[keep]],
                                                       proposals[i][keep], REGRESSION_WEIGHTS).numpy())
                if xs and sum(len(x) for x in xs) >= 2:
                    w, b = ridge_regression(np.concatenate(xs) * scale5, np.concatenate(ts), c.ridge_lambda)
                    reg_kernel[:, 4 * (cls - 1):4 * cls], reg_bias[4 * (cls - 1):4 * cls] = w * scale5, b
                    info[f"bbox{cls}_pairs"] = int(sum(len(x) for x in xs))
        model.bbox_regressor.set_weights([reg_kernel, reg_bias])
        model.svm_trained.assign(1.0)
        self._predict_cache = (None, None)
        return info

    def post_train(self, model) -> dict:
        """Train the SVMs and box regressors after fine-tuning; the engine then writes the final checkpoint,
        so `kerasnets evaluate` / `export` on this run restore the complete detector."""
        return self.train_svms(model)

