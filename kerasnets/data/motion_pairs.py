"""Paired 2-D motion clips for motion retargeting: one motion, many bodies, many views.

The embedded (no-download) data of the `retarget2d` recipe (Aberman, Wu et
al., SIGGRAPH 2019). The paper trains on Mixamo, where every animation is
rendered on every character, so the clip "motion i on character b seen from
view w" exists for every (i, b, w) and cross-reconstruction has an exact
ground truth. This module builds the same kind of data synthetically:

* **Skeleton** -- the paper's 15 joints (the OpenPose BODY_25 subset, root =
  mid-hip, joint 8). A character is a set of 8 limb-group lengths in metres
  (head/neck, shoulder half-width, upper arm, forearm, spine, pelvis
  half-width, thigh, shin; left and right share a length) and a posture
  (arm rest abduction, stance width, spine and neck lean, added to every
  motion's angles). Lengths are the base body times a global scale
  `U(0.75, 1.25)` times a per-group scale `U(0.7, 1.3)` (`sample_bodies`).
* **Motion** -- joint-angle curves over time (`sample_motions`): ten
  parametric families (walk, run, jump, squat, wave, jumping jacks, kick,
  punch, side step, turning walk), each instance with its own frequency,
  amplitude, phase, heading and a smooth monotone time warp. A motion
  stores angles and the root's displacement in *leg lengths*, so a longer
  legged character strides further, as on Mixamo.
* **Forward kinematics** (`forward_kinematics`) -- 3-D joints
  `[T, 15, 3]`, z up; the character faces -y (toward the camera), its
  right on -x; the root height puts the lower ankle on the ground (z = 0)
  plus the motion's jump lift. The same motion on two bodies of the same
  posture therefore has identical bone *directions* at every frame
  (`bone_directions`) and different bone lengths.
* **View and projection** (`project`) -- the paper's: a rotation by the
  view angle about the vertical axis, then an orthographic projection on
  (x, z) with the vertical flipped (image y points down), times `unit` =
  128 pixels per metre. Views: 7 angles from -90 to +90 degrees in 30
  degree steps (`VIEW_ANGLES`).
* **Representation** (`localize`, `globalize`) -- the paper's
  `trans_motion2d`: subtract the root per frame, drop the root row, append
  the root velocity (`root[t] - root[t-1]`, 0 at t = 0) as a 15th "joint":
  `[T, 30]` channels, joint-major (`2 * joint + coord`). The static
  encoders see only the 28 local channels. Normalisation (`normalize`):
  `(x - mean) / std` per channel over the training clips (every motion,
  body, view and frame); a std of 0 becomes 1e-9 as in the reference code.

`limb_scale_baseline` is the naive retargeting the recipe compares with:
the source clip with every 2-D limb rescaled to the target clip's limb
lengths (the maximum length over frames, left/right pooled) and the root
trajectory scaled by the leg-length ratio; it cannot change the view.

Real data: the paper's inference input is a folder of OpenPose BODY_25
JSON files, one per frame (`load_openpose_json_dir`). Mixamo (the paper's
training set) is only distributed through Adobe's site and the authors'
Google Drive, so it is not a loader here.

Modules: the skeleton and body layout are `kerasnets.data.motion_skeleton`, forward
kinematics and projection `kerasnets.data.motion_kinematics`, OpenPose I/O
`kerasnets.data.openpose`, stick-figure drawing `kerasnets.utils.motion_drawing`; this
module (the generator: bodies, motions, the bank, the representation and the baseline)
re-exports their public names, so `motion_pairs.forward_kinematics` etc. keep working.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Re-exported: the recipe and its tests reach the whole data set through this one module.
from kerasnets.data.motion_kinematics import (  # noqa: F401
    FK_ORDER,
    UNIT,
    VIEW_ANGLES,
    bone_directions,
    forward_kinematics,
    project,
)
from kerasnets.data.motion_skeleton import (  # noqa: F401
    ANGLE_NAMES,
    BASE_BODY,
    BODY_SIZE,
    JOINT_NAMES,
    LIMB_GROUP,
    LIMB_GROUP_NAMES,
    LIMBS,
    MOTION_FAMILIES,
    NUM_JOINTS,
    PARENTS,
    POSTURE_NAMES,
    POSTURE_RANGES,
    POSTURE_TARGETS,
    REST_DIRECTIONS,
    ROOT,
    Motion,
    leg_length,
)
from kerasnets.data.openpose import load_openpose_json_dir, write_openpose_json_dir  # noqa: F401
from kerasnets.utils.motion_drawing import clip_box, draw_pose  # noqa: F401

NUM_CHANNELS = 2 * NUM_JOINTS
#: Local joints after the root is dropped (index into the 14 rows).
LOCAL_JOINTS = tuple(j for j in range(NUM_JOINTS) if j != ROOT)
#: The ankles' (x, y) channels in the 30-channel layout (the reference's foot_idx [20, 21, 26, 27]).
FOOT_CHANNELS = tuple(
    2 * LOCAL_JOINTS.index(j) + c for j in (JOINT_NAMES.index("right_ankle"), JOINT_NAMES.index("left_ankle")) for c in (0, 1)
)


# ------------------------------------------------------------------------ bodies


def sample_bodies(num: int, seed: int = 0, global_range=(0.75, 1.25), local_range=(0.7, 1.3), posture=True) -> np.ndarray:
    """`[num, 12]` characters: 8 limb-group lengths in metres (`LIMB_GROUP_NAMES`), then 4 posture angles.

    Lengths: `BASE_BODY * U(global_range) * U(local_range)^8` -- height and
    proportions both vary (the reference's limb-scale augmentation uses the
    same two factors). Posture (`POSTURE_NAMES`, radians, uniform in
    `POSTURE_RANGES`): arm rest abduction, stance width, spine and neck lean,
    added to every motion's angles -- Mixamo characters differ in rest pose
    too, which 2-D limb scaling cannot transfer. `posture=False` zeroes them.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    rng = np.random.default_rng([seed, 101])
    g = rng.uniform(*global_range, size=(num, 1))
    local = rng.uniform(*local_range, size=(num, len(BASE_BODY)))
    pose = np.stack([rng.uniform(lo, hi, size=num) for lo, hi in POSTURE_RANGES], -1)
    if not posture:
        pose[:] = 0.0
    return np.concatenate([BASE_BODY[None] * g * local, pose], -1)


