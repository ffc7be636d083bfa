"""Synthetic paired motion data of retarget2d: pairing, projection, representation, baseline, OpenPose I/O."""

import numpy as np
import pytest

from kerasnets.data import motion_pairs as mp


def test_foot_channels_match_the_reference_layout():
    # The reference's foot_idx: the ankles' x, y in the 28 local channels.
    assert mp.FOOT_CHANNELS == (20, 21, 26, 27)
    assert mp.NUM_CHANNELS == 30 and mp.ROOT == 8


def test_same_motion_on_two_bodies_shares_joint_angles_not_lengths():
    motion = mp.sample_motions(1, 32, seed=3, families=("walk",))[0]
    bodies = mp.sample_bodies(2, seed=5, posture=False)
    assert bodies.shape == (2, mp.BODY_SIZE) and np.all(bodies[:, 8:] == 0)
    j1, j2 = mp.forward_kinematics(motion, bodies[0]), mp.forward_kinematics(motion, bodies[1])
    # Same joint angles => same bone directions at every frame ...
    np.testing.assert_allclose(mp.bone_directions(j1), mp.bone_directions(j2), atol=1e-9)
    # ... but each body's own bone lengths.
    for j, body in ((j1, bodies[0]), (j2, bodies[1])):
        for child, parent in mp.LIMBS:
            length = np.linalg.norm(j[:, child] - j[:, parent], axis=-1)
            np.testing.assert_allclose(length, body[mp.LIMB_GROUP[child]], rtol=1e-9)
    assert np.abs(j1 - j2).max() > 0.05
    # Root displacement in leg lengths: the longer-legged body travels further by the leg ratio.
    d1 = j1[-1, mp.ROOT, :2] - j1[0, mp.ROOT, :2]
    d2 = j2[-1, mp.ROOT, :2] - j2[0, mp.ROOT, :2]
    np.testing.assert_allclose(d1 / mp.leg_length(bodies[0]), d2 / mp.leg_length(bodies[1]), atol=1e-9)


def test_posture_adds_to_the_motions_angles():
    motion = mp.sample_motions(1, 16, seed=3, families=("wave",))[0]
    lengths = mp.BASE_BODY
    posture = np.array([0.3, 0.1, 0.05, 0.2])
    moved = mp.forward_kinematics(motion, np.concatenate([lengths, posture]))
    # The same as the motion with the posture added to its angles by hand.
    angles = motion.angles.copy()
    for name, value in (("r_shoulder_abd", 0.3), ("l_shoulder_abd", 0.3), ("r_hip_abd", 0.1), ("l_hip_abd", 0.1),
                        ("spine_flex", 0.05), ("neck_flex", 0.2)):  # fmt: skip
        angles[:, mp.ANGLE_NAMES.index(name)] += value
    by_hand = mp.forward_kinematics(motion._replace(angles=angles), lengths)
    np.testing.assert_allclose(moved, by_hand, atol=1e-12)
    assert np.abs(moved - mp.forward_kinematics(motion, lengths)).max() > 0.02
    bodies = mp.sample_bodies(50, seed=1)
    for k, (lo, hi) in enumerate(mp.POSTURE_RANGES):
        assert lo <= bodies[:, 8 + k].min() and bodies[:, 8 + k].max() <= hi


def test_different_motions_have_different_angles():
    a, b = mp.sample_motions(2, 32, seed=0, families=("walk", "squat"))
    body = mp.BASE_BODY
    assert np.abs(mp.bone_directions(mp.forward_kinematics(a, body)) - mp.bone_directions(mp.forward_kinematics(b, body))).max() > 0.3


def test_feet_touch_the_ground_without_lift():
    motion = mp.sample_motions(1, 40, seed=1, families=("squat",))[0]
    j = mp.forward_kinematics(motion, mp.BASE_BODY)
    np.testing.assert_allclose(np.minimum(j[:, 11, 2], j[:, 14, 2]), 0.0, atol=1e-9)


def test_projection_is_the_papers_orthographic_view_by_hand():
    p = np.array([[[0.5, 2.0, 1.0]]])  # [T=1, J=1, 3]
    np.testing.assert_allclose(mp.project(p, 0.0), [[[64.0, -128.0]]])  # x * 128, -z * 128
    # 90 degrees about z: x' = cos*x - sin*y = -2
    np.testing.assert_allclose(mp.project(p, 90.0), [[[-256.0, -128.0]]], atol=1e-9)


