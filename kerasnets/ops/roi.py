"""Region-of-interest feature extraction: RoIAlign, RoIPool and FPN multi-level RoIAlign.

Pure tensor functions (TensorFlow backend) shared by the `RoIAlign`, `RoIPool` and
`MultiLevelRoIAlign` layers and by the detection recipes. Semantics are those of
`torchvision.ops.roi_align` / `roi_pool` (which follow Detectron / Caffe2 / Caffe);
the tests compare against an independent NumPy transcription of those rules.

Conventions
-----------
* ``features``: NHWC ``[B, H, W, C]``.
* ``boxes``: **image** (pixel) coordinates, order ``x1, y1, x2, y2`` (torchvision's
  order; TensorFlow's `crop_and_resize` uses ``y1, x1, y2, x2`` normalized - not here).
  Either ``[R, 4]`` together with ``box_indices`` ``[R]`` (int, which image of the
  batch each box belongs to), or batched ``[B, N, 4]`` without indices (box ``n`` of
  image ``b``); the output is then ``[R, PH, PW, C]`` or ``[B, N, PH, PW, C]``.
* ``spatial_scale`` maps image coordinates to feature coordinates (``1 / stride``).
* No gradient flows to the boxes (as in torchvision); gradients flow to the features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import tensorflow as tf

IMPLEMENTATIONS = ("auto", "crop_and_resize", "einsum")


# ---------------------------------------------------------------------------------------
# argument handling


def normalize_output_size(output_size) -> tuple[int, int]:
    """``7`` or ``(7, 7)`` -> ``(7, 7)``; rejects non-positive sizes."""
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        size = tuple(output_size)
    else:
        raise ValueError(f"output_size must be an int or a pair of ints, got {output_size!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise ValueError(f"output_size must be positive integers, got {output_size!r}")
    return int(size[0]), int(size[1])


def _check_scale(spatial_scale):
    if not (isinstance(spatial_scale, (int, float)) and math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be a positive finite number, got {spatial_scale!r}")
    return float(spatial_scale)


def _flatten_boxes(features, boxes, box_indices):
    """Bring boxes to the ``[R, 4]`` + ``[R]`` form. Returns (boxes, indices, batch_shape or None)."""
    if features.shape.rank != 4:
        raise ValueError(f"features must be NHWC [B, H, W, C], got shape {features.shape}")
    boxes = tf.convert_to_tensor(boxes)
    if boxes.shape.rank is None or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have a last dimension of 4 (x1, y1, x2, y2), got shape {boxes.shape}")
    boxes = tf.cast(boxes, tf.float32)
    if boxes.shape.rank == 3:
        if box_indices is not None:
            raise ValueError("box_indices must be None with batched boxes [B, N, 4] (the batch index is implied)")
        shape = tf.shape(boxes)
        flat = tf.reshape(boxes, [-1, 4])
        indices = tf.repeat(tf.range(shape[0], dtype=tf.int32), shape[1])
        return flat, indices, (shape[0], shape[1], boxes.shape[0], boxes.shape[1])
    if boxes.shape.rank == 2:
        if box_indices is None:
            raise ValueError(
                "boxes of shape [R, 4] need box_indices [R] (the image of each box); "
                "or pass batched boxes [B, N, 4]"
            )
        box_indices = tf.convert_to_tensor(box_indices)
        if not box_indices.dtype.is_integer:
            raise ValueError(f"box_indices must be integers, got {box_indices.dtype.name}")
        if box_indices.shape.rank != 1:
            raise ValueError(f"box_indices must have shape [R], got {box_indices.shape}")
        return boxes, tf.cast(box_indices, tf.int32), None
    raise ValueError(f"boxes must be [R, 4] (with box_indices) or [B, N, 4], got shape {boxes.shape}")


def _unflatten(out, batch):
    if batch is None:
        return out
    b, n, b_static, n_static = batch
    tail = tf.shape(out)[1:]
    result = tf.reshape(out, tf.concat([[b, n], tail], 0))
    result.set_shape([b_static, n_static, *out.shape[1:]])
    return result


def _float32(features):
    return features if features.dtype == tf.float32 else tf.cast(features, tf.float32)


# ---------------------------------------------------------------------------------------
# RoIAlign


def roi_align(
    features,
    boxes,
    box_indices=None,
    output_size=7,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
    aligned: bool = True,
    implementation: str = "auto",
):
    """RoIAlign (He et al. 2017) with the exact semantics of ``torchvision.ops.roi_align``.

    For a box ``(x1, y1, x2, y2)`` in image coordinates, with ``o = 0.5`` if ``aligned``
    else ``0``, the box in feature coordinates is ``x1' = x1 * spatial_scale - o`` etc.,
    ``roi_h = y2' - y1'`` (forced ``>= 1`` when ``aligned=False``), ``bin_h = roi_h / PH``.
    Bin ``(ph, pw)`` averages ``g_h x g_w`` bilinear samples on a regular grid::

        y_i = y1' + ph * bin_h + (i + 0.5) * bin_h / g_h,   i = 0 .. g_h - 1
        out[ph, pw] = 1 / max(g_h g_w, 1) * sum_{i, j} bilinear(F, y_i, x_j)

    with ``g = sampling_ratio`` if ``sampling_ratio >= 1`` else ``ceil(roi_h / PH)``
    (adaptive, per RoI). Bilinear interpolation at ``(y, x)``: a sample with
    ``y < -1 or y > H`` (or ``x``) contributes 0; otherwise ``y`` is clamped to
    ``[0, H - 1]``, ``y0 = floor(y)``, ``y1 = min(y0 + 1, H - 1)``, ``ly = y - y0`` and
    ``bilinear = (1-ly)(1-lx) F[y0,x0] + (1-ly) lx F[y0,x1] + ly (1-lx) F[y1,x0] + ly lx F[y1,x1]``.
    Equivalently, the 1-D weight of row ``h`` is the tent ``max(0, 1 - |clamp(y) - h|)``,
    which the ``einsum`` implementation uses.

    Implementations:

    * ``"crop_and_resize"`` (fixed ``sampling_ratio >= 1`` only): the ``g_h PH`` sample
      rows are evenly spaced, so they are one `tf.image.crop_and_resize` grid; the
      features are edge-padded by 1 pixel and coordinates shifted by +1 so samples in
      ``[-1, H]`` read edge values and the rest get ``extrapolation_value=0``
      (torchvision's border rule), then ``avg_pool`` averages each ``g x g`` block.
      Fastest on CPU; **does not compile under XLA** (`crop_and_resize` has no XLA kernel).
    * ``"einsum"``: separable form ``out[k] = A_y[k] F[b_k] A_x[k]^T`` with the per-bin
      averaged 1-D interpolation matrices ``A_y [R, PH, H]``, ``A_x [R, PW, W]``. Exact for
      any sampling ratio including adaptive, XLA-compatible, but costs
      ``O(B R PH H W C)`` (dense contraction), i.e. much slower on big maps.
    * ``"auto"``: ``crop_and_resize`` for a fixed sampling ratio, ``einsum`` for adaptive.

    Args:
        features: ``[B, H, W, C]`` float tensor.
        boxes: ``[R, 4]`` (with ``box_indices``) or ``[B, N, 4]``; image coordinates, ``x1, y1, x2, y2``.
        box_indices: ``[R]`` int tensor, image of each box; ``None`` for batched boxes.
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: image -> feature scale (``1 / stride``).
        sampling_ratio: samples per bin and axis; ``<= 0`` for adaptive ``ceil(roi_size / output_size)``.
        aligned: ``True`` shifts by -0.5 pixel (pixel centres at ``i + 0.5``; detectron2's
            ``ROIAlignV2``); ``False`` is the legacy Detectron / torchvision default.
        implementation: ``"auto"``, ``"crop_and_resize"`` or ``"einsum"``.

    Returns:
        ``[R, PH, PW, C]`` (or ``[B, N, PH, PW, C]``) in the dtype of ``features``.
    """
    ph, pw = normalize_output_size(output_size)
    spatial_scale = _check_scale(spatial_scale)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise ValueError(f"sampling_ratio must be an int (<= 0 for adaptive), got {sampling_ratio!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "auto":
        implementation = "crop_and_resize" if sampling_ratio >= 1 else "einsum"
    if implementation == "crop_and_resize" and sampling_ratio < 1:
        raise ValueError(
            "implementation='crop_and_resize' needs a fixed sampling_ratio >= 1 "
            f"(got {sampling_ratio}); use implementation='einsum' for adaptive sampling"
        )
    features = tf.convert_to_tensor(features)
    flat_boxes, indices, batch = _flatten_boxes(features, boxes, box_indices)
    flat_boxes = tf.stop_gradient(flat_boxes)
    fn = _roi_align_crop_and_resize if implementation == "crop_and_resize" else _roi_align_einsum
    out = fn(_float32(features), flat_boxes, indices, (ph, pw), spatial_scale, sampling_ratio, bool(aligned))
    return _unflatten(tf.cast(out, features.dtype), batch)


def _scaled_boxes(boxes, spatial_scale, aligned):
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = tf.unstack(boxes * spatial_scale - offset, axis=1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision: "Force malformed ROIs to be 1x1"
        roi_w, roi_h = tf.maximum(roi_w, 1.0), tf.maximum(roi_h, 1.0)
    return x1, y1, roi_w, roi_h


def _roi_align_crop_and_resize(features, boxes, indices, output_size, spatial_scale, s, aligned):
    ph, pw = output_size
    x1, y1, roi_w, roi_h = _scaled_boxes(boxes, spatial_scale, aligned)
    # First / last of the s*P evenly spaced samples, +1 for the 1-pixel border pad.
    first_y = y1 + 0.5 * roi_h / (ph * s) + 1.0
    last_y = y1 + (ph * s - 0.5) * roi_h / (ph * s) + 1.0
    first_x = x1 + 0.5 * roi_w / (pw * s) + 1.0
    last_x = x1 + (pw * s - 0.5) * roi_w / (pw * s) + 1.0
    # SYMMETRIC by 1 px == replicate the edge: samples in [-1, 0] read row 0 (torchvision's clamp).
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    height = tf.cast(tf.shape(padded)[1], tf.float32) - 1.0
    width = tf.cast(tf.shape(padded)[2], tf.float32) - 1.0
    normalized = tf.stack([first_y / height, first_x / width, last_y / height, last_x / width], axis=1)
    crops = tf.image.crop_and_resize(
        padded, normalized, indices, [ph * s, pw * s], method="bilinear", extrapolation_value=0.0
    )
    if s == 1:
        return crops
    return tf.nn.avg_pool2d(crops, s, s, "VALID")


def _interpolation_matrix(start, roi_size, pooled: int, length, sampling_ratio: int, static_length):
    """Per-bin averaged 1-D bilinear weights ``A [R, pooled, length]`` (torchvision's rules)."""
    bin_size = roi_size / pooled  # [R]
    if sampling_ratio >= 1:
        grid = tf.fill(tf.shape(bin_size), float(sampling_ratio))
    else:
        grid = tf.math.ceil(bin_size)  # adaptive: ceil(roi_size / pooled); <= 0 gives an empty bin
    bins = tf.range(pooled, dtype=tf.float32)
    bin_start = start[:, None] + bins[None, :] * bin_size[:, None]  # [R, P]
    step = bin_size / tf.maximum(grid, 1.0)  # spacing of the samples inside a bin
    length_f = tf.cast(length, tf.float32)
    positions = tf.range(length, dtype=tf.float32)  # [L]
    if sampling_ratio >= 1:
        first = tf.zeros_like(bin_start)
        count = sampling_ratio
    else:
        # Only samples inside [-1, L] contribute. With adaptive sampling the spacing is
        # > 0.5 whenever there is more than one sample, so at most 2L + 3 of them are
        # valid per bin; start one before the first valid one and enumerate
        # min(max grid, 2L + 5) samples.
        safe_step = tf.where(step > 0, step, 1.0)[:, None]
        first = tf.maximum(tf.floor((-1.0 - bin_start) / safe_step - 0.5) - 1.0, 0.0)
        first = tf.where(tf.math.is_finite(first), first, 0.0)
        bound = 2 * length + 5
        count = tf.minimum(tf.cast(tf.reduce_max(tf.concat([grid, [0.0]], 0)), tf.int32), bound)

    def body(t, acc):
        index = first + tf.cast(t, tf.float32)  # [R, P]
        y = bin_start + (index + 0.5) * step[:, None]
        valid = (index < grid[:, None]) & (y >= -1.0) & (y <= length_f)
        clamped = tf.clip_by_value(y, 0.0, length_f - 1.0)
        weight = tf.nn.relu(1.0 - tf.abs(clamped[..., None] - positions))  # tent == bilinear weights
        return t + 1, acc + tf.where(valid[..., None], weight, 0.0)

    acc = tf.zeros(tf.concat([tf.shape(bin_start), [length]], 0), tf.float32)
    if isinstance(count, int):
        t = tf.constant(0)
        for _ in range(count):
            t, acc = body(t, acc)
    else:
        _, acc = tf.while_loop(lambda t, a: t < count, body, (tf.constant(0), acc))
    acc.set_shape([None, pooled, static_length])
    return acc / tf.maximum(grid, 1.0)[:, None, None]


def _roi_align_einsum(features, boxes, indices, output_size, spatial_scale, s, aligned):
    ph, pw = output_size
    x1, y1, roi_w, roi_h = _scaled_boxes(boxes, spatial_scale, aligned)
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    a_y = _interpolation_matrix(y1, roi_h, ph, height, s, features.shape[1])  # [R, PH, H]
    a_x = _interpolation_matrix(x1, roi_w, pw, width, s, features.shape[2])  # [R, PW, W]
    # Select each RoI's image inside the contraction: [R, PH, B, H] x [B, H, W*C].
    one_hot = tf.one_hot(indices, batch, dtype=tf.float32)  # [R, B]
    a_yb = tf.reshape(a_y[:, :, None, :] * one_hot[:, None, :, None], [-1, batch * height])
    rows = tf.matmul(a_yb, tf.reshape(features, [batch * height, width * channels]))
    rows = tf.reshape(rows, [-1, ph, width, channels])  # [R, PH, W, C]
    out = tf.einsum("rqw,rpwc->rpqc", a_x, rows)
    out.set_shape([boxes.shape[0], ph, pw, features.shape[3]])
    return out


# ---------------------------------------------------------------------------------------
# RoIPool


def round_half_away_from_zero(x):
    """C's ``round()``: halves go away from zero (``tf.round`` rounds half to even)."""
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


JIT_COMPILE_MODES = ("auto", True, False)


def check_jit_compile(value):
    """``"auto"``, ``True`` or ``False`` (not 1 / 0 / other strings)."""
    if isinstance(value, bool) or (isinstance(value, str) and value == "auto"):
        return value
    raise ValueError(f"jit_compile must be one of {JIT_COMPILE_MODES}, got {value!r}")


def roi_pool(features, boxes, box_indices=None, output_size=7, spatial_scale: float = 1.0,
             training: bool = False, jit_compile="auto"):
    """RoI max pooling (Girshick 2015) with Caffe / ``torchvision.ops.roi_pool`` quantization.

    With ``round`` = half away from zero::

        x_s = round(x1 * scale), x_e = round(x2 * scale)          (same for y)
        roi_w = max(x_e - x_s + 1, 1),  bin_w = roi_w / PW         (float)
        w_start = clip(floor(pw * bin_w) + x_s, 0, W)
        w_end   = clip(ceil((pw + 1) * bin_w) + x_s, 0, W)
        out[ph, pw] = max over [h_start, h_end) x [w_start, w_end) of F, or 0 if empty

    The gradient goes to the arg-max of each bin (first in row-major order on ties).

    Implementation: a table of window maxima ``T[i, j] = max_pool(F, k_i x k_j)`` for the odd
    window sizes ``k_n = 2^(n+1) - 1`` (1, 3, 7, ...), built with stride-1 max pooling; two
    windows of size ``k_n`` anchored at both ends of a bin cover any extent ``k_n <= e <= 2 k_n``,
    so every bin is the max of four table look-ups of whole channel rows. The number of
    window sizes is fixed when the op is traced, from the static map size (enough for every
    box inside the map, at most 4 per axis; 3 if the size is unknown); larger bins are taken
    in bands by a loop, and a map whose table would exceed `MAX_TABLE_ELEMENTS` uses fewer
    window sizes. The arg-max rides with the value in one int64 key (value bits, then the
    complemented position), so the same max finds the first maximum in row-major order.
    With ``training=True`` the forward pass runs on the keys and keeps the arg-max for the
    backward pass (what a training step wants); otherwise the forward pass takes the cheaper
    float max and the backward pass, if any, recomputes the arg-max. The gradient is a
    scatter-add of the upstream values at the arg-max positions.

    Args:
        features: ``[B, H, W, C]``.
        boxes: ``[R, 4]`` (with ``box_indices``) or ``[B, N, 4]``; image coordinates, ``x1, y1, x2, y2``.
        box_indices: ``[R]`` int tensor or ``None`` for batched boxes.
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: image -> feature scale (``1 / stride``).
        training: keep the forward pass's arg-max for the gradient (same outputs either way).
        jit_compile: ``"auto"`` compiles the arg-max pass and the gradient with XLA (fused
            look-ups, ~2x faster) and keeps the inference forward pass in plain graph ops, so
            exported SavedModels serve without XLA; ``True`` compiles every pass, ``False`` none
            (for devices without XLA). The outputs are the same in every mode.

    Returns:
        ``[R, PH, PW, C]`` (or ``[B, N, PH, PW, C]``) in the dtype of ``features``.
    """
    ph, pw = normalize_output_size(output_size)
    spatial_scale = _check_scale(spatial_scale)
    jit_compile = check_jit_compile(jit_compile)
    features = tf.convert_to_tensor(features)
    flat_boxes, indices, batch = _flatten_boxes(features, boxes, box_indices)
    out = _roi_pool(_float32(features), tf.stop_gradient(flat_boxes), indices, (ph, pw), spatial_scale,
                    training=training is True, jit_compile=jit_compile)  # a symbolic `training` counts as False
    return _unflatten(tf.cast(out, features.dtype), batch)


def _bin_edges(start, end, pooled: int, length):
    """Integer bin ``[lo, hi)`` per (RoI, bin), both ``[R, P]`` int32, clipped to ``[0, length]``."""
    size = tf.maximum(end - start + 1.0, 1.0)
    # torchvision divides in float32 (IEEE, correctly rounded). Graph optimization rewrites a
    # division by a constant as a multiplication by its reciprocal, which is 1 ulp off for some
    # sizes and moves a floor/ceil bin edge; dividing in float64 and rounding to float32 gives the
    # correctly rounded float32 quotient either way (integer operands are never near a tie).
    bin_size = tf.cast(tf.cast(size, tf.float64) / float(pooled), tf.float32)
    bins = tf.range(pooled, dtype=tf.float32)
    lo = tf.floor(bins[None, :] * bin_size[:, None]) + start[:, None]
    hi = tf.math.ceil((bins[None, :] + 1.0) * bin_size[:, None]) + start[:, None]
    length_f = tf.cast(length, tf.float32)
    lo = tf.clip_by_value(lo, 0.0, length_f)
    hi = tf.clip_by_value(hi, 0.0, length_f)
    return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32)


def _floor_log2(n):
    """floor(log2(n)) for int32 n >= 1, exact (float log2 can land just below an integer)."""
    j = tf.cast(tf.floor(tf.math.log(tf.cast(n, tf.float32)) / math.log(2.0)), tf.int32)
    j = tf.where(tf.bitwise.left_shift(1, j + 1) <= n, j + 1, j)
    return tf.where(tf.bitwise.left_shift(1, j) > n, j - 1, j)


def _roi_pool(features, boxes, indices, output_size, spatial_scale, training=False, jit_compile="auto"):
    ph, pw = output_size
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    q = round_half_away_from_zero(boxes * spatial_scale)
    x_s, y_s, x_e, y_e = tf.unstack(q, axis=1)
    h_lo, h_hi = _bin_edges(y_s, y_e, ph, height)  # [R, PH]
    w_lo, w_hi = _bin_edges(x_s, x_e, pw, width)  # [R, PW]
    bins = (h_lo, h_hi, w_lo, w_hi)
    # Python constants of the traced op (also the cache key of the XLA functions).
    plan = (_static_window_levels(features.shape[1], ph), _static_window_levels(features.shape[2], pw),
            int(MAX_TABLE_ELEMENTS))
    xla_keys, xla_values = jit_compile is not False, jit_compile is True

    @tf.custom_gradient
    def pool(fmap):
        # Training keeps the arg-max of the forward pass (one int64 pass gives values and
        # positions); inference computes the cheaper float max and, if differentiated after
        # all, finds the arg-max again in the backward pass. The gradient is defined here, so
        # the tape must not trace one through the compiled functions (their while loop).
        fmap = tf.stop_gradient(fmap)
        if training:
            out, argmax = _max_and_argmax(fmap, indices, bins, plan, xla_keys)
        else:
            out, argmax = (_max_value_xla if xla_values else _max_value)(fmap, indices, bins, plan), None

        def grad(upstream):
            # Send each bin's gradient to the input element that won it (Fast R-CNN's backward).
            winners = argmax if argmax is not None else _max_and_argmax(fmap, indices, bins, plan, xla_keys)[1]
            scatter = _scatter_to_argmax_xla if xla_keys else _scatter_to_argmax_bincount
            return scatter(upstream, winners, tf.shape(fmap))

        return out, grad

    out = pool(features)
    out.set_shape([boxes.shape[0], ph, pw, features.shape[3]])
    return out


def _scatter_to_argmax(upstream, argmax, shape):
    """``grad[b, h, w, c] = sum of upstream[r, p, q, c]`` over the bins whose arg-max is ``(b, h, w)``.

    One segment sum (what XLA compiles into a single fused scatter); empty bins (arg-max -1)
    have no input.
    """
    channels = tf.cast(shape[3], tf.int64)
    winner = tf.cast(tf.maximum(argmax, 0), tf.int64) * channels + tf.range(channels)
    upstream = tf.where(argmax >= 0, upstream, tf.zeros_like(upstream))
    flat = tf.math.unsorted_segment_sum(tf.reshape(upstream, [-1]), tf.reshape(winner, [-1]),
                                        tf.reduce_prod(tf.cast(shape, tf.int64)))
    return tf.reshape(flat, shape)


def _scatter_to_argmax_bincount(upstream, argmax, shape):
    """`_scatter_to_argmax` without XLA: a weighted bincount is ~3x faster than the graph-mode
    segment sum on CPU, but takes int32 ids only and has no XLA kernel."""
    size = tf.reduce_prod(tf.cast(shape, tf.int64))

    def bincount():
        winner = tf.maximum(argmax, 0) * shape[3] + tf.range(shape[3])
        weights = tf.where(argmax >= 0, upstream, tf.zeros_like(upstream))
        size32 = tf.cast(size, tf.int32)
        flat = tf.math.bincount(tf.reshape(winner, [-1]), weights=tf.reshape(weights, [-1]),
                                minlength=size32, maxlength=size32, dtype=upstream.dtype)
        return tf.reshape(flat, shape)

    return tf.cond(size < 2**31 - 1, bincount, lambda: _scatter_to_argmax(upstream, argmax, shape))


# Largest window table built before fewer window sizes (and more bands) are used: 2^26 elements
# (256 MB of float32 values in the forward pass, 512 MB of int64 keys in the training pass).
MAX_TABLE_ELEMENTS = 1 << 26
# Window sizes per axis at most (k = 1, 3, 7, 15): one band covers bins up to 30 pixels.
MAX_WINDOW_LEVELS = 4


def _window_size(level: int) -> int:
    return 2 ** (level + 1) - 1


def _window_level(extent):
    """Largest ``n`` with ``k_n = 2^(n+1) - 1 <= extent`` (int32 tensor, ``extent >= 1``)."""
    return _floor_log2(extent + 1) - 1


def _static_window_levels(length, pooled: int) -> int:
    """Window sizes one band needs for the largest bin of a box inside a map of ``length``.

    Such a bin spans at most ``ceil(length / pooled) + 1`` pixels (floor / ceil edges);
    ``n`` sizes cover ``2 k_{n-1}``. Bins of boxes reaching past the map are taken in bands.
    """
    if length is None:
        return 3
    largest = -(-int(length) // pooled) + 1
    levels = 1
    while 2 * _window_size(levels - 1) < largest and levels < MAX_WINDOW_LEVELS:
        levels += 1
    return levels


def _max_value(features, indices, bins, plan):
    """Max of every bin as float32 ``[R, PH, PW, C]``, 0 for empty bins."""
    out = _windowed_max(features, indices, bins, plan)
    return tf.where(_empty_bins(bins)[..., None], tf.zeros_like(out), out)


def _max_and_argmax(features, indices, bins, plan, xla: bool):
    """Max of every bin (0 if empty) and its flat ``(b*H + h)*W + w`` position (-1 if empty).

    The arg-max rides along with the value in one int64 key per element, ``key =
    sortable(value) * 2^32 + (2^32 - 1 - position)``: the largest key of a bin holds its
    largest value and, among equal values, the smallest position, i.e. the first maximum in
    row-major order, which is the element torchvision's scan keeps. So both passes are the
    same max-reduction (`_windowed_max`), on float32 values or on int64 keys.
    """
    if xla:  # two compiled functions: one fusion with both outputs would do the look-ups twice
        return _decode_keys_xla(_max_keys_xla(features, indices, bins, plan), bins)
    return _decode_keys(_max_keys(features, indices, bins, plan), bins)


def _max_keys(features, indices, bins, plan):
    shape = tf.shape(features)
    position = tf.reshape(tf.range(shape[0] * shape[1] * shape[2], dtype=tf.int64), [shape[0], shape[1], shape[2], 1])
    keys = tf.bitwise.left_shift(tf.cast(_sortable_int(features), tf.int64), 32) + ((1 << 32) - 1 - position)
    return _windowed_max(keys, indices, bins, plan)


def _decode_keys(best, bins):
    empty = _empty_bins(bins)[..., None]
    argmax = tf.cast((1 << 32) - 1 - tf.bitwise.bitwise_and(best, (1 << 32) - 1), tf.int32)
    out = _from_sortable_int(tf.cast(tf.bitwise.right_shift(best, 32), tf.int32))
    return tf.where(empty, tf.zeros_like(out), out), tf.where(empty, -1, argmax)


def _empty_bins(bins):
    h_lo, h_hi, w_lo, w_hi = bins
    return ((h_hi - h_lo)[:, :, None] <= 0) | ((w_hi - w_lo)[:, None, :] <= 0)  # [R, PH, PW]


def _sortable_int(values):
    """int32 keys ordered as the float32 `values` (IEEE bits, negatives flipped); -0.0 counts as +0.0."""
    values = tf.where(tf.equal(values, 0.0), tf.zeros_like(values), tf.cast(values, tf.float32))
    bits = tf.bitcast(values, tf.int32)
    return tf.bitwise.bitwise_xor(bits, tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 31), 0x7FFFFFFF))


