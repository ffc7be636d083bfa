"""RoI max pooling (Girshick 2015) with Caffe / ``torchvision.ops.roi_pool`` quantization.

Bins are maxima over a table of stride-1 window maxima (see `roi_pool`); the window-table
helpers below are private to this op. Conventions: see `kerasnets.ops.roi_common`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from kerasnets.ops.roi_common import as_float32, check_spatial_scale, flatten_boxes, normalize_output_size, unflatten


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
    spatial_scale = check_spatial_scale(spatial_scale)
    jit_compile = check_jit_compile(jit_compile)
    features = tf.convert_to_tensor(features)
    flat_boxes, indices, batch = flatten_boxes(features, boxes, box_indices)
    out = _roi_pool(as_float32(features), tf.stop_gradient(flat_boxes), indices, (ph, pw), spatial_scale,
                    training=training is True, jit_compile=jit_compile)  # a symbolic `training` counts as False
    return unflatten(tf.cast(out, features.dtype), batch)


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

