"""`RoIAlign` (He et al. 2017): bilinear RoI feature extraction, torchvision-exact."""

from __future__ import annotations

import keras

from kerasnets.ops import roi_align as roi_ops
from kerasnets.ops import roi_common
from kerasnets.saving import register


def split_roi_inputs(inputs, boxes, box_indices):
    """``layer([features, boxes(, box_indices)])`` or ``layer(features, boxes, box_indices)``."""
    if boxes is not None:
        return inputs, boxes, box_indices
    if isinstance(inputs, (list, tuple)) and len(inputs) in (2, 3):
        return inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
    raise ValueError(
        "RoI layers are called on [features, boxes] (batched boxes [B, N, 4]) or "
        "[features, boxes, box_indices] (boxes [R, 4] + indices [R])"
    )


def roi_output_shape(boxes_shape, output_size, channels):
    boxes_shape = tuple(boxes_shape)
    if len(boxes_shape) not in (2, 3) or boxes_shape[-1] != 4:
        raise ValueError(f"boxes must be [R, 4] or [B, N, 4], got shape {boxes_shape}")
    return (*boxes_shape[:-1], *output_size, channels)


@register
class RoIAlign(keras.layers.Layer):
    """RoIAlign: average of bilinear samples on a regular grid in each RoI bin.

    Same numbers as ``torchvision.ops.roi_align`` with the same arguments (checked in the
    tests against a NumPy transcription of its kernel and, when installed, torchvision).
    Boxes are in **image coordinates, order ``x1, y1, x2, y2``** (torchvision's order).

    Each box is mapped to the feature map, ``x1' = x1 * spatial_scale - o`` (``o = 0.5``
    if ``aligned`` else 0), ``roi_w = x2' - x1'`` (``max(roi_w, 1)`` if not ``aligned``),
    and split into ``PH x PW`` bins of size ``bin_h = roi_h / PH``, ``bin_w = roi_w / PW``.
    Bin ``(p, q)`` is the mean of ``g_h x g_w`` bilinear samples::

        y_i = y1' + p bin_h + (i + 1/2) bin_h / g_h,   x_j = x1' + q bin_w + (j + 1/2) bin_w / g_w
        out[p, q, c] = 1 / (g_h g_w) * sum_{i, j} sum_{h, w} k(y_i - h) k(x_j - w) F[h, w, c]

    with the bilinear (tent) kernel ``k(t) = max(0, 1 - |t|)`` evaluated at the sample
    clamped to ``[0, H - 1]``: ``y0 = floor(y)``, weights ``1 - (y - y0)`` on row ``y0`` and
    ``y - y0`` on row ``y0 + 1``. A sample with ``y < -1``, ``y > H`` (or the same in x)
    contributes 0 but still counts in the mean. ``g = sampling_ratio``, or
    ``ceil(roi_size / output_size)`` per RoI when ``sampling_ratio <= 0`` (adaptive).
    No quantization of the box or the bins (the point of RoIAlign over RoIPool).

    ``implementation="auto"`` uses `tf.image.crop_and_resize` on a 1-pixel edge-padded map
    plus average pooling for a fixed sampling ratio (fast; no XLA: the layer then sets
    ``supports_jit = False``), and the separable interpolation-matrix form
    ``A_y F A_x^T`` (exact, XLA-compatible, ``O(B R PH H W C)``) for adaptive sampling;
    ``"einsum"`` forces the latter. See `kerasnets.ops.roi.roi_align`.

    Args:
        output_size: ``PH`` or ``(PH, PW)``; 7 for box heads, 14 for mask heads.
        spatial_scale: image -> feature coordinate scale, ``1 / stride`` (e.g. 1/16).
        sampling_ratio: samples per bin along each axis (torchvision detection models use
            2); ``<= 0``: adaptive ``ceil(roi_size / output_size)`` (torchvision's default -1).
        aligned: ``True`` (default; detectron2 ``ROIAlignV2``): pixel ``i`` has its centre at
            ``i + 0.5``, coordinates are shifted by -0.5. ``False``: legacy Detectron /
            torchvision default, half a pixel off, RoIs forced to at least 1x1.
        implementation: ``"auto"``, ``"crop_and_resize"`` or ``"einsum"``.

    Call arguments:
        inputs: ``[features, boxes]`` with batched boxes ``[B, N, 4]``, or
            ``[features, boxes, box_indices]`` with boxes ``[R, 4]`` and int ``box_indices
            [R]`` (image of each box). ``features``: ``[B, H, W, C]`` (NHWC). The tensors
            can also be passed as ``layer(features, boxes, box_indices)``.

    Returns:
        ``[R, PH, PW, C]`` or ``[B, N, PH, PW, C]``. Gradients flow to the features (not
        to the boxes, as in torchvision).

    Reference:
        He, Gkioxari, Dollar, Girshick. "Mask R-CNN." ICCV 2017, arXiv:1703.06870 (Sec. 3,
        RoIAlign); torchvision ``ops.roi_align`` / Detectron2 ``ROIAlignV2`` for the exact
        sampling rules.
    """

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=2, aligned=True,
                 implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.output_size = roi_common.normalize_output_size(output_size)
        self.spatial_scale = roi_common.check_spatial_scale(spatial_scale)
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
            raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)
        if implementation not in roi_ops.IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {roi_ops.IMPLEMENTATIONS}, got {implementation!r}")
        if implementation == "crop_and_resize" and sampling_ratio < 1:
            raise ValueError("implementation='crop_and_resize' needs sampling_ratio >= 1 "
                             f"(got {sampling_ratio}); use 'einsum' or 'auto' for adaptive sampling")
        self.implementation = implementation
        uses_crop = implementation == "crop_and_resize" or (implementation == "auto" and sampling_ratio >= 1)
        self.supports_jit = not uses_crop  # tf.image.crop_and_resize has no XLA kernel

    def call(self, inputs, boxes=None, box_indices=None):
        features, boxes, box_indices = split_roi_inputs(inputs, boxes, box_indices)
        return roi_ops.roi_align(features, boxes, box_indices, self.output_size, self.spatial_scale,
                                 self.sampling_ratio, self.aligned, self.implementation)

    def compute_output_shape(self, inputs_shape, boxes_shape=None, box_indices_shape=None):
        features_shape, boxes_shape, _ = split_roi_inputs(inputs_shape, boxes_shape, box_indices_shape)
        return roi_output_shape(boxes_shape, self.output_size, features_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "spatial_scale": self.spatial_scale,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "implementation": self.implementation,
        }