def test_localize_by_hand_and_globalize_inverts_it():
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(5, mp.NUM_JOINTS, 2))
    rep = mp.localize(clip)
    assert rep.shape == (5, 30)
    # Channel 2k, 2k+1 = local joint k (root dropped): joint 9 is local row 8.
    np.testing.assert_allclose(rep[:, 16:18], clip[:, 9] - clip[:, 8])
    np.testing.assert_allclose(rep[:, 0:2], clip[:, 0] - clip[:, 8])
    # Root velocity: 0 at t=0, then differences.
    np.testing.assert_allclose(rep[0, 28:], 0.0)
    np.testing.assert_allclose(rep[1:, 28:], clip[1:, 8] - clip[:-1, 8])
    np.testing.assert_allclose(mp.globalize(rep, clip[0, 8]), clip, atol=1e-12)
    # TF twins agree.
    import tensorflow as tf

    np.testing.assert_allclose(mp.localize(tf.constant(clip[None])).numpy()[0], rep, atol=1e-12)
    np.testing.assert_allclose(mp.globalize(tf.constant(rep[None]), tf.constant(clip[None, 0, 8])).numpy()[0], clip, atol=1e-12)
    with pytest.raises(ValueError, match="joints must be"):
        mp.localize(np.zeros((5, 14, 2)))


def test_normalization_stats_by_hand():
    x = np.zeros((2, 3, 30))
    x[0, :, 0] = 1.0
    x[1, :, 0] = 3.0
    mean, std = mp.normalization_stats(x)
    assert mean[0] == 2.0 and std[0] == 1.0
    assert std[5] == pytest.approx(1e-9)  # constant channel: the reference's zero-std guard


def test_limb_scale_baseline_is_exact_for_a_uniformly_scaled_body():
    motion = mp.sample_motions(1, 24, seed=2, families=("run",))[0]
    small, big = mp.BASE_BODY, mp.BASE_BODY * 1.3
    src = mp.project(mp.forward_kinematics(motion, small), 30.0)
    tgt = mp.project(mp.forward_kinematics(motion, big), 30.0)
    np.testing.assert_allclose(tgt, 1.3 * src, rtol=1e-9, atol=1e-9)  # everything scales about the origin
    np.testing.assert_allclose(mp.limb_lengths_2d(tgt), 1.3 * mp.limb_lengths_2d(src), rtol=1e-9)
    out = mp.limb_scale_baseline(src, tgt)
    # Exact up to the start position, which the baseline keeps at the source's.
    offset = out - tgt
    np.testing.assert_allclose(offset, np.broadcast_to(src[0, mp.ROOT] - tgt[0, mp.ROOT], offset.shape), atol=1e-9)


def test_bank_clips_shape_and_views():
    bank = mp.make_bank(3, 2, 16, seed=0)
    assert bank.joints3d.shape == (3, 2, 16, 15, 3)
    clips = mp.bank_clips(bank, views=(0.0, 90.0))
    assert clips.shape == (3, 2, 2, 16, 15, 2)
    np.testing.assert_allclose(clips[:, :, 1], mp.project(bank.joints3d, 90.0), atol=1e-3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="num"):
        mp.sample_bodies(0)
    with pytest.raises(ValueError, match="unknown motion family"):
        mp.sample_motions(1, 8, families=("moonwalk",))
    with pytest.raises(ValueError, match="limb-group"):
        mp.forward_kinematics(mp.sample_motions(1, 8)[0], np.ones(5))


def test_openpose_json_round_trip_fills_gaps_and_recomputes_neck_and_hip(tmp_path):
    motion = mp.sample_motions(1, 6, seed=4)[0]
    clip = mp.project(mp.forward_kinematics(motion, mp.BASE_BODY), 0.0) + 300.0
    mp.write_openpose_json_dir(str(tmp_path), clip)
    np.testing.assert_allclose(mp.load_openpose_json_dir(str(tmp_path)), clip, atol=1e-3)
    # A missed joint (0, 0) takes the previous frame's value.
    import json

    path = sorted(tmp_path.glob("*.json"))[3]
    data = json.loads(path.read_text())
    data["people"][0]["pose_keypoints_2d"][3 * 4 : 3 * 4 + 2] = [0.0, 0.0]  # right wrist
    path.write_text(json.dumps(data))
    loaded = mp.load_openpose_json_dir(str(tmp_path))
    np.testing.assert_allclose(loaded[3, 4], clip[2, 4], atol=1e-3)
    with pytest.raises(ValueError, match="no OpenPose"):
        mp.load_openpose_json_dir(str(tmp_path / "empty"))


def test_draw_pose_and_clip_box():
    clip = mp.project(mp.forward_kinematics(mp.sample_motions(1, 8)[0], mp.BASE_BODY), 0.0)
    img = mp.draw_pose(clip[0], size=(40, 30), box=mp.clip_box(clip, root_relative=False))
    assert img.shape == (40, 30, 3) and img.dtype == np.uint8
    assert (img < 250).any()  # something was drawn