def _from_sortable_int(keys):
    """Inverse of `_sortable_int` (the flip is an involution)."""
    bits = tf.bitwise.bitwise_xor(keys, tf.bitwise.bitwise_and(tf.bitwise.right_shift(keys, 31), 0x7FFFFFFF))
    return tf.bitcast(bits, tf.float32)


def _windowed_max(table, indices, bins, plan):
    """``max table[b, h0:h1, w0:w1, c]`` for every (RoI, bin, channel) as ``[R, PH, PW, C]``.

    ``plan = (levels_h, levels_w, max_table_elements)``. When the map is too big for a table
    of ``levels_h x levels_w`` window planes, fewer window sizes are used (down to the map
    itself, windows of one pixel), decided at run time when the size is not static.
    Empty bins return garbage.
    """
    levels_h, levels_w, max_elements = plan
    options = sorted({(min(n, levels_h), min(n, levels_w)) for n in range(1, max(levels_h, levels_w) + 1)},
                     key=lambda lv: -lv[0] * lv[1])
    planes = [lh * lw for lh, lw in options]
    static_size = table.shape.num_elements()
    if static_size is not None:
        affordable = [lv for lv, n in zip(options, planes) if n == 1 or n * static_size <= max_elements]
        return _banded_max(table, indices, bins, *affordable[0])
    if len(options) == 1:
        return _banded_max(table, indices, bins, *options[0])
    # Index of the first option that fits (options are ordered by table size, the last one is 1 plane).
    size = tf.size(table, out_type=tf.int64)
    branch = tf.add_n([tf.cast(n * size > max_elements, tf.int32) for n in planes[:-1]])
    return tf.switch_case(branch, [lambda lv=lv: _banded_max(table, indices, bins, *lv) for lv in options])


