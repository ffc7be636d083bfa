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


def roi_pool(features, boxes, box_indices=None, output_size=7, spatial_scale: float = 1.0,
             training: bool = False):
    """RoI max pooling (Girshick 2015) with Caffe / ``torchvision.ops.roi_pool`` quantization.

    With ``round`` = half away from zero::

        x_s = round(x1 * scale), x_e = round(x2 * scale)          (same for y)
        roi_w = max(x_e - x_s + 1, 1),  bin_w = roi_w / PW         (float)
        w_start = clip(floor(pw * bin_w) + x_s, 0, W)
        w_end   = clip(ceil((pw + 1) * bin_w) + x_s, 0, W)
        out[ph, pw] = max over [h_start, h_end) x [w_start, w_end) of F, or 0 if empty

    The gradient goes to the arg-max of each bin (first in row-major order on ties).

    Implementation: a 2-D sparse table (``T[i, j][h, w] = max F[h : h + 2^i, w : w + 2^j]``,
    levels up to the tallest / widest bin) answers every bin with four look-ups of whole
    channel rows; above `MAX_TABLE_ELEMENTS` the row levels are capped and a loop takes the
    bins in bands of rows. Memory ``~(1 + log2 max bin h)(1 + log2 max bin w) x`` the feature
    map. The arg-max travels with the value as one int64 key (value bits, then the
    complemented position), so the same max finds the first maximum in row-major order. With
    ``training=True`` the forward pass runs on the keys and keeps the arg-max for the backward
    pass (what a training step wants); otherwise the forward pass takes the cheaper float max
    and the backward pass, if any, recomputes the arg-max. The gradient is a weighted
    ``bincount`` of the upstream values at the arg-max positions.
    Not XLA-compatible (dynamic-size `TensorArray`).

    Args:
        features: ``[B, H, W, C]``.
        boxes: ``[R, 4]`` (with ``box_indices``) or ``[B, N, 4]``; image coordinates, ``x1, y1, x2, y2``.
        box_indices: ``[R]`` int tensor or ``None`` for batched boxes.
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: image -> feature scale (``1 / stride``).
        training: keep the forward pass's arg-max for the gradient (same outputs either way).

    Returns:
        ``[R, PH, PW, C]`` (or ``[B, N, PH, PW, C]``) in the dtype of ``features``.
    """
    ph, pw = normalize_output_size(output_size)
    spatial_scale = _check_scale(spatial_scale)
    features = tf.convert_to_tensor(features)
    flat_boxes, indices, batch = _flatten_boxes(features, boxes, box_indices)
    out = _roi_pool(_float32(features), tf.stop_gradient(flat_boxes), indices, (ph, pw), spatial_scale,
                    training=training is True)  # a symbolic `training` counts as False
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


def _roi_pool(features, boxes, indices, output_size, spatial_scale, training=False):
    ph, pw = output_size
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    q = round_half_away_from_zero(boxes * spatial_scale)
    x_s, y_s, x_e, y_e = tf.unstack(q, axis=1)
    h_lo, h_hi = _bin_edges(y_s, y_e, ph, height)  # [R, PH]
    w_lo, w_hi = _bin_edges(x_s, x_e, pw, width)  # [R, PW]
    bins = (h_lo, h_hi, w_lo, w_hi)

    @tf.custom_gradient
    def pool(fmap):
        # Training keeps the arg-max of the forward pass (one int64 pass gives values and
        # positions); inference computes the cheaper float max and, if differentiated after
        # all, finds the arg-max again in the backward pass.
        out, argmax = _max_over_bins(fmap, indices, bins, with_argmax=bool(training))

        def grad(upstream):
            # Send each bin's gradient to the input element that won it (Fast R-CNN's backward).
            winners = argmax if argmax is not None else _max_over_bins(fmap, indices, bins, with_argmax=True)[1]
            return _scatter_to_argmax(upstream, winners, tf.shape(fmap))

        return out, grad

    out = pool(features)
    out.set_shape([boxes.shape[0], ph, pw, features.shape[3]])
    return out


