"""RoIAlign (He et al. 2017) with the semantics of ``torchvision.ops.roi_align``.

Conventions (boxes, features, ``spatial_scale``): see `kerasnets.ops.roi_common`. The tests
compare against an independent NumPy transcription of torchvision's rules.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.ops.roi_common import as_float32, check_spatial_scale, flatten_boxes, normalize_output_size, unflatten

IMPLEMENTATIONS = ("auto", "crop_and_resize", "einsum")


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
    spatial_scale = check_spatial_scale(spatial_scale)
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
    flat_boxes, indices, batch = flatten_boxes(features, boxes, box_indices)
    flat_boxes = tf.stop_gradient(flat_boxes)
    fn = _roi_align_crop_and_resize if implementation == "crop_and_resize" else _roi_align_einsum
    out = fn(as_float32(features), flat_boxes, indices, (ph, pw), spatial_scale, sampling_ratio, bool(aligned))
    return unflatten(tf.cast(out, features.dtype), batch)


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

