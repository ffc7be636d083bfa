"""`MultiLevelRoIAlign` (FPN, Lin et al. 2017): RoIAlign on the pyramid level matching each box."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from kerasnets.layers.roi_align import roi_output_shape
from kerasnets.ops import multilevel_roi_align as roi_ops
from kerasnets.ops import roi_align as roi_align_ops
from kerasnets.ops import roi_common
from kerasnets.saving import register


def _is_group(x):
    """A list/dict of maps (or of their shapes), as opposed to one shape tuple of ints."""
    if isinstance(x, Mapping):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and not all(v is None or isinstance(v, int) for v in x)


@register
class MultiLevelRoIAlign(keras.layers.Layer):
    """RoIAlign over a feature pyramid, each box pooled at its FPN level, outputs in box order.

    A box of width ``w`` and height ``h`` (image pixels) goes to level (FPN Eq. 1)::

        k = floor(k0 + log2(sqrt(w h) / 224 + eps)),  clamped to [min(levels), max(levels)]

    with ``k0 = canonical_level = 4`` (a 224-pixel ImageNet-size box goes to P4, half of it
    to P3) and ``eps = 1e-6`` as in torchvision's ``LevelMapper``. Level ``l`` has stride
    ``2**l`` unless ``strides`` says otherwise, and is pooled with ``spatial_scale = 1 / stride``
    by the `RoIAlign` rules (see that layer for the sampling equations). The output row
    ``r`` always belongs to box ``r``, whatever level it was pooled at. torchvision's
    ``MultiScaleRoIAlign`` is this layer with ``aligned=False, sampling_ratio=2``.
    Boxes are grouped per level with data-dependent shapes, so the layer does not compile
    under XLA (``supports_jit = False``).

    Args:
        output_size: ``PH`` or ``(PH, PW)``.
        levels: consecutive pyramid levels of the given maps, finest first (default P2..P5).
        strides: stride of each map (default ``2**level``).
        sampling_ratio: samples per bin and axis; ``<= 0`` adaptive.
        aligned: half-pixel aligned sampling (see `RoIAlign`).
        canonical_level: ``k0`` (4).
        canonical_size: canonical box size (224).
        implementation: ``"auto"``, ``"crop_and_resize"`` or ``"einsum"`` (see `RoIAlign`).

    Call arguments:
        inputs: ``[maps, boxes]`` / ``[maps, boxes, box_indices]`` where ``maps`` is a list of
            ``[B, H_l, W_l, C]`` tensors in the order of ``levels`` or a dict keyed by level
            (``2`` or ``"P2"``); or the flat list ``[P2, ..., P5, boxes(, box_indices)]``.
            ``boxes``: ``[B, N, 4]``, or ``[R, 4]`` with int ``box_indices [R]``; image
            coordinates ``x1, y1, x2, y2``. Also ``layer(maps, boxes, box_indices)``.

    Returns:
        ``[R, PH, PW, C]`` or ``[B, N, PH, PW, C]``.

    Reference:
        Lin, Dollar, Girshick, He, Hariharan, Belongie. "Feature Pyramid Networks for Object
        Detection." CVPR 2017, arXiv:1612.03144 (Eq. 1); He et al. "Mask R-CNN." ICCV 2017.
    """

    def __init__(self, output_size=7, levels=(2, 3, 4, 5), strides=None, sampling_ratio=2, aligned=True,
                 canonical_level=4, canonical_size=224.0, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        self.output_size = roi_common.normalize_output_size(output_size)
        self.levels = tuple(int(level) for level in levels)
        if not self.levels or list(self.levels) != list(range(self.levels[0], self.levels[-1] + 1)):
            raise ValueError(f"levels must be consecutive increasing ints, got {levels}")
        if strides is not None:
            strides = tuple(float(s) for s in strides)
            if len(strides) != len(self.levels) or any(s <= 0 for s in strides):
                raise ValueError(f"strides must be {len(self.levels)} positive numbers, got {strides}")
        self.strides = strides
        if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
            raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)
        self.canonical_level = int(canonical_level)
        self.canonical_size = float(canonical_size)
        if not self.canonical_size > 0:
            raise ValueError(f"canonical_size must be positive, got {canonical_size}")
        if implementation not in roi_align_ops.IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {roi_align_ops.IMPLEMENTATIONS}, got {implementation!r}")
        if implementation == "crop_and_resize" and sampling_ratio < 1:
            raise ValueError("implementation='crop_and_resize' needs sampling_ratio >= 1")
        self.implementation = implementation
        # Boxes are split by level with dynamic_partition / dynamic_stitch (data-dependent
        # shapes), which XLA cannot compile, whatever the per-level implementation.
        self.supports_jit = False

    def _split(self, inputs, boxes, box_indices):
        if boxes is not None:
            return inputs, boxes, box_indices
        if isinstance(inputs, (list, tuple)):
            if inputs and _is_group(inputs[0]):
                if len(inputs) not in (2, 3):
                    raise ValueError("call MultiLevelRoIAlign on [maps, boxes] or [maps, boxes, box_indices]")
                return inputs[0], inputs[1], (inputs[2] if len(inputs) == 3 else None)
            n = len(self.levels)
            if len(inputs) in (n + 1, n + 2):
                rest = inputs[n:]
                return list(inputs[:n]), rest[0], (rest[1] if len(rest) == 2 else None)
        raise ValueError(
            f"MultiLevelRoIAlign expects [maps, boxes(, box_indices)] or the flat list of "
            f"{len(self.levels)} maps followed by boxes (and box_indices)"
        )

    def call(self, inputs, boxes=None, box_indices=None):
        maps, boxes, box_indices = self._split(inputs, boxes, box_indices)
        return roi_ops.multilevel_roi_align(
            maps, boxes, box_indices, self.output_size, self.levels, self.strides, self.sampling_ratio,
            self.aligned, self.canonical_level, self.canonical_size, self.implementation,
        )

    def compute_output_shape(self, inputs_shape, boxes_shape=None, box_indices_shape=None):
        maps, boxes_shape, _ = self._split(inputs_shape, boxes_shape, box_indices_shape)
        first = roi_ops.select_levels(maps, self.levels)[0]
        return roi_output_shape(boxes_shape, self.output_size, first[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "levels": self.levels,
            "strides": self.strides,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "canonical_level": self.canonical_level,
            "canonical_size": self.canonical_size,
            "implementation": self.implementation,
        }
