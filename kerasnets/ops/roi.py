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


def roi_pool(features, boxes, box_indices=None, output_size=7, spatial_scale: float = 1.0):
    """RoI max pooling (Girshick 2015) with Caffe / ``torchvision.ops.roi_pool`` quantization.

    With ``round`` = half away from zero::

        x_s = round(x1 * scale), x_e = round(x2 * scale)          (same for y)
        roi_w = max(x_e - x_s + 1, 1),  bin_w = roi_w / PW         (float)
        w_start = clip(floor(pw * bin_w) + x_s, 0, W)
        w_end   = clip(ceil((pw + 1) * bin_w) + x_s, 0, W)
        out[ph, pw] = max over [h_start, h_end) x [w_start, w_end) of F, or 0 if empty

    The gradient goes to the arg-max of each bin (first in row-major order on ties).

    Implementation: a 1-D sparse table along x (``T_j[w] = max F[w : w + 2^j]``, built up
    to the largest bin width) answers each row's ``[w_start, w_end)`` maximum with two
    look-ups; a loop over the rows of the tallest bin takes the maximum over rows. Memory
    ``~(1 + log2(max bin width)) x`` the feature map; time ``O(R PH PW C max_bin_h)``.
    The backward pass recomputes the arg-max positions (same tables, plus int32 position
    tables) and scatters the upstream gradient there (`unsorted_segment_sum`).
    Not XLA-compatible (dynamic-size `TensorArray`).

    Args:
        features: ``[B, H, W, C]``.
        boxes: ``[R, 4]`` (with ``box_indices``) or ``[B, N, 4]``; image coordinates, ``x1, y1, x2, y2``.
        box_indices: ``[R]`` int tensor or ``None`` for batched boxes.
        output_size: ``PH`` or ``(PH, PW)``.
        spatial_scale: image -> feature scale (``1 / stride``).

    Returns:
        ``[R, PH, PW, C]`` (or ``[B, N, PH, PW, C]``) in the dtype of ``features``.
    """
    ph, pw = normalize_output_size(output_size)
    spatial_scale = _check_scale(spatial_scale)
    features = tf.convert_to_tensor(features)
    flat_boxes, indices, batch = _flatten_boxes(features, boxes, box_indices)
    out = _roi_pool(_float32(features), tf.stop_gradient(flat_boxes), indices, (ph, pw), spatial_scale)
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


def _roi_pool(features, boxes, indices, output_size, spatial_scale):
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
        out, _ = _max_over_bins(fmap, indices, bins, with_argmax=False)

        def grad(upstream):
            # Recompute which input element won each (RoI, bin, channel) and send the
            # gradient there (Fast R-CNN's backward; torchvision keeps an argmax buffer).
            _, argmax = _max_over_bins(fmap, indices, bins, with_argmax=True)
            fshape = tf.shape(fmap, out_type=tf.int64)
            channels = fshape[3]
            winner = tf.cast(argmax, tf.int64) * channels + tf.range(channels)  # into [B*H*W*C]
            valid = argmax >= 0  # empty bins have no input
            scattered = tf.math.unsorted_segment_sum(
                tf.where(valid, upstream, tf.zeros_like(upstream)), tf.where(valid, winner, 0),
                tf.reduce_prod(fshape))
            return tf.reshape(scattered, tf.shape(fmap))

        return out, grad

    out = pool(features)
    out.set_shape([boxes.shape[0], ph, pw, features.shape[3]])
    return out


def _select(condition, x, y):
    """``tf.where(condition, x, y)`` for int tensors as arithmetic (SelectV2 is several times slower on CPU)."""
    return y + tf.cast(condition, y.dtype) * (x - y)