# ----------------------------------------------------------------------- motions


def _time_warp(rng, length):
    """Monotone warp tau(t) = t + b T / (2 pi k) sin(2 pi k t / T), |b| <= 0.5 (derivative >= 0.5)."""
    t = np.arange(length, dtype=np.float64)
    k = rng.integers(1, 3)
    b = rng.uniform(-0.5, 0.5)
    return t + b * length / (2 * np.pi * k) * np.sin(2 * np.pi * k * t / length)


def _family_curves(family: str, phase, a, rng):
    """Angle curves (dict), per-frame forward/rightward speed (leg lengths per radian of phase) and lift."""
    n = len(phase)
    ang = {name: np.zeros(n) for name in ANGLE_NAMES}
    s, c = np.sin(phase), np.cos(phase)
    fwd = side = 0.0
    lift = np.zeros(n)
    ang["r_elbow"][:] = ang["l_elbow"][:] = 0.15
    if family in ("walk", "turn_walk"):
        ang["r_hip_flex"] = 0.45 * a * s
        ang["l_hip_flex"] = -0.45 * a * s
        ang["r_knee"] = 0.35 * a * (1 + np.sin(phase + 1.2)) + 0.05
        ang["l_knee"] = 0.35 * a * (1 - np.sin(phase + 1.2)) + 0.05
        ang["r_shoulder_flex"] = -0.35 * a * s
        ang["l_shoulder_flex"] = 0.35 * a * s
        ang["r_elbow"] = 0.3 + 0.15 * a * (1 - s)
        ang["l_elbow"] = 0.3 + 0.15 * a * (1 + s)
        ang["spine_flex"][:] = 0.05
        ang["pelvis_roll"] = 0.08 * a * s
        fwd = 0.25 * a
    elif family == "run":
        ang["r_hip_flex"] = 0.7 * a * s + 0.1
        ang["l_hip_flex"] = -0.7 * a * s + 0.1
        ang["r_knee"] = 0.7 * a * (1 + np.sin(phase + 1.4)) + 0.2
        ang["l_knee"] = 0.7 * a * (1 - np.sin(phase + 1.4)) + 0.2
        ang["r_shoulder_flex"] = -0.6 * a * s
        ang["l_shoulder_flex"] = 0.6 * a * s
        ang["r_elbow"][:] = ang["l_elbow"][:] = 1.5
        ang["spine_flex"][:] = 0.2
        ang["pelvis_roll"] = 0.1 * a * s
        fwd = 0.5 * a
        lift = 0.06 * a * np.abs(np.sin(phase))
    elif family == "jump":
        crouch = np.maximum(0.0, -s)
        ang["r_hip_flex"] = ang["l_hip_flex"] = 1.0 * a * crouch
        ang["r_knee"] = ang["l_knee"] = 1.6 * a * crouch
        ang["spine_flex"] = 0.5 * a * crouch
        ang["r_shoulder_flex"] = ang["l_shoulder_flex"] = -0.6 * crouch + 2.2 * a * np.maximum(0.0, s)
        lift = 0.35 * a * np.maximum(0.0, s) ** 2
    elif family == "squat":
        depth = 0.5 * (1 - c)
        ang["r_hip_flex"] = ang["l_hip_flex"] = 1.3 * a * depth
        ang["r_knee"] = ang["l_knee"] = 2.0 * a * depth
        ang["spine_flex"] = 0.45 * a * depth
        ang["r_shoulder_flex"] = ang["l_shoulder_flex"] = 1.4 * depth
    elif family == "wave":
        hand = rng.integers(0, 2)
        p = "r" if hand == 0 else "l"
        ang[f"{p}_shoulder_abd"][:] = 2.5
        ang[f"{p}_shoulder_flex"][:] = 0.3
        ang[f"{p}_elbow"] = 0.6 + 0.5 * a * s
        ang["spine_side"] = 0.06 * a * s
        ang["neck_flex"][:] = -0.1
    elif family == "jumping_jacks":
        open_ = 0.5 * (1 - c)
        ang["r_shoulder_abd"] = ang["l_shoulder_abd"] = 2.7 * np.clip(a, 0.0, 1.1) * open_
        ang["r_hip_abd"] = ang["l_hip_abd"] = 0.35 * a * open_
        lift = 0.08 * a * np.abs(np.sin(phase))
    elif family == "kick":
        leg = "r" if rng.integers(0, 2) == 0 else "l"
        kick = np.maximum(0.0, s) ** 3
        ang[f"{leg}_hip_flex"] = 1.4 * a * kick
        ang[f"{leg}_knee"] = 1.2 * np.maximum(0.0, np.sin(phase - 0.8)) * (1 - kick)
        ang["spine_flex"] = -0.2 * kick
        ang["r_shoulder_abd"][:] = ang["l_shoulder_abd"][:] = 0.5
    elif family == "punch":
        pr = np.maximum(0.0, s) ** 2
        pl = np.maximum(0.0, -s) ** 2
        ang["r_shoulder_flex"] = 0.6 + 0.9 * a * pr
        ang["l_shoulder_flex"] = 0.6 + 0.9 * a * pl
        ang["r_elbow"] = 2.0 * (1 - pr)
        ang["l_elbow"] = 2.0 * (1 - pl)
        ang["spine_side"] = 0.1 * a * s
        ang["pelvis_roll"] = -0.04 * a * s
        ang["r_knee"][:] = ang["l_knee"][:] = 0.25
        ang["r_hip_flex"][:] = ang["l_hip_flex"][:] = 0.15
    elif family == "side_step":
        ang["r_hip_abd"] = 0.35 * a * np.maximum(0.0, s)
        ang["l_hip_abd"] = 0.35 * a * np.maximum(0.0, -s)
        ang["pelvis_roll"] = 0.1 * a * s
        ang["r_shoulder_abd"] = 0.3 + 0.2 * a * np.abs(s)
        ang["l_shoulder_abd"] = 0.3 + 0.2 * a * np.abs(s)
        side = 0.12 * a * rng.choice([-1.0, 1.0])
    else:  # pragma: no cover - guarded by MOTION_FAMILIES
        raise ValueError(f"unknown motion family {family!r}")
    return ang, fwd, side, lift


