"""Box arithmetic for detection: formats, area, IoU, clipping and the R-CNN box coder.

Conventions used across `kerasnets.ops` and the detection recipes:

* boxes are `[..., 4]` float tensors in **pixel coordinates, `xyxy`**
  (`x1, y1, x2, y2`), continuous: a box covering pixels 0..9 of a row is
  `x1=0, x2=10` (width = `x2 - x1`, no "+1" as in the legacy Caffe code;
  torchvision and detectron2 use the same convention);
* `cxcywh` is centre + size, `xywh` is COCO's `x, y, width, height`.

Box coder (R-CNN, Girshick et al. 2014, appendix C; Faster R-CNN Eq. 2), for
an anchor/proposal with centre `(x_a, y_a)` and size `(w_a, h_a)` and a target
box `(x, y, w, h)`:

    t_x = w_x (x - x_a) / w_a      t_y = w_y (y - y_a) / h_a
    t_w = w_w log(w / w_a)         t_h = w_h log(h / h_a)

with weights `(w_x, w_y, w_w, w_h)`: `(10, 10, 5, 5)` for the box heads and
SSD (the same as dividing by the "variances" 0.1/0.2), `(1, 1, 1, 1)` for the
RPN. Decoding clamps `t_w / w_w` and `t_h / w_h` at `log(1000 / 16)` before
`exp` (Detectron's `BBOX_XFORM_CLIP`, also in torchvision) so an untrained
head cannot produce overflowing boxes.
"""

from __future__ import annotations

import math

import tensorflow as tf

BBOX_XFORM_CLIP = math.log(1000.0 / 16.0)
HEAD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def _as_boxes(boxes, name="boxes"):
    boxes = tf.convert_to_tensor(boxes)
    if not boxes.dtype.is_floating:
        boxes = tf.cast(boxes, tf.float32)
    if boxes.shape.rank is not None and boxes.shape[-1] is not None and boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have 4 coordinates in the last axis, got shape {boxes.shape}")
    return boxes


def xyxy_to_cxcywh(boxes):
    """`[x1, y1, x2, y2]` -> `[cx, cy, w, h]`."""
    boxes = _as_boxes(boxes)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], axis=-1)


def cxcywh_to_xyxy(boxes):
    """`[cx, cy, w, h]` -> `[x1, y1, x2, y2]`."""
    boxes = _as_boxes(boxes)
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    return tf.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def xyxy_to_xywh(boxes):
    """`[x1, y1, x2, y2]` -> COCO `[x, y, w, h]`."""
    boxes = _as_boxes(boxes)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)


def xywh_to_xyxy(boxes):
    """COCO `[x, y, w, h]` -> `[x1, y1, x2, y2]`."""
    boxes = _as_boxes(boxes)
    x, y, w, h = tf.unstack(boxes, axis=-1)
    return tf.stack([x, y, x + w, y + h], axis=-1)


def xyxy_to_yxyx(boxes):
    """`[x1, y1, x2, y2]` <-> `[y1, x1, y2, x2]` (TF image ops' order; the map is its own inverse)."""
    boxes = _as_boxes(boxes)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack([y1, x1, y2, x2], axis=-1)


yxyx_to_xyxy = xyxy_to_yxyx


def box_area(boxes):
    """Area `(x2 - x1) * (y2 - y1)` of `[..., 4]` xyxy boxes; degenerate boxes give 0."""
    boxes = _as_boxes(boxes)
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)


def pairwise_iou(boxes_a, boxes_b):
    """Intersection over union of every pair: `[..., N, 4] x [..., M, 4] -> [..., N, M]`.

    Leading dimensions broadcast (a batch of images). Pairs whose union is 0
    (two empty boxes) get IoU 0.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = tf.cast(_as_boxes(boxes_b, "boxes_b"), a.dtype)
    area_a = box_area(a)[..., :, None]
    area_b = box_area(b)[..., None, :]
    top_left = tf.maximum(a[..., :, None, :2], b[..., None, :, :2])
    bottom_right = tf.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = tf.maximum(bottom_right - top_left, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    return tf.math.divide_no_nan(inter, union)


def clip_boxes(boxes, image_size):
    """Clip xyxy boxes to an image of `image_size = (height, width)` (x to [0, W], y to [0, H]).

    `image_size` may be a tensor `[..., 2]` broadcasting against the boxes'
    leading dimensions (one size per image).
    """
    boxes = _as_boxes(boxes)
    size = tf.cast(tf.convert_to_tensor(image_size), boxes.dtype)
    height, width = size[..., 0], size[..., 1]
    if size.shape.rank is not None and size.shape.rank > 1:
        height, width = height[..., None], width[..., None]
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.stack(
        [
            tf.clip_by_value(x1, 0.0, width),
            tf.clip_by_value(y1, 0.0, height),
            tf.clip_by_value(x2, 0.0, width),
            tf.clip_by_value(y2, 0.0, height),
        ],
        axis=-1,
    )


def _check_weights(weights):
    weights = tuple(float(w) for w in weights)
    if len(weights) != 4 or any(w <= 0 for w in weights):
        raise ValueError(f"box coder weights must be 4 positive numbers, got {weights}")
    return weights


def encode_boxes(boxes, anchors, weights=HEAD_BOX_WEIGHTS):
    """Regression targets `(t_x, t_y, t_w, t_h)` of `boxes` relative to `anchors` (both xyxy).

    Shapes broadcast (`[..., 4]`). Anchors must have positive width and height;
    target boxes of zero size give `-inf` log-ratios, so encode only matched
    (real) boxes or mask the result.
    """
    wx, wy, ww, wh = _check_weights(weights)
    boxes = _as_boxes(boxes)
    anchors = tf.cast(_as_boxes(anchors, "anchors"), boxes.dtype)
    gx, gy, gw, gh = tf.unstack(xyxy_to_cxcywh(boxes), axis=-1)
    ax, ay, aw, ah = tf.unstack(xyxy_to_cxcywh(anchors), axis=-1)
    return tf.stack(
        [
            wx * (gx - ax) / aw,
            wy * (gy - ay) / ah,
            ww * tf.math.log(gw / aw),
            wh * tf.math.log(gh / ah),
        ],
        axis=-1,
    )


def decode_boxes(deltas, anchors, weights=HEAD_BOX_WEIGHTS, scale_clip=BBOX_XFORM_CLIP):
    """Inverse of `encode_boxes`: apply `deltas` to `anchors`, returning xyxy boxes.

    `t_w / w_w` and `t_h / w_h` are clamped from above at `scale_clip`
    (default `log(1000/16)`; `None` disables the clamp).
    """
    wx, wy, ww, wh = _check_weights(weights)
    deltas = _as_boxes(deltas, "deltas")
    anchors = tf.cast(_as_boxes(anchors, "anchors"), deltas.dtype)
    ax, ay, aw, ah = tf.unstack(xyxy_to_cxcywh(anchors), axis=-1)
    tx, ty, tw, th = tf.unstack(deltas, axis=-1)
    dw, dh = tw / ww, th / wh
    if scale_clip is not None:
        dw = tf.minimum(dw, scale_clip)
        dh = tf.minimum(dh, scale_clip)
    cx = tx / wx * aw + ax
    cy = ty / wy * ah + ay
    w = tf.exp(dw) * aw
    h = tf.exp(dh) * ah
    return cxcywh_to_xyxy(tf.stack([cx, cy, w, h], axis=-1))