def _max_over_bins(features, indices, bins, with_argmax: bool):
    """Max (and optionally its flat ``(b*H + h)*W + w`` position, -1 if empty) of every bin.

    A sparse table along x (``T_j[w] = max F[w : w + 2^j]``, levels up to the widest bin)
    gives the maximum of row ``h`` over ``[w_lo, w_hi)`` as ``max(T_j[w_lo], T_j[w_hi - 2^j])``
    with ``2^j <= w_hi - w_lo < 2^(j+1)``; a loop over the rows of the tallest bin takes the
    maximum over rows. Ties keep the left / upper element (strict ``>``), so the position is
    the first arg-max in row-major order, as in torchvision's scan.
    """
    h_lo, h_hi, w_lo, w_hi = bins
    shape = tf.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    h_ext, w_ext = h_hi - h_lo, w_hi - w_lo
    empty = (h_ext[:, :, None] <= 0) | (w_ext[:, None, :] <= 0)  # [R, PH, PW]

    level = _floor_log2(tf.maximum(w_ext, 1))  # [R, PW]
    num_levels = tf.reduce_max(tf.concat([tf.reshape(level, [-1]), [0]], 0)) + 1
    if with_argmax:
        position = tf.reshape(tf.range(batch * height * width), [batch, height, width, 1])
        position = tf.broadcast_to(position, shape)
    else:
        position = tf.zeros([0], tf.int32)  # unused placeholder

    def shift_left(t, shift):  # t[:, :, w + shift], the last column repeated past the edge
        return tf.concat([t[:, :, shift:, :], tf.repeat(t[:, :, -1:, :], shift, axis=2)], axis=2)

    values = tf.TensorArray(features.dtype, size=num_levels, element_shape=features.shape).write(0, features)
    where = tf.TensorArray(tf.int32, size=num_levels, infer_shape=False).write(0, position)

    def build(j, table, table_pos, values, where):
        shift = tf.bitwise.left_shift(1, j - 1)
        right = shift_left(table, shift)
        if with_argmax:
            table_pos = _select(right > table, shift_left(table_pos, shift), table_pos)  # ties keep the left
        table = tf.maximum(table, right)  # T_j[w] = max(T_{j-1}[w], T_{j-1}[w + 2^(j-1)])
        return j + 1, table, table_pos, values.write(j, table), where.write(j, table_pos)

    _, _, _, values, where = tf.while_loop(
        lambda j, *_: j < num_levels, build, (tf.constant(1), features, position, values, where))
    flat_values = tf.reshape(values.stack(), [-1, channels])  # rows indexed by (level, b, h, w)
    flat_where = tf.reshape(where.stack(), [-1, channels]) if with_argmax else None

    width_j = tf.bitwise.left_shift(1, level)
    col_a = tf.clip_by_value(w_lo, 0, width - 1)
    col_b = tf.clip_by_value(w_hi - width_j, 0, width - 1)
    plane = (level * batch + indices[:, None]) * height  # [R, PW]: first row of (level, image)
    h_count = tf.maximum(h_ext, 1)

    def row_max(i):
        row = tf.clip_by_value(h_lo + tf.minimum(i, h_count - 1), 0, height - 1)  # last row repeats
        base = (plane[:, None, :] + row[:, :, None]) * width  # [R, PH, PW]
        ia, ib = base + col_a[:, None, :], base + col_b[:, None, :]
        a, b = tf.gather(flat_values, ia), tf.gather(flat_values, ib)
        if not with_argmax:  # (tf.where is several times slower than tf.maximum on CPU)
            return tf.maximum(a, b), a
        return tf.maximum(a, b), _select(b > a, tf.gather(flat_where, ib), tf.gather(flat_where, ia))

    def step(i, acc, acc_pos):
        value, pos = row_max(i)
        if not with_argmax:
            return i + 1, tf.maximum(acc, value), acc_pos
        # strict: the earlier row wins ties
        return i + 1, tf.maximum(acc, value), _select(value > acc, pos, acc_pos)

    rows = tf.reduce_max(tf.concat([tf.reshape(h_ext, [-1]), [1]], 0))
    acc, acc_pos = row_max(0)
    _, acc, acc_pos = tf.while_loop(lambda i, *_: i < rows, step, (1, acc, acc_pos))
    out = tf.where(empty[..., None], tf.zeros_like(acc), acc)
    argmax = tf.where(empty[..., None], -1, acc_pos) if with_argmax else None
    return out, argmax


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
