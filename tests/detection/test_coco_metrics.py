"""COCOeval glue: perfect predictions give AP 1, degraded ones less, a hand-computed PR case; the drawing helper."""

import math
import os

import numpy as np
import pytest

from kerasnets.data import detection, shapes
from kerasnets.metrics import coco as coco_metrics
from kerasnets.utils.drawing import draw_detections


@pytest.fixture(scope="module")
def data():
    examples = shapes.generate_shapes(6, seed=2, image_size=64, max_objects=3)
    return examples, shapes.to_coco(examples), detection.pad_examples(examples, 3)


def _perfect(padded, shift=0.0, classes=None):
    boxes = padded["boxes"] + np.array([shift, 0, shift, 0], np.float32) * (padded["boxes"][..., 2:3] - padded["boxes"][..., 0:1])
    return coco_metrics.detections_to_coco(
        padded["image_id"], boxes, np.where(padded["classes"] > 0, 0.9, 0.0),
        padded["classes"] if classes is None else classes, padded["num_objects"],
        masks=padded["masks"], keypoints=padded["keypoints"])


def test_perfect_predictions_give_ap_one(data):
    _, gt, padded = data
    dets = _perfect(padded)
    assert len(dets) == int(padded["num_objects"].sum())
    for iou_type in ("bbox", "segm"):
        stats = coco_metrics.coco_evaluate(gt, dets, iou_type)
        assert set(stats) == set(coco_metrics.BOX_STATS)
        assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    kp = coco_metrics.coco_evaluate(gt, dets, "keypoints", kpt_oks_sigmas=shapes.KEYPOINT_OKS_SIGMAS)
    assert kp["AP"] == pytest.approx(1.0)


def test_shifted_and_wrong_class_predictions_score_lower(data):
    _, gt, padded = data
    shifted = coco_metrics.coco_evaluate(gt, _perfect(padded, shift=0.15), "bbox")
    # 15 % of the width shift: IoU = 0.85/1.15 = 0.74 -> matched at 0.5..0.70, missed at 0.75..0.95
    assert shifted["AP50"] == pytest.approx(1.0) and shifted["AP75"] == pytest.approx(0.0)
    assert shifted["AP"] == pytest.approx(0.5, abs=0.01)
    wrong = np.where(padded["classes"] > 0, padded["classes"] % 3 + 1, 0)
    assert coco_metrics.coco_evaluate(gt, _perfect(padded, classes=wrong), "bbox")["AP"] == 0.0
    assert coco_metrics.coco_evaluate(gt, [], "bbox")["AP"] == 0.0


def test_hand_computed_precision_recall():
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 0},
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 60, 20, 20], "score": 0.95},  # false positive first
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},  # exact hit
    ]
    # PR: (r=0, p=0), (r=0.5, p=0.5); 101-point interpolation -> 51 points at precision 0.5.
    stats = coco_metrics.coco_evaluate(gt, dets, "bbox")
    assert stats["AP"] == pytest.approx(51 * 0.5 / 101, abs=1e-6)
    assert stats["AR100"] == pytest.approx(0.5) and stats["APs"] == stats["AP"]  # area 900 < 32^2: small
    assert math.isnan(stats["APm"]) and math.isnan(stats["APl"])  # no medium/large objects: -1 -> NaN


def test_bad_inputs(data):
    _, gt, padded = data
    with pytest.raises(ValueError, match="iou_type"):
        coco_metrics.coco_evaluate(gt, [], "boxes")
    with pytest.raises(ValueError, match="segmentation"):
        coco_metrics.coco_evaluate(gt, [{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "segm")
    with pytest.raises(ValueError, match="kpt_oks_sigmas"):
        coco_metrics.coco_evaluate(gt, _perfect(padded), "keypoints")
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_metrics.coco_evaluate(gt, [{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])


def test_draw_detections_writes_png(data, tmp_path):
    from PIL import Image

    examples, _, _ = data
    ex = examples[0]
    path = str(tmp_path / "dets.png")
    picture = draw_detections(ex["image"], ex["boxes"], ex["classes"], np.full(len(ex["classes"]), 0.87),
                              masks=ex["masks"], keypoints=ex["keypoints"], class_names=shapes.CLASS_NAMES,
                              scale=3, path=path)
    assert os.path.exists(path) and picture.shape == (192, 192, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), picture)
    plain = draw_detections(ex["image"], ex["boxes"][:0], ex["classes"][:0])
    np.testing.assert_array_equal(plain, ex["image"])  # nothing to draw -> unchanged


def test_evaluate_detections_from_padded_outputs(data):
    from kerasnets.ops import masks as mask_ops

    _, gt, padded = data
    outputs = {"boxes": padded["boxes"], "scores": np.where(padded["classes"] > 0, 0.9, 0.0),
               "classes": padded["classes"], "num_detections": padded["num_objects"], "masks": padded["masks"],
               "keypoints": padded["keypoints"]}
    metrics = coco_metrics.evaluate_detections(gt, padded["image_id"], outputs, ("bbox", "segm", "keypoints"),
                                               kpt_oks_sigmas=shapes.KEYPOINT_OKS_SIGMAS)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["segm/AP"] == pytest.approx(1.0)
    assert metrics["keypoints/AP"] == pytest.approx(1.0)
    # 28x28 per-box masks (as a mask head predicts) are pasted into the image first.
    b, d = padded["classes"].shape
    crops = mask_ops.mask_targets(padded["masks"], padded["boxes"], np.tile(np.arange(d), (b, 1))).numpy()
    coarse = coco_metrics.evaluate_detections(gt, padded["image_id"], {**outputs, "masks": crops}, ("segm",))
    assert coarse["segm/AP50"] == pytest.approx(1.0) and coarse["segm/AP"] > 0.9  # crop+paste IoU > 0.95 here
    with pytest.raises(ValueError, match="masks"):
        coco_metrics.evaluate_detections(gt, padded["image_id"], {k: v for k, v in outputs.items() if k != "masks"},
                                         ("segm",))
