"""`RoIPool` (Girshick 2015): quantized RoI max pooling, Caffe / torchvision-exact."""

from __future__ import annotations

import keras

from kerasnets.layers.roi_align import roi_output_shape, split_roi_inputs
from kerasnets.ops import roi_common
from kerasnets.ops import roi_pool as roi_ops
from kerasnets.saving import register


@register
class RoIPool(keras.layers.Layer):
    """Fast R-CNN RoI max pooling with the Caffe quantization (== ``torchvision.ops.roi_pool``).

    Boxes are in **image coordinates, order ``x1, y1, x2, y2``**. Each box is snapped to the
    feature grid with C's ``round`` (half away from zero: ``round(2.5) = 3``, unlike
    ``tf.round``'s half-to-even), taken as an inclusive pixel range, and split into
    ``PH x PW`` bins whose edges are floored / ceiled (neighbouring bins may share a row)::

        x_s = round(x1 s),  x_e = round(x2 s),  roi_w = max(x_e - x_s + 1, 1),  bin_w = roi_w / PW
        w_start(q) = clip(floor(q bin_w) + x_s, 0, W),  w_end(q) = clip(ceil((q + 1) bin_w) + x_s, 0, W)
        out[p, q, c] = max_{h_start(p) <= h < h_end(p), w_start(q) <= w < w_end(q)} F[h, w, c]

    (same in y), and 0 for an empty bin (a box outside the map). The gradient of each
    output goes to its arg-max (the first one in row-major order on ties). XLA-compatible
    unless ``jit_compile=False`` (then ``supports_jit = False``: the gradient uses a weighted
    ``bincount``, which XLA cannot compile).

    Args:
        output_size: ``PH`` or ``(PH, PW)`` (7 for VGG16 Fast R-CNN).
        spatial_scale: image -> feature coordinate scale, ``1 / stride`` (1/16 for VGG16 conv5).
        jit_compile: ``"auto"`` (default) compiles the training pass (values with arg-max)
            and the gradient with XLA and leaves the inference pass in plain graph ops, so an
            exported SavedModel serves without XLA; ``True`` also compiles inference; ``False``
            never uses XLA (devices without it). Same outputs in every mode.

    Call arguments:
        inputs: ``[features, boxes]`` with batched boxes ``[B, N, 4]``, or
            ``[features, boxes, box_indices]`` with boxes ``[R, 4]`` and int ``box_indices [R]``.
            ``features``: ``[B, H, W, C]`` (NHWC). Also ``layer(features, boxes, box_indices)``.
        training: in training the forward pass keeps each bin's arg-max for the backward
            pass (same outputs; faster forward+backward, slower forward alone).

    Returns:
        ``[R, PH, PW, C]`` or ``[B, N, PH, PW, C]``.

    Reference:
        Girshick. "Fast R-CNN." ICCV 2015, arXiv:1504.08083 (Sec. 2.1, the RoI pooling
        layer); quantization as in the Caffe ``roi_pooling_layer`` and torchvision ``ops.roi_pool``.
    """

    def __init__(self, output_size=7, spatial_scale=1.0, jit_compile="auto", **kwargs):
        super().__init__(**kwargs)
        self.output_size = roi_common.normalize_output_size(output_size)
        self.spatial_scale = roi_common.check_spatial_scale(spatial_scale)
        self.jit_compile = roi_ops.check_jit_compile(jit_compile)
        self.supports_jit = jit_compile is not False  # the no-XLA gradient is a bincount, not XLA-compilable

    def call(self, inputs, boxes=None, box_indices=None, training=None):
        features, boxes, box_indices = split_roi_inputs(inputs, boxes, box_indices)
        return roi_ops.roi_pool(features, boxes, box_indices, self.output_size, self.spatial_scale,
                                training=training is True, jit_compile=self.jit_compile)

    def compute_output_shape(self, inputs_shape, boxes_shape=None, box_indices_shape=None):
        features_shape, boxes_shape, _ = split_roi_inputs(inputs_shape, boxes_shape, box_indices_shape)
        return roi_output_shape(boxes_shape, self.output_size, features_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "spatial_scale": self.spatial_scale,
                "jit_compile": self.jit_compile}