def sample_motions(num: int, length: int, seed: int = 0, families=None) -> list[Motion]:
    """`num` random motions of `length` frames (families drawn uniformly, or cycled from `families`).

    Each: frequency 1/48 to 1/20 cycles per frame (turning walk: plus a
    constant turn of U(0.5, 1.5) rad over the clip), amplitude scale
    U(0.75, 1.25), random phase, heading U(-15, 15) degrees, a monotone
    time warp, and per-curve amplitude jitter U(0.9, 1.1).
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if length < 2:
        raise ValueError(f"length must be >= 2 frames, got {length}")
    families = tuple(families) if families is not None else None
    for f in families or ():
        if f not in MOTION_FAMILIES:
            raise ValueError(f"unknown motion family {f!r}; choose from {MOTION_FAMILIES}")
    rng = np.random.default_rng([seed, 202])
    motions = []
    for i in range(num):
        family = families[i % len(families)] if families else MOTION_FAMILIES[rng.integers(len(MOTION_FAMILIES))]
        freq = rng.uniform(1 / 48, 1 / 20)
        amp = rng.uniform(0.75, 1.25)
        tau = _time_warp(rng, length)
        phase = 2 * np.pi * freq * tau + rng.uniform(0, 2 * np.pi)
        ang, fwd, side, lift = _family_curves(family, phase, amp, rng)
        angles = np.stack([ang[name] * rng.uniform(0.9, 1.1) for name in ANGLE_NAMES], -1)
        heading = np.deg2rad(rng.uniform(-15, 15)) + np.zeros(length)
        if family == "turn_walk":
            heading = heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5) * np.arange(length) / length
        angles[:, 0] = heading
        # Root displacement: speed (leg lengths per radian of phase) along the current heading.
        dphase = np.diff(phase, prepend=phase[0])
        forward = np.stack([-np.sin(heading), -np.cos(heading)], -1)  # heading frame: faces -y
        rightward = np.stack([-np.cos(heading), np.sin(heading)], -1)  # the character's right = -x at heading 0
        step = (fwd * forward + side * rightward) * dphase[:, None]
        xy = np.cumsum(step, axis=0)
        motions.append(Motion(angles.astype(np.float64), xy, np.asarray(lift, np.float64), MOTION_FAMILIES.index(family)))
    return motions


# ---------------------------------------------------------------- representation


def _is_tensor(x) -> bool:
    return not isinstance(x, (np.ndarray, np.generic, list, tuple, float, int))


def localize(joints2d):
    """`[..., T, 15, 2]` joints -> `[..., T, 30]`: 14 root-relative joints + root velocity (joint-major).

    The paper's `trans_motion2d`; works on NumPy arrays and TF tensors.
    """
    if _is_tensor(joints2d):
        import tensorflow as tf

        root = joints2d[..., ROOT : ROOT + 1, :]
        local = tf.gather(joints2d - root, list(LOCAL_JOINTS), axis=-2)
        centre = joints2d[..., ROOT, :]
        vel = tf.concat([tf.zeros_like(centre[..., :1, :]), centre[..., 1:, :] - centre[..., :-1, :]], axis=-2)
        # expand_dims, not `[..., None, :]`: a new-axis StridedSlice is not a TFLite builtin.
        out = tf.concat([local, tf.expand_dims(vel, -2)], axis=-2)
        return tf.reshape(out, tf.concat([tf.shape(out)[:-2], [NUM_CHANNELS]], 0))
    joints2d = np.asarray(joints2d)
    if joints2d.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"joints must be [..., T, {NUM_JOINTS}, 2], got {joints2d.shape}")
    root = joints2d[..., ROOT : ROOT + 1, :]
    local = (joints2d - root)[..., list(LOCAL_JOINTS), :]
    centre = joints2d[..., ROOT, :]
    vel = np.zeros_like(centre)
    vel[..., 1:, :] = centre[..., 1:, :] - centre[..., :-1, :]
    out = np.concatenate([local, vel[..., None, :]], -2)
    return out.reshape(*out.shape[:-2], NUM_CHANNELS)


def globalize(motion, start=None):
    """Inverse of `localize`: `[..., T, 30]` -> joints `[..., T, 15, 2]`; the root starts at `start` `[..., 2]`.

    `root[t] = start + sum_{s <= t} velocity[s]` (velocity[0] is 0 by construction).
    """
    if _is_tensor(motion):
        import tensorflow as tf

        shape = tf.shape(motion)
        rows = tf.reshape(motion, tf.concat([shape[:-1], [NUM_JOINTS, 2]], 0))
        local, vel = rows[..., :-1, :], rows[..., -1, :]
        centre = tf.cumsum(vel, axis=-2)
        if start is not None:
            centre = centre + tf.expand_dims(start, -2)
        zeros = tf.zeros_like(local[..., :1, :])
        full = tf.concat([local[..., :ROOT, :], zeros, local[..., ROOT:, :]], axis=-2)
        return full + tf.expand_dims(centre, -2)
    motion = np.asarray(motion)
    if motion.shape[-1] != NUM_CHANNELS:
        raise ValueError(f"motion must have {NUM_CHANNELS} channels, got {motion.shape}")
    rows = motion.reshape(*motion.shape[:-1], NUM_JOINTS, 2)
    local, vel = rows[..., :-1, :], rows[..., -1, :]
    centre = np.cumsum(vel, axis=-2)
    if start is not None:
        centre = centre + np.asarray(start)[..., None, :]
    full = np.insert(local, ROOT, 0.0, axis=-2)
    return full + centre[..., None, :]


def normalize(motion, mean, std):
    """`(motion - mean) / std` per channel."""
    return (motion - mean) / std


def denormalize(motion, mean, std):
    return motion * std + mean


def normalization_stats(motions) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std `[30]` over every leading axis; std 0 -> 1e-9 (the reference's guard)."""
    flat = np.asarray(motions, np.float64).reshape(-1, NUM_CHANNELS)
    mean = flat.mean(0)
    std = flat.std(0)
    std[std == 0] = 1e-9
    return mean.astype(np.float32), std.astype(np.float32)


