"""Instance-mask helpers for Mask R-CNN: training targets (crop to RoI, 28x28) and pasting back.

**Targets** (He et al. 2017, Sec. 3: "the mask target is the intersection
between an RoI and its associated ground-truth mask"): the full-image binary
mask of each RoI's matched instance is RoIAligned with the RoI box to
`M x M` (28) and binarised at 0.5, as detectron2 does
(`ROIAlign((M, M), 1.0, 0, aligned=True)` then `>= 0.5`). `aligned=True`
treats pixel `j` as the interval `[j, j + 1)` with its value at `j + 0.5`, so
a box that exactly covers a mask's pixels crops to all ones.

The crop is `kerasnets.ops.roi_align.roi_align` (torchvision semantics) on the
masks as one-channel feature maps, one "image" per instance. The default
`sampling_ratio=2` runs on the fast `crop_and_resize` path, which does not
compile under XLA; `sampling_ratio=0` (detectron2's adaptive sampling) uses
the XLA-compatible einsum path.

**Pasting** (inference / visualisation): a `M x M` mask predicted for a box
is bilinearly resampled onto the image pixels whose centres fall in the box
(`u = (x + 0.5 - x1) / (x2 - x1) * M - 0.5` in mask-pixel coordinates, zero
outside the mask), then thresholded. Implemented as two small matrix
products per box, so it is XLA-friendly and runs inside a SavedModel.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.ops.roi_align import roi_align

MASK_SIZE = 28


def mask_targets(gt_masks, rois, matched_gt, mask_size: int = MASK_SIZE, binarize: bool = True,
                 sampling_ratio: int = 2, aligned: bool = True):
    """Mask R-CNN targets: each RoI's matched full-image mask, RoIAligned to `mask_size`, binarised at 0.5.

    Args:
        gt_masks: `[G, H, W]` (or `[B, G, H, W]`) instance masks (0/1, any dtype).
        rois: `[R, 4]` (or `[B, R, 4]`) xyxy pixel boxes (the sampled proposals).
        matched_gt: `[R]` (or `[B, R]`) index of each RoI's ground-truth mask;
            negative values (unmatched RoIs) give all-zero targets.
        mask_size: output side (28 in Mask R-CNN).
        binarize: threshold at 0.5 (`>= 0.5`) to 0/1 float targets.
        sampling_ratio: RoIAlign samples per bin and axis (`<= 0`: adaptive).
        aligned: half-pixel-corrected RoIAlign (detectron2's `ROIAlignV2`).

    Returns `[R, mask_size, mask_size]` (or batched) float32.
    """
    gt_masks = tf.convert_to_tensor(gt_masks)
    rois = tf.convert_to_tensor(rois)
    matched_gt = tf.cast(tf.convert_to_tensor(matched_gt), tf.int32)
    if gt_masks.shape.rank == 3:
        return mask_targets(gt_masks[None], rois[None], matched_gt[None], mask_size, binarize, sampling_ratio,
                            aligned)[0]
    if gt_masks.shape.rank != 4 or rois.shape.rank != 3 or matched_gt.shape.rank != 2:
        raise ValueError(
            f"expected gt_masks [B, G, H, W], rois [B, R, 4], matched_gt [B, R]; got {gt_masks.shape}, "
            f"{rois.shape}, {matched_gt.shape}"
        )
    shape = tf.shape(gt_masks)
    # One extra empty mask per image keeps the crop valid when an image has no ground truth at all.
    gt_masks = tf.concat([tf.cast(gt_masks, tf.float32), tf.zeros(tf.concat([shape[:1], [1], shape[2:]], 0))], 1)
    b, g = shape[0], shape[1] + 1
    images = tf.reshape(gt_masks, tf.concat([[b * g], shape[2:]], 0))
    flat_index = tf.range(b)[:, None] * g + tf.maximum(matched_gt, 0)
    crops = roi_align(tf.cast(images, tf.float32)[..., None], tf.reshape(rois, [-1, 4]), tf.reshape(flat_index, [-1]),
                      mask_size, 1.0, sampling_ratio, aligned)[..., 0]
    if binarize:
        crops = tf.cast(crops >= 0.5, tf.float32)
    crops = tf.reshape(crops, [b, -1, mask_size, mask_size])
    return tf.where((matched_gt >= 0)[..., None, None], crops, 0.0)


def _interpolation_matrix(lo, hi, size: int, mask_size: int):
    """`[..., size, mask_size]` bilinear weights from image pixels to mask pixels along one axis."""
    centres = tf.range(size, dtype=tf.float32) + 0.5
    extent = tf.maximum(hi - lo, 1e-6)[..., None]
    u = (centres - lo[..., None]) / extent * mask_size - 0.5
    u0 = tf.floor(u)
    frac = u - u0
    u0 = tf.cast(u0, tf.int32)
    # one_hot of an index outside [0, mask_size) is all zeros: the mask is zero-padded.
    return tf.one_hot(u0, mask_size) * (1.0 - frac)[..., None] + tf.one_hot(u0 + 1, mask_size) * frac[..., None]


def paste_masks(masks, boxes, image_size, threshold: float | None = 0.5):
    """Paste `[..., R, M, M]` mask probabilities into `[..., R, H, W]` images at xyxy `boxes [..., R, 4]`.

    Returns float32 probabilities if `threshold` is None, else uint8 0/1
    (`>= threshold`). `image_size = (H, W)` must be static ints.
    """
    height, width = (int(v) for v in image_size)
    masks = tf.cast(tf.convert_to_tensor(masks), tf.float32)
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    if masks.shape[-1] != masks.shape[-2]:
        raise ValueError(f"masks must be square [..., M, M], got shape {masks.shape}")
    m = int(masks.shape[-1])
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    ay = _interpolation_matrix(y1, y2, height, m)  # [..., R, H, M]
    ax = _interpolation_matrix(x1, x2, width, m)  # [..., R, W, M]
    pasted = tf.einsum("...hm,...mn,...wn->...hw", ay, masks, ax)
    if threshold is None:
        return pasted
    return tf.cast(pasted >= threshold, tf.uint8)
