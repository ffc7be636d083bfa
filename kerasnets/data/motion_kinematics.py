"""Forward kinematics and the orthographic view projection of the `retarget2d` data (`motion_pairs`).

`forward_kinematics` turns a `Motion` performed by a body into 3-D joints (metres, z up);
`project` is the paper's view: a turn about the vertical axis, then an orthographic
projection on (x, z), image y down, `UNIT` pixels per metre. NumPy only.
"""

from __future__ import annotations

import numpy as np

from kerasnets.data.motion_skeleton import (
    BASE_BODY,
    BODY_SIZE,
    LIMB_GROUP,
    LIMBS,
    NUM_JOINTS,
    PARENTS,
    POSTURE_NAMES,
    POSTURE_TARGETS,
    REST_DIRECTIONS,
    ROOT,
    ANGLE_NAMES,
    Motion,
    leg_length,
)

VIEW_ANGLES = (-90.0, -60.0, -30.0, 0.0, 30.0, 60.0, 90.0)
#: Pixels per metre of the orthographic projection (the reference's `unit`).
UNIT = 128.0
#: Channels of the representation: 14 local joints + root velocity, x and y each.


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)



def _local_rotations(angles):
    """Per-joint rotations `[T, 15, 3, 3]` of each joint's incoming limb relative to its parent's frame."""
    a = {name: angles[:, k] for k, name in enumerate(ANGLE_NAMES)}
    t = angles.shape[0]
    rot = np.tile(np.eye(3), (t, NUM_JOINTS, 1, 1))
    rot[:, ROOT] = _rz(a["heading"])
    # Flexion toward the front (-y) is a negative rotation about x; knees bend backward.
    rot[:, 1] = _rx(-a["spine_flex"]) @ _ry(a["spine_side"])
    rot[:, 0] = _rx(-a["neck_flex"])
    # Pelvis roll (about the facing axis) tilts the hip line; the legs hang from it.
    rot[:, 9] = rot[:, 12] = _ry(a["pelvis_roll"])
    for side, sign, (sh, el, wr, hp, kn, an) in (("r", 1.0, (2, 3, 4, 9, 10, 11)), ("l", -1.0, (5, 6, 7, 12, 13, 14))):
        # Abduction swings the limb outward: toward -x on the right, +x on the left.
        rot[:, el] = _rx(-a[f"{side}_shoulder_flex"]) @ _ry(sign * a[f"{side}_shoulder_abd"])
        rot[:, wr] = _rx(-a[f"{side}_elbow"])
        rot[:, kn] = _rx(-a[f"{side}_hip_flex"]) @ _ry(sign * a[f"{side}_hip_abd"])
        rot[:, an] = _rx(a[f"{side}_knee"])
    return rot


def _order():
    """Joints in an order where every parent precedes its children."""
    order, seen = [ROOT], {ROOT}
    while len(order) < NUM_JOINTS:
        for j, p in enumerate(PARENTS):
            if j not in seen and p in seen:
                order.append(j)
                seen.add(j)
    return order


#: Joints in an order where every parent precedes its children (the kinematic tree's walk).
FK_ORDER = _order()


def forward_kinematics(motion: Motion, body) -> np.ndarray:
    """3-D joints `[T, 15, 3]` (metres, z up) of `motion` performed by `body`.

    `body`: 8 limb-group lengths, optionally followed by the 4 posture angles
    of `sample_bodies` (added to the motion's angles).

    Rotations compose down the tree (`G_j = G_parent(j) R_j`); a joint sits at
    `p_parent + G_j (length_j * rest_direction_j)`. The root moves by the
    motion's displacement times the body's leg length and is lifted so the
    lower ankle touches z = 0, plus the motion's lift times the leg length.
    """
    body = np.asarray(body, np.float64)
    if body.shape not in ((len(BASE_BODY),), (BODY_SIZE,)):
        raise ValueError(
            f"body must hold {len(BASE_BODY)} limb-group lengths (+ {len(POSTURE_NAMES)} posture angles), got shape {body.shape}"
        )
    if np.any(body[: len(BASE_BODY)] <= 0):
        raise ValueError("body lengths must be positive")
    angles = np.array(motion.angles, np.float64)
    if body.shape == (BODY_SIZE,):
        for value, targets in zip(body[len(BASE_BODY) :], POSTURE_TARGETS):
            for name, sign in targets:
                angles[:, ANGLE_NAMES.index(name)] += sign * value
    t = angles.shape[0]
    rot = _local_rotations(angles)
    glob = np.zeros_like(rot)
    pos = np.zeros((t, NUM_JOINTS, 3))
    for j in FK_ORDER:
        p = PARENTS[j]
        if p < 0:
            glob[:, j] = rot[:, j]
            continue
        glob[:, j] = glob[:, p] @ rot[:, j]
        offset = body[LIMB_GROUP[j]] * REST_DIRECTIONS[j]
        pos[:, j] = pos[:, p] + glob[:, j] @ offset
    leg = leg_length(body)
    ground = -np.minimum(pos[:, 11, 2], pos[:, 14, 2])
    root = np.zeros((t, 3))
    root[:, :2] = np.asarray(motion.displacement) * leg
    root[:, 2] = ground + np.asarray(motion.lift) * leg
    return pos + root[:, None, :]


def bone_directions(joints3d) -> np.ndarray:
    """Unit vectors `[..., 14, 3]` of every limb (child - parent), in `LIMBS` order."""
    joints3d = np.asarray(joints3d)
    vec = np.stack([joints3d[..., c, :] - joints3d[..., p, :] for c, p in LIMBS], -2)
    return vec / np.linalg.norm(vec, axis=-1, keepdims=True)


def project(joints3d, view_deg, unit: float = UNIT) -> np.ndarray:
    """Orthographic 2-D joints `[..., T, 15, 2]` (pixels, y down) after a `view_deg` turn about z.

    `view_deg` is a scalar or broadcasts against the leading axes.
    """
    joints3d = np.asarray(joints3d, np.float64)
    theta = np.deg2rad(np.asarray(view_deg, np.float64))
    c, s = np.cos(theta), np.sin(theta)
    while np.ndim(c) < joints3d.ndim - 1:
        c, s = c[..., None], s[..., None]
    x = c * joints3d[..., 0] - s * joints3d[..., 1]
    return np.stack([x, -joints3d[..., 2]], -1) * unit