# ----------------------------------------------------------------------- baseline


def limb_lengths_2d(joints2d) -> np.ndarray:
    """`[..., 8]` limb-group lengths of a 2-D clip `[..., T, 15, 2]`: max over frames, left/right pooled."""
    joints2d = np.asarray(joints2d, np.float64)
    per_limb = np.stack([np.linalg.norm(joints2d[..., c, :] - joints2d[..., p, :], axis=-1) for c, p in LIMBS], -1)
    per_limb = per_limb.max(axis=-2)  # over frames
    groups = np.zeros(per_limb.shape[:-1] + (len(BASE_BODY),))
    for k, (c, _) in enumerate(LIMBS):
        g = LIMB_GROUP[c]
        groups[..., g] = np.maximum(groups[..., g], per_limb[..., k])
    return groups


def limb_scale_baseline(source2d, target2d) -> np.ndarray:
    """Naive retargeting: `source2d` `[T, 15, 2]` with limbs rescaled to `target2d`'s lengths.

    Every 2-D limb vector of the source is multiplied by the ratio of the
    target's and the source's limb-group lengths (`limb_lengths_2d`) and the
    skeleton is rebuilt from the root outward; the root's displacement from
    its first position is scaled by the thigh + shin ratio. The view is not
    changed (a 2-D method cannot rotate out of the image plane).
    """
    source2d = np.asarray(source2d, np.float64)
    target2d = np.asarray(target2d, np.float64)
    ls = np.maximum(limb_lengths_2d(source2d), 1e-3)
    lt = limb_lengths_2d(target2d)
    ratio = lt / ls
    out = np.zeros_like(source2d)
    root = source2d[..., ROOT, :]
    leg_ratio = (lt[..., 6] + lt[..., 7]) / (ls[..., 6] + ls[..., 7])
    out[..., ROOT, :] = root[..., :1, :] + (root - root[..., :1, :]) * leg_ratio[..., None, None]
    for j in FK_ORDER[1:]:
        p = PARENTS[j]
        limb = source2d[..., j, :] - source2d[..., p, :]
        out[..., j, :] = out[..., p, :] + limb * ratio[..., LIMB_GROUP[j], None, None]
    return out


# ----------------------------------------------------------------------- the bank


class MotionBank(NamedTuple):
    """3-D clips of every motion on every body: `joints3d [M, B, T, 15, 3]` (metres), `bodies [B, 12]`,
    `families [M]`; views are applied at projection time."""

    joints3d: np.ndarray
    bodies: np.ndarray
    families: np.ndarray


def make_bank(num_motions: int, num_bodies: int, length: int, seed: int = 0) -> MotionBank:
    """Every one of `num_motions` motions performed by every one of `num_bodies` bodies."""
    motions = sample_motions(num_motions, length, seed=seed)
    bodies = sample_bodies(num_bodies, seed=seed)
    joints = np.stack([np.stack([forward_kinematics(m, b) for b in bodies]) for m in motions])
    return MotionBank(joints.astype(np.float32), bodies.astype(np.float32), np.array([m.family for m in motions]))


def bank_clips(bank: MotionBank, views=VIEW_ANGLES, unit: float = UNIT) -> np.ndarray:
    """All projected clips `[M, B, V, T, 15, 2]` of a bank (pixels)."""
    views = np.asarray(views, np.float64)
    out = np.stack([project(bank.joints3d, v, unit) for v in views], axis=2)
    return out.astype(np.float32)
