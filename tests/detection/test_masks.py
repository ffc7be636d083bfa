"""Mask targets (RoIAlign crop to 28x28) against a NumPy torchvision-semantics reference; pasting back."""

import math

import numpy as np
import pytest

from kerasnets.ops import masks as mask_ops


def _np_bilinear(img, y, x):
    h, w = img.shape
    if y < -1 or y > h or x < -1 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * img[y0, x0] + (1 - ly) * lx * img[y0, x1]
            + ly * (1 - lx) * img[y1, x0] + ly * lx * img[y1, x1])


def np_roi_align(img, box, size, s, aligned):
    """Straight transcription of the torchvision kernel's semantics (research notes 1.1)."""
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (v - off for v in box)
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / size, rw / size
    out = np.zeros((size, size))
    for ph in range(size):
        for pw in range(size):
            acc = 0.0
            for iy in range(s):
                for ix in range(s):
                    acc += _np_bilinear(img, y1 + ph * bh + (iy + 0.5) * bh / s, x1 + pw * bw + (ix + 0.5) * bw / s)
            out[ph, pw] = acc / (s * s)
    return out


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_matches_numpy_reference(aligned):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 12, 15)).astype(np.float32)
    boxes = np.array([[1.3, 2.2, 9.7, 10.1], [-1.5, -0.7, 4.0, 3.0], [10.0, 8.0, 16.2, 13.4], [5, 5, 5.4, 5.2]],
                     np.float32)
    idx = np.array([0, 1, 1, 0])
    got = mask_ops.roi_align_single_channel(img, boxes, idx, 5, 2, aligned).numpy()
    for r in range(len(boxes)):
        np.testing.assert_allclose(got[r], np_roi_align(img[idx[r]], boxes[r], 5, 2, aligned), atol=1e-4)


def test_mask_target_of_a_known_box_is_all_ones_and_zero_outside():
    mask = np.zeros((2, 64, 64), np.uint8)
    mask[0, 4:32, 8:20] = 1  # instance 0 covers x 8..20, y 4..32
    mask[1, 40:60, 40:60] = 1
    rois = np.array([[8, 4, 20, 32], [2, 4, 14, 32], [40, 40, 60, 60], [0, 0, 10, 10]], np.float32)
    targets = mask_ops.mask_targets(mask, rois, [0, 0, 1, -1]).numpy()
    assert targets.shape == (4, 28, 28)
    np.testing.assert_array_equal(targets[0], 1.0)
    np.testing.assert_array_equal(targets[2], 1.0)
    np.testing.assert_array_equal(targets[3], 0.0)  # unmatched RoI
    # RoI x 2..14: the mask starts at x = 8, i.e. half-way -> left 14 columns 0, right 14 columns 1.
    np.testing.assert_array_equal(targets[1][:, :14], 0.0)
    np.testing.assert_array_equal(targets[1][:, 14:], 1.0)
    # Batched form gives the same targets per image.
    batched = mask_ops.mask_targets(mask[None], rois[None], np.array([[0, 0, 1, -1]])).numpy()
    np.testing.assert_array_equal(batched[0], targets)


def test_paste_full_mask_fills_exactly_the_box():
    pasted = mask_ops.paste_masks(np.ones((2, 28, 28), np.float32),
                                  np.array([[8, 4, 20, 32], [10.3, 0, 30.2, 7.4]], np.float32), (40, 36)).numpy()
    expected = np.zeros((2, 40, 36), np.uint8)
    expected[0, 4:32, 8:20] = 1
    expected[1, 0:7, 10:30] = 1  # pixel centres (j + 0.5) inside [10.3, 30.2] x [0, 7.4]
    np.testing.assert_array_equal(pasted, expected)


def test_paste_then_crop_round_trip():
    yy, xx = np.mgrid[0:28, 0:28]
    disc = (((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 10**2).astype(np.float32)
    box = np.array([[10, 6, 66, 62]], np.float32)  # 56x56: 2x upsampling
    pasted = mask_ops.paste_masks(disc[None], box, (70, 70)).numpy()
    area = pasted.sum()
    assert abs(area - math.pi * 20**2) / (math.pi * 20**2) < 0.05
    back = mask_ops.mask_targets(pasted, box, [0]).numpy()[0]
    inter, union = (back * disc).sum(), np.maximum(back, disc).sum()
    assert inter / union > 0.95
    probs = mask_ops.paste_masks(disc[None], box, (70, 70), threshold=None).numpy()
    assert probs.dtype == np.float32 and probs.max() <= 1.0 + 1e-6
