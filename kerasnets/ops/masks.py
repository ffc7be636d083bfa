"""Instance-mask helpers for Mask R-CNN: training targets (crop to RoI, 28x28) and pasting back.

**Targets** (He et al. 2017, Sec. 3: "the mask target is the intersection
between an RoI and its associated ground-truth mask"): the full-image binary
mask of each RoI's matched instance is RoIAligned with the RoI box to
`M x M` (28) and binarised at 0.5, as detectron2 does
(`ROIAlign((M, M), 1.0, 0, aligned=True)` then `>= 0.5`). `aligned=True`
treats pixel `j` as the interval `[j, j + 1)` with its value at `j + 0.5`, so
a box that exactly covers a mask's pixels crops to all ones.

The RoIAlign here is TF's `crop_and_resize` on a 1-px edge-padded mask with a
fixed `sampling_ratio` (2 x 2 samples per bin, averaged), which reproduces
torchvision's `roi_align` for a fixed sampling ratio (boundary rule included;
see the research notes, section 1.6). `crop_and_resize` does not compile
under XLA; mask targets are computed in the training step only.

**Pasting** (inference / visualisation): a `M x M` mask predicted for a box
is bilinearly resampled onto the image pixels whose centres fall in the box
(`u = (x + 0.5 - x1) / (x2 - x1) * M - 0.5` in mask-pixel coordinates, zero
outside the mask), then thresholded. Implemented as two small matrix
products per box, so it is XLA-friendly and runs inside a SavedModel.
"""

from __future__ import annotations

import tensorflow as tf

MASK_SIZE = 28


def roi_align_single_channel(images, boxes, box_indices, output_size, sampling_ratio: int = 2,
                             aligned: bool = True):
    """RoIAlign of `[N, H, W]` single-channel images at xyxy pixel `boxes [R, 4]` -> `[R, S, S]`.

    torchvision semantics with `spatial_scale=1` and a fixed `sampling_ratio`:
    bin `(i, j)` averages `sampling_ratio**2` bilinear samples at the bin's
    sub-cell centres; samples within 1 px outside the image take the edge
    value, farther ones count as 0; with `aligned=False` boxes are at least
    1 px and not shifted by half a pixel.
    """
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be >= 1 (adaptive sampling is not supported), got {sampling_ratio}")
    ph = pw = int(output_size)
    s = int(sampling_ratio)
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    height = tf.cast(tf.shape(images)[1], tf.float32)
    width = tf.cast(tf.shape(images)[2], tf.float32)
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = tf.unstack(boxes - offset, axis=-1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = tf.maximum(roi_w, 1.0), tf.maximum(roi_h, 1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    # First/last sample positions, +1 for the border pad below.
    fy, ly = y1 + 0.5 * bin_h / s + 1.0, y1 + (ph * s - 0.5) * bin_h / s + 1.0
    fx, lx = x1 + 0.5 * bin_w / s + 1.0, x1 + (pw * s - 0.5) * bin_w / s + 1.0
    padded = tf.pad(images[..., None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    hp, wp = height + 1.0, width + 1.0  # (padded size - 1)
    normalized = tf.stack([fy / hp, fx / wp, ly / hp, lx / wp], axis=-1)
    crops = tf.image.crop_and_resize(
        padded, tf.stop_gradient(normalized), tf.cast(box_indices, tf.int32), [ph * s, pw * s],
        extrapolation_value=0.0,
    )
    return tf.nn.avg_pool2d(crops, s, s, "VALID")[..., 0]


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
    b, g = shape[0], shape[1]
    images = tf.reshape(gt_masks, tf.concat([[b * g], shape[2:]], 0))
    flat_index = tf.range(b)[:, None] * g + tf.maximum(matched_gt, 0)
    crops = roi_align_single_channel(images, tf.reshape(rois, [-1, 4]), tf.reshape(flat_index, [-1]), mask_size,
                                     sampling_ratio, aligned)
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