def _window_table(table, levels_h: int, levels_w: int):
    """Rows ``(i, j, b, h, w)`` of ``max table`` over the ``k_i x k_j`` window centred on ``(h, w)``.

    Stride-1 ``SAME`` max pooling, separable (columns, then rows). The sizes are odd, so a
    window whose top-left pixel is ``(h, w)`` is centred on ``(h + (k_i - 1) / 2, w + (k_j - 1) / 2)``;
    the look-ups only take windows inside the map, so the padding never matters.
    """
    channels = tf.shape(table)[3]
    if levels_h == levels_w == 1:
        return tf.reshape(table, [-1, channels])
    columns = [table if j == 0 else tf.nn.max_pool2d(table, [1, _window_size(j)], 1, "SAME") for j in range(levels_w)]
    planes = [column if i == 0 else tf.nn.max_pool2d(column, [_window_size(i), 1], 1, "SAME")
              for i in range(levels_h) for column in columns]
    return tf.reshape(tf.stack(planes), [-1, channels])


def _banded_max(table, indices, bins, levels_h: int, levels_w: int):
    """Four look-ups per bin and band; a bin wider than one band (``2 k``) is taken in several."""
    h_lo, h_hi, w_lo, w_hi = bins
    shape = tf.shape(table)
    batch, height, width = shape[0], shape[1], shape[2]
    flat = _window_table(table, levels_h, levels_w)
    band_h, band_w = 2 * _window_size(levels_h - 1), 2 * _window_size(levels_w - 1)
    sizes_h = tf.constant([_window_size(n) for n in range(levels_h)])
    sizes_w = tf.constant([_window_size(n) for n in range(levels_w)])

    def windows(lo, hi, band_index, band, sizes, length):
        """Level and the two window centres of each bin's ``band_index``-th band, ``[R, P]`` each."""
        top = lo + band_index * band
        extent = tf.clip_by_value(hi - top, 1, band)  # bins already covered repeat a window inside them
        level = _window_level(extent)
        size = tf.gather(sizes, level)
        first = tf.minimum(top, hi - 1)
        second = first + extent - size
        half = (size - 1) // 2
        return (level, tf.clip_by_value(first + half, 0, length - 1),
                tf.clip_by_value(second + half, 0, length - 1))

    def num_bands(lo, hi, band):
        return (tf.reduce_max(tf.concat([tf.reshape(hi - lo, [-1]), [1]], 0)) + band - 1) // band

    bands_w = num_bands(w_lo, w_hi, band_w)
    image = indices[:, None, None]

    def band_max(step):
        level_h, row_a, row_b = windows(h_lo, h_hi, step // bands_w, band_h, sizes_h, height)
        level_w, col_a, col_b = windows(w_lo, w_hi, step % bands_w, band_w, sizes_w, width)
        plane = ((level_h[:, :, None] * levels_w + level_w[:, None, :]) * batch + image) * height  # [R, PH, PW]
        found = None
        for row in (row_a, row_b):
            base = (plane + row[:, :, None]) * width
            for col in (col_a, col_b):
                value = tf.gather(flat, base + col[:, None, :])
                found = value if found is None else tf.maximum(found, value)
        return found

    steps = num_bands(h_lo, h_hi, band_h) * bands_w
    _, out = tf.while_loop(lambda k, _: k < steps, lambda k, acc: (k + 1, tf.maximum(acc, band_max(k))),
                           (tf.constant(1), band_max(0)))
    return out


# XLA fuses the four look-ups and the max (and the key arithmetic) into one pass over the
# output instead of materializing each gather: about half the time of the graph ops on CPU.
_max_value_xla = tf.function(_max_value, jit_compile=True, reduce_retracing=True)
_max_keys_xla = tf.function(_max_keys, jit_compile=True, reduce_retracing=True)
_decode_keys_xla = tf.function(_decode_keys, jit_compile=True, reduce_retracing=True)
_scatter_to_argmax_xla = tf.function(_scatter_to_argmax, jit_compile=True, reduce_retracing=True)


# ---------------------------------------------------------------------------------------
# FPN multi-level RoIAlign


def fpn_levels(boxes, min_level: int = 2, max_level: int = 5, canonical_level: int = 4,
               canonical_size: float = 224.0, eps: float = 1e-6):
    """FPN level of each box (Lin et al. 2017, Eq. 1), int32 with the shape of ``boxes[..., 0]``.

    ``k = floor(k0 + log2(sqrt(w h) / 224 + eps))`` clamped to ``[min_level, max_level]``,
    ``k0 = canonical_level`` (4: a 224-pixel box goes to P4). ``eps`` (1e-6 as in
    torchvision's ``LevelMapper``) keeps zero-area boxes finite (they go to ``min_level``).
    Boxes are image coordinates ``x1, y1, x2, y2``.
    """
    if min_level > max_level:
        raise ValueError(f"min_level ({min_level}) must be <= max_level ({max_level})")
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    w = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    k = tf.floor(canonical_level + tf.math.log(tf.sqrt(w * h) / canonical_size + eps) / math.log(2.0))
    k = tf.where(tf.math.is_nan(k), float(min_level), k)
    return tf.cast(tf.clip_by_value(k, float(min_level), float(max_level)), tf.int32)


def multilevel_roi_align(
    features,
    boxes,
    box_indices=None,
    output_size=7,
    levels: Sequence[int] = (2, 3, 4, 5),
    strides: Sequence[float] | None = None,
    sampling_ratio: int = 2,
    aligned: bool = True,
    canonical_level: int = 4,
    canonical_size: float = 224.0,
    implementation: str = "auto",
):
    """Pool each box at its FPN level (see `fpn_levels`) and return the results in box order.

    Args:
        features: list/tuple of ``[B, H_l, W_l, C]`` maps in the order of ``levels``, or a
            dict keyed by level (``2`` or ``"P2"`` / ``"p2"``).
        boxes, box_indices: as in `roi_align` (image coordinates, ``x1, y1, x2, y2``).
        levels: pyramid levels of the maps (``P_l`` has stride ``2**l``); boxes are
            assigned to ``floor(k0 + log2(sqrt(wh)/224))`` clamped to ``[min(levels), max(levels)]``.
        strides: strides of the maps (default ``2**l``); ``spatial_scale = 1 / stride``.
        Other arguments: as in `roi_align`.
    """
    levels = [int(level) for level in levels]
    if not levels or sorted(levels) != levels or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be a non-empty increasing sequence of ints, got {levels}")
    if levels != list(range(levels[0], levels[-1] + 1)):
        raise ValueError(f"levels must be consecutive (every level between min and max present), got {levels}")
    maps = select_levels(features, levels)
    if strides is None:
        strides = [2.0**level for level in levels]
    if len(strides) != len(levels):
        raise ValueError(f"{len(strides)} strides given for {len(levels)} levels")
    ref = tf.convert_to_tensor(maps[0])
    flat_boxes, indices, batch = _flatten_boxes(ref, boxes, box_indices)
    assigned = fpn_levels(flat_boxes, levels[0], levels[-1], canonical_level, canonical_size) - levels[0]
    parts = tf.dynamic_partition(tf.range(tf.shape(flat_boxes)[0]), assigned, len(levels))
    pooled = []
    for i, (fmap, stride) in enumerate(zip(maps, strides)):
        fmap = tf.convert_to_tensor(fmap)
        pooled.append(
            roi_align(fmap, tf.gather(flat_boxes, parts[i]), tf.gather(indices, parts[i]), output_size,
                      1.0 / float(stride), sampling_ratio, aligned, implementation)
        )
    out = tf.dynamic_stitch(parts, pooled)  # back to the original box order
    ph, pw = normalize_output_size(output_size)
    out.set_shape([flat_boxes.shape[0], ph, pw, ref.shape[3]])
    return _unflatten(out, batch)


def select_levels(features, levels: Sequence[int]) -> list:
    """The feature maps of ``levels`` from a list/tuple (in level order) or a level-keyed dict."""
    if isinstance(features, Mapping):
        picked = []
        for level in levels:
            for key in (level, str(level), f"P{level}", f"p{level}"):
                if key in features:
                    picked.append(features[key])
                    break
            else:
                raise ValueError(f"no feature map for level {level} in keys {sorted(map(str, features))}")
        return picked
    if isinstance(features, (list, tuple)):
        if len(features) != len(levels):
            raise ValueError(f"{len(features)} feature maps given for levels {list(levels)}")
        return list(features)
    raise ValueError("features must be a list/tuple of maps (one per level) or a dict keyed by level")
