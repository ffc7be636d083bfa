"""COCO evaluation with the official evaluator (pycocotools `COCOeval`): box, mask and keypoint AP.

`coco_evaluate(ground_truth, detections, iou_type)` runs COCOeval in memory
(no files) on a COCO ground-truth dict (`kerasnets.data.shapes.to_coco`,
`kerasnets.data.detection.examples_to_coco`, or a loaded COCO JSON) and a
list of COCO result dicts, and returns the 12 (10 for keypoints) summary
numbers by name: `AP` is AP@[.5:.95], `AP50`, `AP75`, `APs/APm/APl` by object
size, `AR1/AR10/AR100` recall by detections per image. Values COCOeval
reports as -1 (no ground truth in that size range) are returned as NaN.

`detections_to_coco` turns the padded outputs of a detection model
(`boxes, scores, classes, num_detections`, optionally full-image `masks` and
`keypoints`) into those result dicts.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

BOX_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm", "keypoints")


def detections_to_coco(
    image_ids: Sequence[int],
    boxes,
    scores,
    classes,
    num_detections=None,
    masks=None,
    keypoints=None,
    category_ids: dict | None = None,
) -> list[dict]:
    """COCO result dicts from padded per-image detections.

    Args:
        image_ids: `[N]` ids matching the ground truth's images.
        boxes: `[N, D, 4]` xyxy pixels; scores: `[N, D]`; classes: `[N, D]` (1..K).
        num_detections: `[N]` valid leading entries (default: entries with class > 0).
        masks: `[N, D, H, W]` full-image binary masks (`kerasnets.ops.masks.paste_masks`).
        keypoints: `[N, D, K, 3]` `(x, y, score)`; the score is ignored by COCOeval.
        category_ids: map from class id to the ground truth's category id
            (default: identity).
    """
    boxes, scores, classes = (np.asarray(a) for a in (boxes, scores, classes))
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:2] or classes.shape != scores.shape:
        raise ValueError(f"expected boxes [N, D, 4], scores [N, D], classes [N, D]; got {boxes.shape}, "
                         f"{scores.shape}, {classes.shape}")
    if len(image_ids) != len(boxes):
        raise ValueError(f"{len(image_ids)} image ids for {len(boxes)} images")
    if masks is not None:
        from pycocotools import mask as mask_utils
        masks = np.asarray(masks)
    results = []
    for i, image_id in enumerate(image_ids):
        count = int(num_detections[i]) if num_detections is not None else int(np.sum(classes[i] > 0))
        for d in range(count):
            cls = int(classes[i, d])
            if cls <= 0:
                continue
            x1, y1, x2, y2 = (float(v) for v in boxes[i, d])
            res = {
                "image_id": int(image_id),
                "category_id": int(category_ids[cls]) if category_ids is not None else cls,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(scores[i, d]),
            }
            if masks is not None:
                rle = mask_utils.encode(np.asfortranarray(masks[i, d].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                res["segmentation"] = rle
            if keypoints is not None:
                kp = np.array(keypoints[i][d], np.float64)
                kp[:, 2] = 1.0
                res["keypoints"] = [float(v) for v in kp.reshape(-1)]
            results.append(res)
    return results


def _coco(ground_truth):
    from pycocotools.coco import COCO

    if not isinstance(ground_truth, dict) or "images" not in ground_truth or "annotations" not in ground_truth:
        raise ValueError("ground_truth must be a COCO dict with 'images', 'annotations' and 'categories'")
    gt = COCO()
    gt.dataset = {k: list(v) if isinstance(v, list) else v for k, v in ground_truth.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_evaluate(
    ground_truth: dict,
    detections: Sequence[dict],
    iou_type: str = "bbox",
    kpt_oks_sigmas=None,
    image_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict:
    """Run COCOeval and return its summary as `{name: float}`.

    Args:
        ground_truth: COCO ground-truth dict.
        detections: COCO result dicts (`detections_to_coco`); they need
            `segmentation` for `"segm"` and `keypoints` for `"keypoints"`.
        iou_type: `"bbox"`, `"segm"` or `"keypoints"`.
        kpt_oks_sigmas: per-keypoint OKS sigmas; required unless the data
            has COCO's 17 person keypoints (then COCO's sigmas are used).
            For shapes: `kerasnets.data.shapes.KEYPOINT_OKS_SIGMAS`.
        image_ids: evaluate on these images only (default: all).
        verbose: print COCOeval's summary table.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got '{iou_type}'")
    names = KEYPOINT_STATS if iou_type == "keypoints" else BOX_STATS
    detections = list(detections)
    needed = {"segm": "segmentation", "keypoints": "keypoints"}.get(iou_type)
    if needed and any(needed not in d for d in detections):
        raise ValueError(f"iou_type '{iou_type}' needs '{needed}' in every detection")
    gt = _coco(ground_truth)
    if not detections:
        return {name: 0.0 for name in names}
    known = set(gt.getImgIds())
    unknown = {d["image_id"] for d in detections} - known
    if unknown:
        raise ValueError(f"detections refer to images not in the ground truth: {sorted(unknown)[:5]}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        if iou_type == "keypoints":
            num_kp = len(detections[0]["keypoints"]) // 3
            if kpt_oks_sigmas is None and num_kp != 17:
                raise ValueError(f"{num_kp} keypoints per object: pass kpt_oks_sigmas (COCO's are for 17)")
            if kpt_oks_sigmas is not None:
                sigmas = np.asarray(kpt_oks_sigmas, np.float64)
                if sigmas.shape != (num_kp,):
                    raise ValueError(f"kpt_oks_sigmas needs {num_kp} values, got shape {sigmas.shape}")
                evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(out.getvalue())
    return {name: (float("nan") if value == -1 else float(value)) for name, value in zip(names, evaluator.stats)}


def evaluate_detections(
    ground_truth: dict,
    image_ids: Sequence[int],
    detections: dict,
    iou_types: Sequence[str] = ("bbox",),
    kpt_oks_sigmas=None,
    category_ids: dict | None = None,
) -> dict:
    """COCO metrics of a detection model's padded outputs, keyed `"<iou_type>/<stat>"` (e.g. `"segm/AP"`).

    Args:
        ground_truth: COCO ground-truth dict covering `image_ids`.
        image_ids: `[N]` ids of the evaluated images, in output order.
        detections: numpy/tensor dict with `boxes [N, D, 4]`, `scores`,
            `classes`, `num_detections`, optionally `masks` (full-image
            `[N, D, H, W]` binary, or per-box `[N, D, M, M]` probabilities
            which are pasted into the image first) and `keypoints [N, D, K, 3]`.
        iou_types: any of `"bbox"`, `"segm"`, `"keypoints"`.
    """
    outputs = {k: np.asarray(v) for k, v in detections.items()}
    masks = outputs.get("masks") if "segm" in iou_types else None
    if "segm" in iou_types and masks is None:
        raise ValueError("iou_type 'segm' needs 'masks' in the detections")
    if masks is not None:
        sizes = {(img["height"], img["width"]) for img in ground_truth["images"] if img["id"] in set(image_ids)}
        if len(sizes) != 1:
            raise ValueError(f"evaluated images must share one size to compare masks, got {sorted(sizes)}")
        height, width = sizes.pop()
        if masks.shape[-2:] != (height, width):
            from kerasnets.ops.masks import paste_masks

            masks = paste_masks(masks, outputs["boxes"], (height, width)).numpy()
    if "keypoints" in iou_types and "keypoints" not in outputs:
        raise ValueError("iou_type 'keypoints' needs 'keypoints' in the detections")
    results = detections_to_coco(
        image_ids, outputs["boxes"], outputs["scores"], outputs["classes"], outputs.get("num_detections"),
        masks=masks, keypoints=outputs.get("keypoints") if "keypoints" in iou_types else None,
        category_ids=category_ids,
    )
    metrics = {}
    for iou_type in iou_types:
        stats = coco_evaluate(ground_truth, results, iou_type, kpt_oks_sigmas, image_ids=image_ids)
        metrics.update({f"{iou_type}/{k}": v for k, v in stats.items()})
    return metrics
