"""2D pose metrics: PCK and COCO's OKS-based keypoint AP.

**PCK@alpha** (Percentage of Correct Keypoints): a labelled joint (`v > 0`) is
correct when `||p - g||_2 <= alpha * r` for its person's reference length `r`:

* `reference="bbox"` (default): `r = max(box width, box height)` of the person
  box (Yang & Ramanan's PCK on LSP/Parse); `PCK@0.2` by default here;
* `reference="torso"`: `r` = distance from the left shoulder to the right hip
  (the "torso diameter" of LSP's PCK); people whose two joints are not both
  labelled are skipped.

PCK is pooled over all labelled joints of all people (MPII's PCKh uses the
head segment instead; pass your own `reference_lengths` for it).

**OKS AP** is COCO's metric, run with pycocotools' `COCOeval(..., "keypoints")`
(`kerasnets.metrics.coco.coco_evaluate`): for a prediction p and ground truth
g with area s, `OKS = mean_{k: v_k > 0} exp(-d_k^2 / (2 s (2 sigma_k)^2))`,
AP averaged over OKS thresholds 0.50:0.05:0.95. `oks` below is the same
formula in NumPy (for tests and per-person diagnostics).
"""

from __future__ import annotations

import numpy as np

from kerasnets.data.skeleton import OKS_SIGMAS, to_coco_keypoints

LEFT_SHOULDER, RIGHT_HIP = 5, 12


def reference_lengths(keypoints, boxes=None, reference: str = "bbox") -> np.ndarray:
    """Per-person PCK normaliser `[N]` (NaN where it is undefined)."""
    kp = np.asarray(keypoints, np.float64)
    if reference == "bbox":
        if boxes is None:
            raise ValueError("reference='bbox' needs the person boxes (xywh)")
        b = np.asarray(boxes, np.float64)
        if b.shape != (len(kp), 4):
            raise ValueError(f"boxes must be [N, 4] xywh, got {b.shape}")
        return np.maximum(b[:, 2], b[:, 3])
    if reference == "torso":
        ok = (kp[:, LEFT_SHOULDER, 2] > 0) & (kp[:, RIGHT_HIP, 2] > 0)
        d = np.linalg.norm(kp[:, LEFT_SHOULDER, :2] - kp[:, RIGHT_HIP, :2], axis=-1)
        return np.where(ok, d, np.nan)
    raise ValueError(f"reference must be 'bbox' or 'torso', got {reference!r}")


def pck(pred, keypoints, boxes=None, alpha: float = 0.2, reference: str = "bbox", lengths=None):
    """PCK@alpha pooled over labelled joints, and per joint.

    Args:
        pred: `[N, K, 2+]` predicted (x, y) in the ground truth's pixels.
        keypoints: `[N, K, 3]` ground truth (x, y, v).
        boxes: `[N, 4]` xywh person boxes (for `reference="bbox"`).
        alpha: threshold as a fraction of the reference length.
        reference: `"bbox"` or `"torso"` (see the module docstring).
        lengths: explicit `[N]` reference lengths (overrides `reference`).

    Returns:
        `(pck, per_joint [K])`; NaN where no joint was labelled.
    """
    p = np.asarray(pred, np.float64)[..., :2]
    g = np.asarray(keypoints, np.float64)
    if p.shape[:2] != g.shape[:2] or g.shape[-1] < 3:
        raise ValueError(f"pred [N, K, 2] and keypoints [N, K, 3] must match, got {p.shape} and {g.shape}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    r = np.asarray(lengths, np.float64) if lengths is not None else reference_lengths(g, boxes, reference)
    labelled = (g[..., 2] > 0) & np.isfinite(r)[:, None] & (r[:, None] > 0)
    dist = np.linalg.norm(p - g[..., :2], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        correct = (dist <= alpha * r[:, None]) & labelled
        per_joint = correct.sum(0) / labelled.sum(0)
        total = correct.sum() / labelled.sum() if labelled.any() else np.nan
    return float(total), per_joint


def oks(pred, keypoints, area, sigmas=OKS_SIGMAS) -> np.ndarray:
    """Object keypoint similarity `[N]` of one prediction per ground-truth person (COCO's formula)."""
    p = np.asarray(pred, np.float64)[..., :2]
    g = np.asarray(keypoints, np.float64)
    area = np.asarray(area, np.float64)
    var = (2.0 * np.asarray(sigmas, np.float64)) ** 2
    d2 = np.sum((p - g[..., :2]) ** 2, axis=-1)
    e = d2 / var[None, :] / (area[:, None] + np.spacing(1)) / 2.0
    vis = g[..., 2] > 0
    with np.errstate(invalid="ignore"):
        return np.sum(np.exp(-e) * vis, -1) / vis.sum(-1)


def oks_ap(pred, scores, keypoints, boxes, image_size, image_ids=None, ground_truth=None) -> dict:
    """COCO keypoint AP/AR (pycocotools) of one predicted person per image.

    Args:
        pred: `[N, 17, 2+]` predicted keypoints in image pixels.
        scores: `[N]` person scores (e.g. the mean heatmap maximum).
        keypoints, boxes: ground truth `[N, 17, 3]` and `[N, 4]` xywh (used
            when `ground_truth` is not given, via `to_coco_keypoints`).
        image_size: `(height, width)` of the images.
        image_ids: ids matching `ground_truth` (default 1..N).
        ground_truth: a COCO dict to evaluate against instead.

    Returns:
        `{"AP", "AP50", "AP75", "APm", "APl", "AR", ...}` (NaN where COCOeval says -1).
    """
    from kerasnets.metrics.coco import coco_evaluate

    p = np.asarray(pred, np.float64)[..., :2]
    n = len(p)
    ids = list(range(1, n + 1)) if image_ids is None else [int(i) for i in image_ids]
    gt = ground_truth if ground_truth is not None else to_coco_keypoints(keypoints, boxes, image_size, ids)
    results = []
    for i in range(n):
        kp = np.concatenate([p[i], np.ones((len(p[i]), 1))], axis=-1)
        results.append(
            {"image_id": ids[i], "category_id": 1, "keypoints": [float(v) for v in kp.reshape(-1)],
             "score": float(np.asarray(scores)[i])}
        )  # fmt: skip
    return coco_evaluate(gt, results, "keypoints")
