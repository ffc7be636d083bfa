"""Mask targets (RoIAlign crop to 28x28) for known boxes; pasting masks back into the image."""

import math

import numpy as np

from kerasnets.ops import masks as mask_ops


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
    # Adaptive sampling (XLA-friendly einsum RoIAlign) agrees on these axis-aligned cases.
    adaptive = mask_ops.mask_targets(mask, rois, [0, 0, 1, -1], sampling_ratio=0).numpy()
    np.testing.assert_array_equal(adaptive, targets)


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


def test_mask_targets_without_ground_truth_are_zero():
    rois = np.array([[0, 0, 5, 5], [2, 2, 8, 9]], np.float32)
    out = mask_ops.mask_targets(np.zeros((0, 10, 10), np.uint8), rois, [-1, -1]).numpy()
    assert out.shape == (2, 28, 28) and not out.any()
