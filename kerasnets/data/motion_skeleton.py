"""The 15-joint skeleton, body layout and motion record of the `retarget2d` data (`motion_pairs`).

The paper's 15 joints (the OpenPose BODY_25 subset, root = mid-hip, joint 8); a
character is 8 limb-group lengths in metres plus 4 posture angles; a `Motion` is
joint-angle curves plus the root's path in leg lengths. NumPy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

JOINT_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)  # fmt: skip
NUM_JOINTS = len(JOINT_NAMES)
#: Parent of every joint (-1 for the root, the mid-hip).
PARENTS = (1, 8, 1, 2, 3, 1, 5, 6, -1, 8, 9, 10, 8, 12, 13)
ROOT = 8
#: (child, parent) pairs = the 14 limbs, also the stick-figure edges.
LIMBS = tuple((j, p) for j, p in enumerate(PARENTS) if p >= 0)
#: Limb group of every joint's incoming limb (index into the 8 body lengths; -1 for the root).
LIMB_GROUP_NAMES = ("head", "shoulder", "upper_arm", "forearm", "spine", "pelvis", "thigh", "shin")
LIMB_GROUP = (0, 4, 1, 2, 3, 1, 2, 3, -1, 5, 6, 7, 5, 6, 7)
#: Base body, metres per limb group (a 1.75 m adult).
BASE_BODY = np.array([0.24, 0.19, 0.29, 0.26, 0.52, 0.10, 0.44, 0.43])
#: Unit direction of every joint's incoming limb in the rest pose (body frame: faces -y, right on -x, z up).
REST_DIRECTIONS = np.array(
    [
        [0.0, -0.25, 0.97],  # nose (from the neck, slightly forward)
        [0.0, 0.0, 1.0],  # neck (spine)
        [-1.0, 0.0, 0.0],  # right shoulder
        [0.0, 0.0, -1.0],  # right elbow
        [0.0, 0.0, -1.0],  # right wrist
        [1.0, 0.0, 0.0],  # left shoulder
        [0.0, 0.0, -1.0],  # left elbow
        [0.0, 0.0, -1.0],  # left wrist
        [0.0, 0.0, 0.0],  # mid hip (root)
        [-1.0, 0.0, 0.0],  # right hip
        [0.0, 0.0, -1.0],  # right knee
        [0.0, 0.0, -1.0],  # right ankle
        [1.0, 0.0, 0.0],  # left hip
        [0.0, 0.0, -1.0],  # left knee
        [0.0, 0.0, -1.0],  # left ankle
    ]
)
REST_DIRECTIONS[0] /= np.linalg.norm(REST_DIRECTIONS[0])
#: The paper's 7 training views (degrees about the vertical axis).
MOTION_FAMILIES = (
    "walk", "run", "jump", "squat", "wave", "jumping_jacks", "kick", "punch", "side_step", "turn_walk",
)  # fmt: skip
#: Angle channels of a motion (radians), see `forward_kinematics`.
ANGLE_NAMES = (
    "heading", "spine_flex", "spine_side", "neck_flex", "pelvis_roll",
    "r_shoulder_flex", "r_shoulder_abd", "r_elbow", "l_shoulder_flex", "l_shoulder_abd", "l_elbow",
    "r_hip_flex", "r_hip_abd", "r_knee", "l_hip_flex", "l_hip_abd", "l_knee",
)  # fmt: skip


class Motion(NamedTuple):
    """One character-agnostic motion.

    `angles [T, 17]` (radians, `ANGLE_NAMES` order); `displacement [T, 2]`:
    the root's (forward, rightward) position in the character's heading frame
    at t = 0, in leg lengths; `lift [T]`: height above the ground pose, in leg
    lengths; `family`: index into `MOTION_FAMILIES`.
    """

    angles: np.ndarray
    displacement: np.ndarray
    lift: np.ndarray
    family: int



#: Character posture (radians), added to every motion's angles: the rest pose differs between characters.
POSTURE_NAMES = ("arm_rest_abd", "stance_abd", "spine_lean", "neck_lean")
#: Angle channel (index into `ANGLE_NAMES`) and side sign of each posture term's targets.
POSTURE_TARGETS = (
    (("r_shoulder_abd", 1.0), ("l_shoulder_abd", 1.0)),
    (("r_hip_abd", 1.0), ("l_hip_abd", 1.0)),
    (("spine_flex", 1.0),),
    (("neck_flex", 1.0),),
)
POSTURE_RANGES = ((0.0, 0.35), (0.0, 0.12), (-0.08, 0.15), (-0.1, 0.25))
BODY_SIZE = len(BASE_BODY) + len(POSTURE_NAMES)


def leg_length(body) -> np.ndarray:
    """Thigh + shin (metres), the unit of a motion's root displacement."""
    body = np.asarray(body)
    return body[..., 6] + body[..., 7]