def _scatter_to_argmax(upstream, argmax, shape):
    """``grad[b, h, w, c] = sum of upstream[r, p, q, c]`` over the bins whose arg-max is ``(b, h, w)``."""
    channels = shape[3]
    valid = argmax >= 0  # empty bins have no input
    upstream = tf.where(valid, upstream, tf.zeros_like(upstream))
    size = tf.reduce_prod(tf.cast(shape, tf.int64))

    def small():  # weighted bincount: ~3x faster than unsorted_segment_sum on CPU, int32 ids only
        winner = tf.maximum(argmax, 0) * channels + tf.range(channels)
        size32 = tf.cast(size, tf.int32)
        return tf.math.bincount(tf.reshape(winner, [-1]), weights=tf.reshape(upstream, [-1]),
                                minlength=size32, maxlength=size32, dtype=upstream.dtype)

    def large():
        winner = tf.cast(tf.maximum(argmax, 0), tf.int64) * tf.cast(channels, tf.int64) + tf.range(
            tf.cast(channels, tf.int64))
        return tf.math.unsorted_segment_sum(upstream, winner, size)

    flat = tf.cond(size < 2**31 - 1, small, large)
    return tf.reshape(flat, shape)


# Largest sparse table built before falling back to a loop over bands of rows: 2^26 elements
# (256 MB of float32 values in the forward pass, 512 MB of int64 keys in the backward pass).
MAX_TABLE_ELEMENTS = 1 << 26


def _max_over_bins(features, indices, bins, with_argmax: bool):
    """Max of every bin (0 if empty) and optionally its flat ``(b*H + h)*W + w`` position (-1 if empty).

    The arg-max rides along with the value in one int64 key per element, ``key =
    sortable(value) * 2^32 + (2^32 - 1 - position)``: the largest key of a bin holds its
    largest value and, among equal values, the smallest position, i.e. the first maximum in
    row-major order, which is the element torchvision's scan keeps. So both passes are the
    same max-reduction (`_sparse_table_max`), on float32 values or on int64 keys.
    """
    h_lo, h_hi, w_lo, w_hi = bins
    empty = ((h_hi - h_lo)[:, :, None] <= 0) | ((w_hi - w_lo)[:, None, :] <= 0)  # [R, PH, PW]
    if not with_argmax:
        out = _sparse_table_max(features, indices, bins)
        return tf.where(empty[..., None], tf.zeros_like(out), out), None
    shape = tf.shape(features)
    position = tf.reshape(tf.range(shape[0] * shape[1] * shape[2], dtype=tf.int64), [shape[0], shape[1], shape[2], 1])
    keys = tf.bitwise.left_shift(tf.cast(_sortable_int(features), tf.int64), 32) + ((1 << 32) - 1 - position)
    best = _sparse_table_max(keys, indices, bins)
    argmax = tf.cast((1 << 32) - 1 - tf.bitwise.bitwise_and(best, (1 << 32) - 1), tf.int32)
    out = _from_sortable_int(tf.cast(tf.bitwise.right_shift(best, 32), tf.int32))
    return tf.where(empty[..., None], tf.zeros_like(out), out), tf.where(empty[..., None], -1, argmax)


def _sortable_int(values):
    """int32 keys ordered as the float32 `values` (IEEE bits, negatives flipped); -0.0 counts as +0.0."""
    values = tf.where(tf.equal(values, 0.0), tf.zeros_like(values), tf.cast(values, tf.float32))
    bits = tf.bitcast(values, tf.int32)
    return tf.bitwise.bitwise_xor(bits, tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 31), 0x7FFFFFFF))


def _from_sortable_int(keys):
    """Inverse of `_sortable_int` (the flip is an involution)."""
    bits = tf.bitwise.bitwise_xor(keys, tf.bitwise.bitwise_and(tf.bitwise.right_shift(keys, 31), 0x7FFFFFFF))
    return tf.bitcast(bits, tf.float32)


