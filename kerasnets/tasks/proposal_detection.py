"""Detection recipes that score *external* region proposals: the base of `rcnn` and `fast_rcnn`.

R-CNN and Fast R-CNN do not propose regions themselves: every image comes with
~2000 selective-search boxes (`kerasnets.data.proposals`), and the detector
classifies and refines those. `ProposalDetectionRecipe` extends the shared
`DetectionRecipe` with that second input everywhere:

* data: each split's proposals are computed once on the resized (model-input)
  images and cached in an `.npz` file (`proposal_cache_dir`, default
  `~/.cache/kerasnets/proposals`), then padded into the batches as
  `"proposals" [B, P, 4]` (xyxy model pixels) and `"num_proposals" [B]`;
  horizontal flips flip them with the images;
* `detect(model, images, proposals, proposal_valid)` replaces
  `detect(model, images)`;
* `predict` / `evaluate` / the predictions picture pass the cached proposals
  (or run selective search on images given without proposals);
* export: selective search is OpenCV code and cannot live inside a SavedModel,
  so `serving_default` takes **two inputs**: `images` uint8 `[N, H, W, 3]` of
  any size and `proposals` float32 `[N, P, 4]` xyxy in those images' pixels
  (rows with zero width or height are padding). The client computes the
  proposals (e.g. `kerasnets.data.proposals.selective_search` on the raw
  image, or any proposal method); the graph letterboxes the image, scales
  the proposals the same way, detects, and maps the boxes back.

`proposals="jittered_gt"` replaces selective search by boxes jittered around
the ground truth plus random boxes (`jittered_gt_proposals`): only for tests
and debugging; on validation data it leaks the ground truth, so its AP is not
a result.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import numpy as np

from kerasnets.config import param
from kerasnets.tasks.detection import DetectionConfig, DetectionRecipe
from kerasnets.training.recipe import Endpoint


@dataclasses.dataclass
class ProposalDetectionConfig(DetectionConfig):
    """`DetectionConfig` plus the external proposals."""

    proposals: Literal["selective_search", "jittered_gt"] = param(
        "selective_search",
        help="selective_search: OpenCV ximgproc (the papers'); jittered_gt: boxes around the ground truth "
        "(tests only: leaks the ground truth at evaluation)",
    )
    selective_search_mode: Literal["fast", "quality", "single"] = param(
        "fast", help="selective search strategy set (R-CNN / Fast R-CNN: fast)"
    )
    max_proposals: int = param(2000, help="proposals per image (papers: ~2000)", min=1)
    proposal_cache_dir: Optional[str] = param(
        None, help="folder for the proposals .npz cache (default ~/.cache/kerasnets/proposals)"
    )


def default_cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kerasnets", "proposals")


def flip_proposals(batch: dict, seed, probability: float = 0.5) -> dict:
    """Flip `batch["proposals"]` with exactly the flips `random_horizontal_flip(batch, seed)` applies to the images.

    `random_horizontal_flip` draws its per-image decisions from `seed` and the
    batch size only, so calling it on the proposals with the same seed mirrors
    the same images.
    """
    from kerasnets.data.detection import random_horizontal_flip

    flipped = random_horizontal_flip(
        {"image": batch["images"], "boxes": batch["proposals"], "num_objects": batch["num_proposals"]},
        seed, probability=probability,
    )
    return {**batch, "proposals": flipped["boxes"]}


class ProposalDetectionRecipe(DetectionRecipe):
    """`DetectionRecipe` whose detector scores external proposals (see the module docstring)."""

    config_class = ProposalDetectionConfig

    def __init__(self, config: ProposalDetectionConfig | None = None):
        super().__init__(config)
        self._proposals: dict[str, list[np.ndarray]] = {}

    # ------------------------------------------------------------ proposals
    def compute_proposals(self, images) -> list[np.ndarray]:
        """Selective search on uint8 images (no cache), `max_proposals` each, xyxy pixels."""
        from kerasnets.data.proposals import selective_search

        c = self.config
        return [selective_search(np.asarray(im, np.uint8), c.selective_search_mode, c.max_proposals, seed=c.seed + 1)
                for im in images]

    def proposals(self, split: str = "train") -> list[np.ndarray]:
        """Per-example `[P_i, 4]` proposals (model pixels) of `split`, computed once and cached."""
        from kerasnets.data import proposals as proposal_lib

        split = "validation" if split == "val" else split
        if split not in self._proposals:
            c = self.config
            examples = self.examples(split)
            if c.proposals == "jittered_gt":
                offset = 0 if split == "train" else 1_000_003
                size = (c.image_size, c.image_size)
                n = min(c.max_proposals, 64)
                self._proposals[split] = [
                    proposal_lib.jittered_gt_proposals(ex["boxes"], size, n, seed=c.seed * 7919 + offset + i)
                    for i, ex in enumerate(examples)
                ]
            else:
                cache = proposal_lib.ProposalCache(
                    (c.proposal_cache_dir or default_cache_dir()) + os.sep, c.selective_search_mode,
                    c.max_proposals, seed=c.seed + 1,
                )
                self._proposals[split] = cache(examples)
        return self._proposals[split]

    def _padded(self, split: str) -> dict:
        from kerasnets.data.proposals import pad_proposals

        arrays = super()._padded(split)
        props = self.proposals(split)
        arrays["proposals"], arrays["num_proposals"] = pad_proposals(props, max(1, max(len(p) for p in props)))
        return arrays

    def augment(self, batch: dict, seed) -> dict:
        """The base flip, applied to the proposals too (same seed, same images flipped)."""
        out = super().augment(batch, seed)
        return flip_proposals(out, seed) if self.config.horizontal_flip else out

    # ------------------------------------------------------------ inference
    def detect(self, model, images, proposals=None, proposal_valid=None) -> dict:
        """Detections for preprocessed `images [B, S, S, 3]` and `proposals [B, P, 4]` (model pixels)."""
        raise NotImplementedError(f"recipe '{self.name}' must implement detect(model, images, proposals, valid)")

    def _predict_fn(self, model):
        import tensorflow as tf

        cached, fn = self._predict_cache
        if cached is not model:
            specs = [tf.TensorSpec([None, *self.image_shape], tf.uint8), tf.TensorSpec([None, None, 4], tf.float32),
                     tf.TensorSpec([None, None], tf.bool)]

            @tf.function(input_signature=specs)
            def fn(images, proposals, valid):
                return self.detect(model, self.preprocess(images), proposals, valid)

            self._predict_cache = (model, fn)
        return fn

    def predict(self, model, images, batch_size: int | None = None, proposals=None) -> dict:
        """Detections (numpy, model pixels) for uint8 images `[N, S, S, 3]` and their proposal lists.

        Without `proposals`, selective search runs on the images first.
        """
        import tensorflow as tf

        from kerasnets.data.proposals import pad_proposals

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"predict needs uint8 images [N, {', '.join(map(str, self.image_shape))}], "
                             f"got {images.dtype} {images.shape}")
        if proposals is None:
            proposals = self.compute_proposals(images)
        if len(proposals) != len(images):
            raise ValueError(f"{len(proposals)} proposal lists for {len(images)} images")
        boxes, counts = pad_proposals(proposals, max(1, max(len(p) for p in proposals)))
        valid = np.arange(boxes.shape[1])[None, :] < counts[:, None]
        fn = self._predict_fn(model)
        batch_size = batch_size or self.config.eval_batch_size
        parts = [fn(tf.constant(images[i:i + batch_size]), tf.constant(boxes[i:i + batch_size]),
                    tf.constant(valid[i:i + batch_size])) for i in range(0, len(images), batch_size)]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    def evaluate(self, model, split: str = "validation") -> dict[str, float]:
        """COCO AP of `split` (COCOeval, original image pixels) with the split's cached proposals."""
        data = self.split_data(split)
        examples = data["examples"]
        outputs = self.predict(model, np.stack([ex["image"] for ex in examples]), proposals=self.proposals(split))
        return self.coco_metrics(outputs, examples, data["ground_truth"])

    def save_predictions(self, model, path: str, num_images: int = 8, min_score: float = 0.3, scale: int = 2) -> str:
        from kerasnets.utils.drawing import draw_detections
        from kerasnets.utils.images import save_grid

        examples = self.examples("validation")[:num_images]
        images = np.stack([ex["image"] for ex in examples])
        out = self.predict(model, images, proposals=self.proposals("validation")[:num_images])
        pictures = []
        for i, image in enumerate(images):
            n = int(out["num_detections"][i])
            pictures.append(draw_detections(image, out["boxes"][i, :n], out["classes"][i, :n], out["scores"][i, :n],
                                            class_names=self.class_names(), score_threshold=min_score, scale=scale))
        return save_grid(np.stack(pictures), path, columns=4, value_range=(0, 255))

    # --------------------------------------------------------------- export
    def serve(self, model, images, proposals) -> dict:
        """uint8 images of any size + proposals in their pixels -> detections in their pixels."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        proposals = tf.cast(tf.convert_to_tensor(proposals), tf.float32)
        letterboxed, scale = self.letterbox(images)
        valid = (proposals[..., 2] > proposals[..., 0]) & (proposals[..., 3] > proposals[..., 1])
        size = float(self.config.image_size)
        scaled = tf.clip_by_value(proposals * scale, 0.0, size)
        out = dict(self.detect(model, self.preprocess(letterboxed), scaled, valid))
        height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
        out["boxes"] = tf.clip_by_value(out["boxes"] / scale, 0.0, tf.stack([width, height, width, height]))
        return self._serving_outputs(out)

    def export_endpoints(self, model) -> dict:
        """`serving_default`: `images` uint8 `[N, H, W, 3]` + `proposals` float32 `[N, P, 4]` (see module docstring).

        `fixed_size`: letterboxed `images [1, S, S, 3]` + `proposals [1, P, 4]`
        in those pixels. (RoI pooling and per-proposal crops are not TFLite
        builtin ops; no TFLite export is claimed for these recipes.)
        """
        import tensorflow as tf

        def serving_default(images, proposals):
            return self.serve(model, images, proposals)

        def fixed_size(images, proposals):
            proposals = tf.cast(proposals, tf.float32)
            valid = (proposals[..., 2] > proposals[..., 0]) & (proposals[..., 3] > proposals[..., 1])
            return self._serving_outputs(self.detect(model, self.preprocess(images), proposals, valid))

        return {
            "serving_default": Endpoint(serving_default, [tf.TensorSpec([None, None, None, 3], tf.uint8, "images"),
                                                          tf.TensorSpec([None, None, 4], tf.float32, "proposals")]),
            "fixed_size": Endpoint(fixed_size, [tf.TensorSpec([1, *self.image_shape], tf.uint8, "images"),
                                                tf.TensorSpec([1, None, 4], tf.float32, "proposals")]),
        }

    def representative_dataset(self, num_samples: int = 64):
        """`{"images": uint8 [1, S, S, 3], "proposals": float32 [1, P, 4]}` of training images."""
        from kerasnets.data.proposals import pad_proposals

        examples = self.examples("train")[:num_samples]
        props = self.proposals("train")[:num_samples]
        boxes, _ = pad_proposals(props, max(1, max(len(p) for p in props)))
        for ex, b in zip(examples, boxes):
            yield {"images": np.asarray(ex["image"], np.uint8)[None], "proposals": b[None]}
