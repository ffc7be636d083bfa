"""Skeleton generator, HRNet heatmap targets/decoding/flip test/loss, PCK and OKS AP: hand-checked."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data import skeleton
from kerasnets.metrics import pose as pose_metrics
from kerasnets.ops import heatmaps as hm

# ------------------------------------------------------------------ generator


def test_generator_is_deterministic_and_annotated():
    a = skeleton.generate(6, height=64, width=48, seed=3, truncate=0.5)
    b = skeleton.generate(6, height=64, width=48, seed=3, truncate=0.5)
    c = skeleton.generate(6, height=64, width=48, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.keypoints, c.keypoints)
    assert a.images.shape == (6, 64, 48, 3) and a.images.dtype == np.float32
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    kp = a.keypoints
    inside = (kp[..., 0] >= 0) & (kp[..., 0] <= 47) & (kp[..., 1] >= 0) & (kp[..., 1] <= 63)
    assert np.all(inside[kp[..., 2] == 2])
    assert set(np.unique(kp[..., 2])) <= {0.0, 2.0}
    assert np.all(kp[kp[..., 2] == 0][:, :2] == 0)


def test_generator_layout_frontal_left_on_image_right():
    p = skeleton.generate(50, seed=0)
    kp = p.keypoints
    # Before the global rotation (|angle| mostly < 40 deg) the person's left shoulder/hip is on the right.
    assert np.mean(kp[:, 5, 0] > kp[:, 6, 0]) > 0.9
    assert np.mean(kp[:, 11, 0] > kp[:, 12, 0]) > 0.9
    # Head above the hips.
    assert np.mean(kp[:, 0, 1] < kp[:, 11, 1]) > 0.9
    # Boxes contain the labelled joints.
    x, y, w, h = p.boxes.T
    assert np.all(kp[..., 0] >= x[:, None] - 1e-4) and np.all(kp[..., 0] <= (x + w)[:, None] + 1e-4)


def test_flip_pairs_and_coco_dict():
    perm = skeleton.flip_permutation()
    assert [skeleton.KEYPOINT_NAMES[i].replace("left", "X").replace("right", "X") for i in perm] == [
        n.replace("left", "X").replace("right", "X") for n in skeleton.KEYPOINT_NAMES
    ]
    assert np.array_equal(perm[perm], np.arange(17))
    p = skeleton.generate(3, seed=1, truncate=1.0)
    coco = skeleton.to_coco_keypoints(p.keypoints, p.boxes, (96, 64))
    ann = coco["annotations"][1]
    assert ann["num_keypoints"] == int(np.sum(p.keypoints[1, :, 2] > 0))
    assert len(ann["keypoints"]) == 51 and coco["categories"][0]["skeleton"][0] == [16, 14]
    with pytest.raises(ValueError, match="keypoints must be"):
        skeleton.to_coco_keypoints(p.keypoints[:, :5], p.boxes, (96, 64))


# ------------------------------------------------------------------ targets


def test_target_matches_reference_transcription_and_hand_values():
    kp = np.array([[8.0, 12.0, 2], [9.9, 3.1, 1], [0.0, 0.0, 0], [-40.0, 5.0, 2], [63.0, 95.0, 2], [-7.0, 2.0, 2]])
    target, weight = hm.gaussian_heatmaps(kp, (96, 64), (24, 16), sigma=2.0)
    ref_t, ref_w = hm.gaussian_heatmaps_np(kp, (96, 64), (24, 16), sigma=2.0)
    np.testing.assert_allclose(target.numpy(), ref_t, atol=1e-6)
    np.testing.assert_array_equal(weight.numpy(), ref_w)
    np.testing.assert_array_equal(ref_w, [1, 1, 0, 0, 1, 1])
    # joint 0 at (8, 12) px -> heatmap (2, 3): peak 1 there, exp(-1/8) one pixel away.
    assert ref_t[3, 2, 0] == pytest.approx(1.0)
    assert ref_t[3, 3, 0] == pytest.approx(np.exp(-1 / 8))
    assert ref_t[3, 2 + 7, 0] == 0.0  # outside the 13x13 window
    # joint 1 at (9.9, 3.1) -> mu = (int(2.975), int(1.275)) = (2, 1)
    assert np.unravel_index(np.argmax(ref_t[..., 1]), (24, 16)) == (1, 2)
    assert ref_t[..., 2].max() == 0 and ref_t[..., 3].max() == 0


def test_encode_decode_round_trip_within_a_quarter_pixel():
    rng = np.random.default_rng(0)
    xy = rng.uniform(2.2 * 4, 13.7 * 4, size=(8, 17, 2))
    xy[..., 1] = rng.uniform(2.2 * 4, 21.7 * 4, size=(8, 17))
    kp = np.concatenate([xy, np.full((8, 17, 1), 2.0)], -1)
    target, _ = hm.gaussian_heatmaps(kp, (96, 64), (24, 16), subpixel=True)
    coords, maxvals = hm.decode_heatmaps(target)
    err = np.abs(coords.numpy() - xy / 4.0)
    assert err.max() <= 0.25 + 1e-5
    # HRNet's integer-centred targets decode exactly to the rounded location.
    target, _ = hm.gaussian_heatmaps(kp, (96, 64), (24, 16))
    coords, maxvals = hm.decode_heatmaps(target)
    np.testing.assert_allclose(coords.numpy(), np.floor(xy / 4.0 + 0.5), atol=1e-6)
    np.testing.assert_allclose(maxvals.numpy(), 1.0, atol=1e-6)


def test_decode_matches_loop_transcription_and_rules():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(3, 10, 8, 5)).astype(np.float32)
    maps[0, :, :, 0] = -1.0  # max <= 0 -> coords 0
    maps[0, 0, 0, 0] = -0.5
    maps[1, :, :, 1] = 0.0
    maps[1, 5, 1, 1] = 1.0  # px == 1: no quarter offset (strict 1 < px)
    maps[1, 5, 2, 1] = 0.5
    coords, maxvals = hm.decode_heatmaps(maps)
    ref_c, ref_m = hm.decode_heatmaps_np(maps)
    np.testing.assert_allclose(coords.numpy(), ref_c, atol=1e-6)
    np.testing.assert_allclose(maxvals.numpy(), ref_m, atol=1e-6)
    np.testing.assert_array_equal(coords.numpy()[0, 0], [0.0, 0.0])
    np.testing.assert_array_equal(coords.numpy()[1, 1], [1.0, 5.0])


def test_flip_back_and_flip_test():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 6, 5, 17)), tf.float32)
    twice = hm.flip_back(hm.flip_back(x, skeleton.FLIP_PAIRS), skeleton.FLIP_PAIRS)
    np.testing.assert_array_equal(twice.numpy(), x.numpy())
    once = hm.flip_back(x, skeleton.FLIP_PAIRS).numpy()
    np.testing.assert_array_equal(once[:, :, 0, 5], x.numpy()[:, :, 4, 6])
    shifted = hm.flip_back(x, skeleton.FLIP_PAIRS, shift=True).numpy()
    np.testing.assert_array_equal(shifted[:, :, 1:], once[:, :, :-1])
    np.testing.assert_array_equal(shifted[:, :, 0], once[:, :, 0])
    perm = skeleton.flip_permutation()

    def equivariant(images):  # f(mirror(x)) == flip_back(f(x)): symmetric in the left/right pairs
        return images + tf.gather(images, perm, axis=3)

    plain = equivariant(x)
    np.testing.assert_allclose(hm.flip_test(equivariant, x, skeleton.FLIP_PAIRS, shift=False), plain, atol=1e-6)
    # Identity "model": flip test = 0.5 * (x + swap(x)) exactly (the two mirrorings cancel).
    out = hm.flip_test(lambda t: t, x, skeleton.FLIP_PAIRS, shift=False)
    np.testing.assert_allclose(out, 0.5 * (x.numpy() + x.numpy()[..., perm]), atol=1e-6)


# ------------------------------------------------------------------ metrics


def test_pck_hand_cases():
    kp = np.zeros((2, 17, 3))
    kp[..., 2] = 2
    kp[1, 3, 2] = 0  # unlabelled: not counted
    boxes = np.array([[0, 0, 10, 50], [0, 0, 20, 10]], float)  # refs 50 and 20
    assert pose_metrics.pck(kp[..., :2], kp, boxes)[0] == 1.0
    pred = kp[..., :2].copy()
    pred[0, :, 0] += 9.9  # 9.9 <= 0.2 * 50: correct
    pred[1, :, 0] += 4.5  # 4.5 > 0.2 * 20: wrong
    total, per_joint = pose_metrics.pck(pred, kp, boxes, alpha=0.2)
    assert total == pytest.approx(17 / 33)
    assert per_joint[3] == 1.0 and per_joint[0] == 0.5
    kp[0, 5, :2], kp[0, 12, :2] = (0, 0), (30, 40)  # torso 50
    pred = kp[..., :2].copy()
    pred[0, :, 1] += 10.0
    assert pose_metrics.pck(pred[:1], kp[:1], reference="torso")[0] == 1.0
    assert pose_metrics.pck(pred[:1], kp[:1], reference="torso", alpha=0.19)[0] == 0.0
    with pytest.raises(ValueError, match="reference"):
        pose_metrics.pck(pred, kp, boxes, reference="head")


def test_oks_and_ap_hand_cases():
    p = skeleton.generate(4, seed=5)
    area = p.boxes[:, 2] * p.boxes[:, 3]
    perfect = pose_metrics.oks_ap(p.keypoints, np.ones(4), p.keypoints, p.boxes, (96, 64))
    assert perfect["AP"] == pytest.approx(1.0)
    assert pose_metrics.oks(p.keypoints, p.keypoints, area) == pytest.approx(np.ones(4))
    # Move every joint by d with exp(-d^2 / (2 s (2 sigma_k)^2)) chosen to give OKS 0.73 exactly for
    # each joint: d_k = sqrt(-2 s (2 sigma_k)^2 log 0.73). Then AP = #{t in .50:.05:.95, t <= .73} / 10.
    d = np.sqrt(-2 * area[:, None] * (2 * skeleton.OKS_SIGMAS[None]) ** 2 * np.log(0.73))
    pred = p.keypoints[..., :2] + np.stack([d, np.zeros_like(d)], -1)
    np.testing.assert_allclose(pose_metrics.oks(pred, p.keypoints, area), 0.73, atol=1e-9)
    res = pose_metrics.oks_ap(pred, np.ones(4), p.keypoints, p.boxes, (96, 64))
    assert res["AP"] == pytest.approx(0.5, abs=1e-6)
    assert res["AP50"] == pytest.approx(1.0) and res["AP75"] == pytest.approx(0.0)