def _sparse_table_max(table, indices, bins):
    """``max table[b, h0:h1, w0:w1, c]`` for every (RoI, bin, channel) as ``[R, PH, PW, C]``.

    A 2-D sparse table ``T[i, j][h, w] = max F[h : h + 2^i, w : w + 2^j]`` (levels up to the
    tallest / widest bin) answers a bin ``[h0, h1) x [w0, w1)`` with four look-ups: the
    windows of size ``2^i x 2^j`` (``2^i <= h1 - h0 < 2^(i+1)``, same for ``j``) anchored at
    its four corners cover it exactly (max is idempotent, overlaps don't matter). When the
    table would exceed `MAX_TABLE_ELEMENTS`, the row levels are capped and a loop takes each
    bin in bands of rows. Each look-up gathers whole channel rows. Empty bins return garbage.
    """
    h_lo, h_hi, w_lo, w_hi = bins
    shape = tf.shape(table)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    h_ext, w_ext = h_hi - h_lo, w_hi - w_lo

    def num_levels(extent):
        return _floor_log2(tf.maximum(tf.reduce_max(tf.concat([tf.reshape(extent, [-1]), [1]], 0)), 1)) + 1

    levels_w = num_levels(w_ext)
    affordable = tf.maximum(MAX_TABLE_ELEMENTS // tf.maximum(tf.cast(tf.size(table), tf.int64), 1), 1)
    levels_h = tf.clip_by_value(tf.minimum(num_levels(h_ext), tf.cast(affordable, tf.int32) // levels_w), 1, 31)

    def shift(t, step, axis):
        # t[.., h + step, ..] along `axis`, zero past the edge: a window that crosses the edge
        # is never looked up (bins lie inside the map), so what it holds does not matter.
        begin = tf.one_hot(axis, tf.rank(t), on_value=step, off_value=0, dtype=tf.int32)
        padding = tf.stack([tf.zeros_like(begin), begin], axis=1)
        shifted = tf.pad(tf.slice(t, begin, tf.shape(t) - begin), padding)
        shifted.set_shape(t.shape)
        return shifted

    # x levels: X_j[w] = max(X_{j-1}[w], X_{j-1}[w + 2^(j-1)])
    xs = tf.TensorArray(table.dtype, size=levels_w, element_shape=table.shape).write(0, table)

    def build_x(j, level, xs):
        level = tf.maximum(level, shift(level, tf.bitwise.left_shift(1, j - 1), 2))
        return j + 1, level, xs.write(j, level)

    _, _, xs = tf.while_loop(lambda j, *_: j < levels_w, build_x, (tf.constant(1), table, xs))
    row0 = xs.stack()  # [Lw, B, H, W, C]

    # y levels on top: T_{i,j}[h] = max(T_{i-1,j}[h], T_{i-1,j}[h + 2^(i-1)])
    ys = tf.TensorArray(table.dtype, size=levels_h, element_shape=row0.shape).write(0, row0)

    def build_y(i, level, ys):
        level = tf.maximum(level, shift(level, tf.bitwise.left_shift(1, i - 1), 2))  # axis 2 = H
        return i + 1, level, ys.write(i, level)

    _, _, ys = tf.while_loop(lambda i, *_: i < levels_h, build_y, (tf.constant(1), row0, ys))
    flat = tf.reshape(ys.stack(), [-1, channels])  # rows indexed by (i, j, b, h, w)

    level_w = _floor_log2(tf.maximum(w_ext, 1))  # [R, PW]
    col_a = tf.clip_by_value(w_lo, 0, width - 1)
    col_b = tf.clip_by_value(w_hi - tf.bitwise.left_shift(1, level_w), 0, width - 1)
    band = tf.bitwise.left_shift(1, levels_h) - 1  # rows one band of look-ups covers
    image = indices[:, None, None]

    def band_max(k):
        top = h_lo + k * band  # [R, PH]
        rows = tf.clip_by_value(h_hi - top, 1, band)  # bins with no rows left repeat their last band
        level_h = _floor_log2(rows)
        row_a = tf.clip_by_value(tf.minimum(top, h_hi - 1), 0, height - 1)
        row_b = tf.clip_by_value(row_a + rows - tf.bitwise.left_shift(1, level_h), 0, height - 1)
        plane = ((level_h[:, :, None] * levels_w + level_w[:, None, :]) * batch + image) * height  # [R, PH, PW]
        found = None
        for row in (row_a, row_b):
            base = (plane + row[:, :, None]) * width
            for col in (col_a, col_b):
                value = tf.gather(flat, base + col[:, None, :])
                found = value if found is None else tf.maximum(found, value)
        return found

    num_bands = (tf.reduce_max(tf.concat([tf.reshape(h_ext, [-1]), [1]], 0)) + band - 1) // band
    _, out = tf.while_loop(lambda k, _: k < num_bands, lambda k, acc: (k + 1, tf.maximum(acc, band_max(k))),
                           (1, band_max(0)))
    return out


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
