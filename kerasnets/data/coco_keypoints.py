"""COCO person keypoints as top-down person crops (the `hrnet` recipe's `data="coco"`).

Reads `<data_dir>/annotations/person_keypoints_<split>.json` and the images under
`<data_dir>/<split>/<file_name>` with pycocotools, and crops every annotated, non-crowd
person from its ground-truth box (centre, the crop's aspect ratio, x1.25 padding: the
reference's `USE_GT_BBOX: true`, `_xywh2cs` + `get_affine_transform`) with an affine warp.
tfds' `coco/2017` has no keypoints, so it is not used.
"""

from __future__ import annotations

import json
import os

import numpy as np

from kerasnets.data import skeleton

#: The person box is grown by this factor around its centre (the reference's 1.25).
BOX_PADDING = 1.25


def box_to_affine(box, out_hw, padding: float = BOX_PADDING) -> np.ndarray:
    """`[2, 3]` affine map from crop pixels to image pixels for an xywh person box.

    As the reference's `_xywh2cs` + `get_affine_transform`: the box is grown
    to the crop's aspect ratio around its centre, then by `padding`.
    """
    x, y, w, h = (float(v) for v in box)
    out_h, out_w = out_hw
    aspect = out_w / out_h
    cx, cy = x + w * 0.5, y + h * 0.5
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    w, h = w * padding, h * padding
    sx, sy = w / out_w, h / out_h  # image pixels per crop pixel (equal by construction)
    # crop pixel centre (i + 0.5) maps linearly onto [cx - w/2, cx + w/2].
    return np.array([[sx, 0.0, cx - w / 2], [0.0, sy, cy - h / 2]])


def apply_affine(points, affine) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return p @ affine[:, :2].T + affine[:, 2]


def invert_affine(affine) -> np.ndarray:
    a = np.vstack([affine, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def load_coco_people(data_dir, split, out_hw, max_people=None) -> dict:
    """Person crops of a COCO person-keypoints split (see the module docstring).

    Returns a dict with `images` uint8 `[N, h, w, 3]`, `keypoints [N, 17, 3]`
    and `boxes [N, 4]` in crop pixels, `image_ids [N]`, `to_image [N, 2, 3]`
    (crop -> image affine), `ground_truth` (the COCO dict of those images).
    """
    from PIL import Image

    from kerasnets.data.coco import coco_api

    path = os.path.join(data_dir, "annotations", f"person_keypoints_{split}.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"COCO keypoint annotations not found: {path}")
    with open(path) as f:
        gt = json.load(f)
    coco = coco_api(gt)
    out_h, out_w = out_hw
    images, kps, boxes, ids, affines = [], [], [], [], []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        anns = [
            a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
            if a.get("num_keypoints", 0) > 0 and a["bbox"][2] > 1 and a["bbox"][3] > 1
        ]  # fmt: skip
        if not anns:
            continue
        file = os.path.join(data_dir, split, info["file_name"])
        if not os.path.exists(file):
            raise FileNotFoundError(f"image {image_id} not found: {file}")
        picture = Image.open(file).convert("RGB")
        for ann in anns:
            to_image = box_to_affine(ann["bbox"], out_hw)
            # PIL's AFFINE maps output pixel corners (i, j) to input coordinates; our affine maps
            # pixel centres, so (i + 0.5) -> sx (i + 0.5) + t, i.e. the same linear map of corners.
            crop = picture.transform(
                (out_w, out_h), Image.AFFINE, data=tuple(to_image.reshape(-1)), resample=Image.BILINEAR
            )
            kp = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
            if kp.shape[0] != skeleton.NUM_KEYPOINTS:
                raise ValueError(f"annotation {ann['id']} has {kp.shape[0]} keypoints; expected 17 (COCO)")
            to_crop = invert_affine(to_image)
            # COCO keypoints are continuous coordinates (pixel corners at integers); pixel centres
            # convention of the crop: x_centre = x - 0.5.
            xy = apply_affine(kp[:, :2], to_crop) - 0.5
            x0, y0 = apply_affine(np.array([ann["bbox"][:2]]), to_crop)[0]
            x1, y1 = apply_affine(np.array([np.add(ann["bbox"][:2], ann["bbox"][2:])]), to_crop)[0]
            vis = kp[:, 2] > 0
            inside = (xy[:, 0] >= 0) & (xy[:, 0] <= out_w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= out_h - 1)
            kp_crop = np.zeros((skeleton.NUM_KEYPOINTS, 3), np.float32)
            keep = vis & inside
            kp_crop[keep, :2] = xy[keep]
            kp_crop[keep, 2] = kp[keep, 2]
            images.append(np.asarray(crop, np.uint8))
            kps.append(kp_crop)
            boxes.append([x0, y0, x1 - x0, y1 - y0])
            ids.append(image_id)
            affines.append(to_image)
            if max_people is not None and len(images) >= max_people:
                break
        if max_people is not None and len(images) >= max_people:
            break
    if not images:
        raise ValueError(f"{path}: no non-crowd person annotation with keypoints")
    keep_ids = set(ids)
    ground_truth = {
        **gt,
        "images": [i for i in gt["images"] if i["id"] in keep_ids],
        "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in keep_ids],
    }
    return {
        "images": np.stack(images),
        "keypoints": np.stack(kps).astype(np.float32),
        "boxes": np.asarray(boxes, np.float32),
        "image_ids": np.asarray(ids, np.int64),
        "to_image": np.stack(affines),
        "ground_truth": ground_truth,
        "pixel_offset": 0.5,
    }
