"""Human3.6M-style 3-D motion: a synthetic generator (embedded default) and VideoPose3D's `.npz` files.

**Skeleton** (the 17 joints VideoPose3D keeps of Human3.6M's 32, in order):
hip (root), RHip, RKnee, RFoot, LHip, LKnee, LFoot, spine, thorax, neck/nose,
head, LShoulder, LElbow, LWrist, RShoulder, RElbow, RWrist, with parents
`PARENTS` (shoulders re-parented to the thorax).

**Synthetic motion** (`synthetic_dataset`): forward kinematics on that tree
with per-subject bone lengths (rest offsets below, scaled by a subject height
factor `U(0.9, 1.1)` and per-bone `U(0.95, 1.05)`). Each action drives the
joint angles with random-phase sinusoids of a per-action base frequency
`U(0.4, 1.2)` Hz: a gait-like pattern (hips swing in anti-phase, knees bend
when the leg swings forward, arms counter-swing, elbows flex) whose
amplitudes are drawn per action (from standing still to striding), plus
smaller random sinusoids on every joint (bending, twisting, reaching); the
phase runs through a random monotone **time warp** `t + sum_i a_i sin(2 pi
t / P_i + phi_i)` (speed changes). The root walks in the direction it faces
at a speed proportional to the stride amplitude while the heading turns
slowly; walks are kept near a 1 m disc (the heading turns back). World
coordinates are z-up in metres at 50 fps, as Human3.6M's.

**Cameras**: four per subject, like Human3.6M's, on a circle of radius
`U(4.5, 5.5)` m at azimuths 45 + 90 k degrees (+- 10), height `U(1.3, 1.8)` m,
looking at the capture centre. Intrinsics: 1000 x 1000 images, focal
lengths around 1145 px and principal points around (512, 515) (the values
of Human3.6M camera 54138969, jittered), and small random radial
(`|k| <= 0.05`) and tangential (`|p| <= 0.002`) distortion (synthetic,
not the real calibration). 2-D keypoints are the distorted projections in
pixels; the "detections" add i.i.d. Gaussian noise (`noise_px`) and rare
outliers (`outlier_rate`, +-`outlier_px`), a stand-in for a 2-D detector.

**Real data** (`load_videopose3d`), the files VideoPose3D's
`prepare_data_h36m.py` writes (`DATASETS.md`):

* `data_3d_h36m.npz`: `positions_3d[subject][action]` float `(T, 32, 3)`,
  world coordinates in metres; 15 static joints are removed to get 17;
* `data_2d_h36m_<source>.npz`: `positions_2d[subject][action]` a list of 4
  cameras' `(T, 17, 2)` pixels, and `metadata` with `num_joints` and
  `keypoints_symmetry`;
* the cameras: VideoPose3D hard-codes Human3.6M's calibration in its source
  (CC BY-NC), so it is read here from `cameras_h36m.json` in the same
  folder: `{subject: [4 x {"id", "res_w", "res_h", "focal_length" [2],
  "center" [2], "radial_distortion" [3], "tangential_distortion" [2],
  "orientation" [w, x, y, z] (camera -> world), "translation" [3] metres
  (camera centre in world)}]}` in the order of the 2-D file's cameras.

**No pickle.** VideoPose3D's npz files hold dicts and lists as NumPy object
arrays, which only `pickle` can read -- and unpickling a crafted file runs
arbitrary code. `load_videopose3d` therefore opens every file with
`allow_pickle=False` and reads only the *plain* layout below; a file with
object arrays is refused with a message naming it. A file you trust (you made it
with `prepare_data_h36m.py`) is converted once, knowingly:

    python -m kerasnets.data.human36m convert --i-trust-this-file data_3d_h36m.npz [OUT]

(OUT defaults to replacing the input in place). The plain layout (same names,
numeric arrays only): `format` = `"kerasnets-videopose3d-v1"`,
`positions_3d/<subject>/<action>` `(T, 32, 3)`,
`positions_2d/<subject>/<action>/<camera index>` `(T, 17, 2)` and `metadata`
(a JSON string).

`write_videopose3d(directory, dataset)` writes a dataset in these three files
(32-joint 3-D; plain layout, or `layout="reference"` for the pickled one), so
the real loader and the converter are tested offline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NamedTuple

import numpy as np

from kerasnets.errors import KerasnetsError
from kerasnets.ops import camera as cam_ops

JOINT_NAMES = (
    "hip", "right_hip", "right_knee", "right_foot", "left_hip", "left_knee", "left_foot", "spine",
    "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
    "right_elbow", "right_wrist",
)  # fmt: skip
NUM_JOINTS = len(JOINT_NAMES)
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)
#: Human3.6M's 32-joint indices VideoPose3D drops (static or duplicated joints).
REMOVED_32 = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
KEPT_32 = tuple(j for j in range(32) if j not in REMOVED_32)
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
FPS = 50

#: Rest offsets from each joint's parent, body frame (x = the person's left, y = forward, z = up), metres.
REST_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],  # hip (root)
        [-0.13, 0.0, 0.0], [0.0, 0.0, -0.45], [0.0, 0.0, -0.44],  # right leg
        [0.13, 0.0, 0.0], [0.0, 0.0, -0.45], [0.0, 0.0, -0.44],  # left leg
        [0.0, 0.0, 0.23], [0.0, 0.0, 0.25], [0.0, 0.05, 0.11], [0.0, -0.02, 0.12],  # spine .. head
        [0.15, 0.0, 0.0], [0.0, 0.0, -0.28], [0.0, 0.0, -0.25],  # left arm
        [-0.15, 0.0, 0.0], [0.0, 0.0, -0.28], [0.0, 0.0, -0.25],  # right arm
    ]
)  # fmt: skip
#: Mean hip height above the floor (m) of the rest pose: legs 0.89 m plus feet.
HIP_HEIGHT = 0.95
#: Radius (m) of the capture area the synthetic walks stay near.
WALK_RADIUS = 1.0


def flip_permutation() -> np.ndarray:
    """`flipped[..., k, :] = pose[..., perm[k], :]` swaps left and right joints."""
    perm = np.arange(NUM_JOINTS)
    for a, b in zip(LEFT_JOINTS, RIGHT_JOINTS):
        perm[a], perm[b] = b, a
    return perm


# ----------------------------------------------------------------------- motion


def _rot(axis, angle):
    """Rotation matrices `[T, 3, 3]` about a body axis (0 = x, 1 = y, 2 = z) by angles `[T]`."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def forward_kinematics(local_rotations, offsets, root_positions):
    """Joint positions `[T, J, 3]` from local rotations `[T, J, 3, 3]`, rest offsets `[J, 3]`, root `[T, 3]`."""
    t = len(root_positions)
    glob = np.zeros((t, NUM_JOINTS, 3, 3))
    pos = np.zeros((t, NUM_JOINTS, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            glob[:, j] = local_rotations[:, j]
            pos[:, j] = root_positions
        else:
            pos[:, j] = pos[:, p] + np.einsum("tab,b->ta", glob[:, p], offsets[j])
            glob[:, j] = glob[:, p] @ local_rotations[:, j]
    return pos


def _time_warp(t, rng):
    """Monotone warp of times `t` (s): a sum of sines whose slopes never reach -1."""
    warped = t.copy()
    budget = 0.8
    for _ in range(3):
        period = rng.uniform(2.0, 8.0)
        amp = rng.uniform(0.0, budget / 3.0) * period / (2 * np.pi)  # slope amplitude <= budget/3
        warped += amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return warped


def synthetic_motion(num_frames: int, offsets, rng: np.random.Generator, fps: int = FPS) -> np.ndarray:
    """One action: world joint positions `[T, 17, 3]` (z up, metres)."""
    t = np.arange(num_frames) / fps
    tw = _time_warp(t, rng)
    freq = rng.uniform(0.4, 1.2)
    phase = 2 * np.pi * freq * tw + rng.uniform(0, 2 * np.pi)
    stride = rng.uniform(0.0, 0.6)  # hip swing amplitude (rad): 0 = standing
    arm_swing = stride * rng.uniform(0.3, 1.0)
    rot = np.tile(np.eye(3), (num_frames, NUM_JOINTS, 1, 1))

    def noise(scale):
        """A smooth random angle signal: two sinusoids of random frequency."""
        out = np.zeros(num_frames)
        for _ in range(2):
            out += rng.uniform(-scale, scale) * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * tw + rng.uniform(0, 6.3))
        return out

    # Legs: flexion about x (forward swing = positive rotation of the thigh toward +y).
    for hip, knee, sgn in ((1, 2, 1.0), (4, 5, -1.0)):
        swing = sgn * stride * np.sin(phase) + noise(0.25)
        bend = np.maximum(0.0, sgn * np.sin(phase + 1.2)) * stride * 1.6 + np.abs(noise(0.3))
        rot[:, hip] = _rot(0, swing) @ _rot(1, noise(0.15))
        rot[:, knee] = _rot(0, -bend)  # knee bends backward
    # Arms: counter-swing at the shoulders, elbows flex forward; extra reaching motion.
    for shoulder, elbow, sgn in ((11, 12, 1.0), (14, 15, -1.0)):
        swing = -sgn * arm_swing * np.sin(phase) + noise(0.6)
        abduct = -sgn * (0.15 + np.abs(noise(0.5)))  # away from the body
        rot[:, shoulder] = _rot(1, abduct) @ _rot(0, swing)
        rot[:, elbow] = _rot(0, 0.2 + np.abs(noise(0.9)))
    # Torso: bend, sway and twist; head nods.
    rot[:, 7] = _rot(0, noise(0.2)) @ _rot(1, noise(0.1)) @ _rot(2, 0.2 * stride * np.sin(phase) + noise(0.2))
    rot[:, 8] = _rot(0, noise(0.1)) @ _rot(2, noise(0.15))
    rot[:, 9] = _rot(0, noise(0.25)) @ _rot(2, noise(0.4))

    # Root: heading turns slowly; walks forward at a speed proportional to the stride.
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(noise(0.6)) / fps
    speed = stride * 2.0 * freq * rng.uniform(0.6, 1.0)  # m/s
    xy = np.zeros((num_frames, 2))
    pos = rng.uniform(-0.3, 0.3, size=2)
    for i in range(num_frames):
        if np.linalg.norm(pos) > WALK_RADIUS:  # turn back toward the centre
            error = np.arctan2(-pos[1], -pos[0]) - (heading[i] + np.pi / 2)
            heading[i:] += np.angle(np.exp(1j * error)) * 0.05
        direction = np.array([np.cos(heading[i] + np.pi / 2), np.sin(heading[i] + np.pi / 2)])
        pos = pos + direction * speed / fps
        xy[i] = pos
    bob = 0.03 * stride * np.sin(2 * phase) + noise(0.02) - 0.15 * np.abs(noise(0.3))  # crouching
    root = np.concatenate([xy, (HIP_HEIGHT + bob)[:, None]], axis=1)
    rot[:, 0] = _rot(2, heading) @ _rot(0, noise(0.08)) @ _rot(1, noise(0.05))
    return forward_kinematics(rot, offsets, root)


# ---------------------------------------------------------------------- cameras


class Camera(NamedTuple):
    """One camera: pixel intrinsics `[9]` (f, c, k, p), image size, extrinsics (camera -> world)."""

    id: str
    intrinsics: np.ndarray
    res_w: int
    res_h: int
    orientation: np.ndarray  # quaternion (w, x, y, z), camera -> world rotation
    translation: np.ndarray  # camera centre in world coordinates (m)

    def normalized_intrinsics(self) -> np.ndarray:
        return cam_ops.normalize_intrinsics(self.intrinsics, self.res_w, self.res_h)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "res_w": int(self.res_w),
            "res_h": int(self.res_h),
            "focal_length": self.intrinsics[0:2].tolist(),
            "center": self.intrinsics[2:4].tolist(),
            "radial_distortion": self.intrinsics[4:7].tolist(),
            "tangential_distortion": self.intrinsics[7:9].tolist(),
            "orientation": np.asarray(self.orientation).tolist(),
            "translation": np.asarray(self.translation).tolist(),
        }

    @classmethod
    def from_json(cls, d: dict, where: str = "camera") -> "Camera":
        keys = ("res_w", "res_h", "focal_length", "center", "radial_distortion", "tangential_distortion",
                "orientation", "translation")  # fmt: skip
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        intr = np.concatenate([np.asarray(d[k], np.float64).reshape(-1) for k in keys[2:6]])
        if intr.shape != (9,):
            raise ValueError(f"{where}: focal_length [2], center [2], radial [3], tangential [2] expected")
        q = np.asarray(d["orientation"], np.float64)
        tr = np.asarray(d["translation"], np.float64)
        if q.shape != (4,) or tr.shape != (3,):
            raise ValueError(f"{where}: orientation must be 4 values (w, x, y, z), translation 3")
        return cls(str(d.get("id", "")), intr, int(d["res_w"]), int(d["res_h"]), q / np.linalg.norm(q), tr)


def synthetic_cameras(rng: np.random.Generator, subject: str = "S1") -> list[Camera]:
    """Four Human3.6M-like cameras around the capture centre (see the module docstring)."""
    cams = []
    for k in range(4):
        azimuth = np.deg2rad(45 + 90 * k + rng.uniform(-10, 10))
        radius, height = rng.uniform(4.5, 5.5), rng.uniform(1.3, 1.8)
        centre = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), height])
        target = np.array([0.0, 0.0, rng.uniform(0.8, 1.1)])
        forward = target - centre
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        r_c2w = np.stack([right, down, forward], axis=1)  # columns: camera x, y, z in world
        intr = np.array([
            1145.0 * rng.uniform(0.97, 1.03), 1144.0 * rng.uniform(0.97, 1.03),
            512.5 + rng.uniform(-8, 8), 515.5 + rng.uniform(-8, 8),
            *rng.uniform(-0.05, 0.05, size=3), *rng.uniform(-0.002, 0.002, size=2),
        ])  # fmt: skip
        cams.append(Camera(f"{subject}_cam{k}", intr, 1000, 1000, cam_ops.rotation_matrix_to_quaternion(r_c2w), centre))
    return cams


def project_pixels(world, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World joints `[T, J, 3]` -> (camera-space `[T, J, 3]`, distorted pixels `[T, J, 2]`)."""
    from keras import ops

    cam_space = cam_ops.world_to_camera(world, camera.orientation, camera.translation)
    pixels = ops.convert_to_numpy(cam_ops.project_to_2d(cam_space, camera.intrinsics))
    return cam_space, np.asarray(pixels, np.float64)


# ---------------------------------------------------------------------- dataset


class MotionDataset(NamedTuple):
    """Human3.6M-like data: `positions_3d[subject][action]` world `[T, 17, 3]`,
    `positions_2d[subject][action]` list of per-camera pixel `[T, 17, 2]`, `cameras[subject]` 4 `Camera`s."""

    positions_3d: dict
    positions_2d: dict
    cameras: dict


def synthetic_dataset(
    subjects=TRAIN_SUBJECTS + TEST_SUBJECTS,
    actions_per_subject: int = 4,
    num_frames: int = 500,
    seed: int = 0,
    noise_px: float = 4.0,
    outlier_rate: float = 0.01,
    outlier_px: float = 40.0,
) -> MotionDataset:
    """Synthetic motion, cameras and noisy 2-D "detections", deterministic by `seed` (see module docstring)."""
    if actions_per_subject < 1 or num_frames < 1:
        raise ValueError(f"need actions_per_subject >= 1 and num_frames >= 1, got {actions_per_subject}, {num_frames}")
    if noise_px < 0 or not 0 <= outlier_rate <= 1:
        raise ValueError(f"noise_px must be >= 0 and outlier_rate in [0, 1], got {noise_px}, {outlier_rate}")
    pos3d, pos2d, cameras = {}, {}, {}
    for s_idx, subject in enumerate(subjects):
        # Subjects are seeded by name, so a subject is the same whichever others are generated.
        rng = np.random.default_rng([seed, sum(ord(ch) * 31**i for i, ch in enumerate(subject)) % 2**31])
        offsets = REST_OFFSETS * rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, size=(NUM_JOINTS, 1))
        cameras[subject] = synthetic_cameras(rng, subject)
        pos3d[subject], pos2d[subject] = {}, {}
        for a in range(actions_per_subject):
            name = f"Motion{a + 1}"
            world = synthetic_motion(num_frames, offsets, rng)
            pos3d[subject][name] = world.astype(np.float32)
            views = []
            for camera in cameras[subject]:
                _, px = project_pixels(world, camera)
                px = px + rng.normal(0.0, noise_px, size=px.shape) if noise_px > 0 else px
                outliers = rng.uniform(size=px.shape[:2]) < outlier_rate
                px[outliers] += rng.uniform(-outlier_px, outlier_px, size=(int(outliers.sum()), 2))
                views.append(px.astype(np.float32))
            pos2d[subject][name] = views
    return MotionDataset(pos3d, pos2d, cameras)


def to_32_joints(positions_17) -> np.ndarray:
    """Insert Human3.6M's 15 removed joints (as copies of the next kept joint) -> `[T, 32, 3]`."""
    p = np.asarray(positions_17)
    out = np.zeros(p.shape[:-2] + (32, p.shape[-1]), p.dtype)
    out[..., list(KEPT_32), :] = p
    for j in REMOVED_32:
        nxt = min(k for k in KEPT_32 if k > j) if j < max(KEPT_32) else max(KEPT_32)
        out[..., j, :] = out[..., nxt, :]
    return out


#: The `format` member of the plain (pickle-free) npz layout `load_videopose3d` reads.
PLAIN_FORMAT = "kerasnets-videopose3d-v1"
_CONVERT_COMMAND = "python -m kerasnets.data.human36m convert --i-trust-this-file"


class UnsafeDataFileError(KerasnetsError, ValueError):
    """A data file needs pickle (which can run code) to load; kerasnets refuses it (exit 2)."""

    exit_code = 2


def _pickled_file_error(path) -> UnsafeDataFileError:
    return UnsafeDataFileError(
        f"{path} stores Python objects (pickle), and loading a pickle can run arbitrary code, so kerasnets "
        f"does not read it. If you trust this file (e.g. you wrote it with VideoPose3D's prepare_data_h36m.py), "
        f"convert it once to plain arrays: {_CONVERT_COMMAND} {path}"
    )


def _flatten_nested(prefix: str, value, out: dict) -> None:
    """`{subject: {action: array | [array per camera]}}` -> `out["<prefix>/<subject>/<action>[/<camera>]"]`."""
    if isinstance(value, dict):
        for key, sub in value.items():
            key = str(key)
            if "/" in key or not key:
                raise ValueError(f"{prefix}: name {key!r} is empty or contains '/'")
            _flatten_nested(f"{prefix}/{key}", sub, out)
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            _flatten_nested(f"{prefix}/{i}", sub, out)
    else:
        arr = np.asarray(value)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ValueError(f"{prefix}: expected a numeric array, got dtype {arr.dtype}")
        out[prefix] = arr


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON")


def _plain_members(positions: dict, name: str, metadata: dict | None = None) -> dict:
    out = {"format": np.array(PLAIN_FORMAT)}
    _flatten_nested(name, positions, out)
    if metadata is not None:
        out["metadata"] = np.array(json.dumps(metadata, default=_json_default))
    return out


def _save_npz_atomically(path, members: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.npz"  # np.savez appends .npz to names without it
    try:
        np.savez_compressed(tmp, **members)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_videopose3d(directory, dataset: MotionDataset, source: str = "synthetic", layout: str = "plain") -> dict:
    """Write `data_3d_h36m.npz`, `data_2d_h36m_<source>.npz` and `cameras_h36m.json`; returns their paths.

    `layout="plain"`: the pickle-free layout `load_videopose3d` reads; `"reference"`: VideoPose3D's own
    (object arrays, needs pickle; input of the converter).
    """
    if layout not in ("plain", "reference"):
        raise ValueError(f"layout must be 'plain' or 'reference', got {layout!r}")
    os.makedirs(directory, exist_ok=True)
    p3 = {s: {a: to_32_joints(x) for a, x in acts.items()} for s, acts in dataset.positions_3d.items()}
    metadata = {"num_joints": NUM_JOINTS, "keypoints_symmetry": [list(LEFT_JOINTS), list(RIGHT_JOINTS)]}
    path3 = os.path.join(directory, "data_3d_h36m.npz")
    path2 = os.path.join(directory, f"data_2d_h36m_{source}.npz")
    if layout == "reference":
        np.savez_compressed(path3, positions_3d=p3)
        np.savez_compressed(path2, positions_2d=dataset.positions_2d, metadata=metadata)
    else:
        _save_npz_atomically(path3, _plain_members(p3, "positions_3d"))
        _save_npz_atomically(path2, _plain_members(dataset.positions_2d, "positions_2d", metadata))
    pathc = os.path.join(directory, "cameras_h36m.json")
    with open(pathc, "w") as f:
        json.dump({s: [c.to_json() for c in cams] for s, cams in dataset.cameras.items()}, f)
    return {"3d": path3, "2d": path2, "cameras": pathc}


def read_plain_npz(path, name: str) -> tuple[dict, dict]:
    """`(positions, metadata)` of a plain-layout file, read with `allow_pickle=False`.

    `positions[subject][action]`: an array (`positions_3d`) or a list of per-camera arrays (`positions_2d`).
    A file that needs pickle raises `UnsafeDataFileError` before anything in it is unpickled.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as exc:  # a bare pickle, or an .npy of objects
        if "pickle" in str(exc):
            raise _pickled_file_error(path) from None
        raise ValueError(f"{path}: not a NumPy .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive, found a single array")
    with archive:
        members = archive.files
        if name in members or not any(k.startswith(name + "/") for k in members):
            if name in members:  # VideoPose3D's layout: one object array per name
                raise _pickled_file_error(path)
            raise ValueError(f"{path}: no '{name}' arrays (members: {sorted(members)[:5]})")

        def read(key):
            try:
                value = archive[key]
            except ValueError as exc:
                if "pickle" in str(exc):
                    raise _pickled_file_error(path) from None
                raise
            return value

        positions: dict = {}
        for key in members:
            if not key.startswith(name + "/"):
                continue
            parts = key.split("/")[1:]
            arr = read(key)
            if not (np.issubdtype(arr.dtype, np.number)):
                raise ValueError(f"{path}[{key}]: expected a numeric array, got dtype {arr.dtype}")
            if len(parts) == 2:
                positions.setdefault(parts[0], {})[parts[1]] = arr
            elif len(parts) == 3 and parts[2].isdigit():
                positions.setdefault(parts[0], {}).setdefault(parts[1], {})[int(parts[2])] = arr
            else:
                raise ValueError(f"{path}: unexpected member {key!r} (expected {name}/<subject>/<action>[/<camera>])")
        for acts in positions.values():
            for action, views in acts.items():
                if isinstance(views, dict):
                    if sorted(views) != list(range(len(views))):
                        raise ValueError(f"{path}: cameras of {action!r} are not numbered 0..{len(views) - 1}")
                    acts[action] = [views[i] for i in range(len(views))]
        metadata = {}
        if "metadata" in members:
            text = read("metadata")
            if text.dtype.kind != "U" or text.shape != ():
                raise ValueError(f"{path}[metadata]: expected a JSON string")
            try:
                metadata = json.loads(str(text[()]))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}[metadata]: not valid JSON ({exc})") from None
    return positions, metadata


def convert_videopose3d_npz(src, dst=None, *, i_trust_this_file: bool = False) -> str:
    """Rewrite a VideoPose3D npz (object arrays, needs pickle) in the plain layout; returns `dst`.

    Unpickling runs whatever code the file names, so this refuses unless `i_trust_this_file=True`:
    call it only on files you made yourself or got from a source you trust. `dst` defaults to `src`
    (replaced atomically, after the whole file is read).
    """
    if not i_trust_this_file:
        raise UnsafeDataFileError(
            f"converting {src} unpickles it, which runs any code it contains; pass i_trust_this_file=True "
            "(command line: --i-trust-this-file) only for a file you trust"
        )
    dst = src if dst is None else dst
    with np.load(src, allow_pickle=True) as archive:  # the one deliberate pickle load, behind the flag
        members = {}
        for name in ("positions_3d", "positions_2d"):
            if name in archive.files:
                value = archive[name]
                members.update(_plain_members(value.item() if value.dtype == object else value, name))
        if not members:
            raise ValueError(f"{src}: neither 'positions_3d' nor 'positions_2d' found (members: {archive.files})")
        if "metadata" in archive.files:
            meta = archive["metadata"]
            members["metadata"] = np.array(json.dumps(meta.item() if meta.dtype == object else meta.tolist(),
                                                      default=_json_default))  # fmt: skip
    _save_npz_atomically(dst, members)
    return dst


def load_videopose3d(directory, source: str = "cpn_ft_h36m_dbb", subjects=None) -> MotionDataset:
    """Read VideoPose3D's files (plain layout, no pickle) from `directory`; 3-D reduced to 17 joints.

    See the module docstring; a file in VideoPose3D's pickled layout raises `UnsafeDataFileError` naming
    the one-time converter.
    """
    path3 = os.path.join(directory, "data_3d_h36m.npz")
    path2 = os.path.join(directory, f"data_2d_h36m_{source}.npz")
    pathc = os.path.join(directory, "cameras_h36m.json")
    for path in (path3, path2):
        if not os.path.exists(path):
            raise FileNotFoundError(f"VideoPose3D data file not found: {path}")
    if not os.path.exists(pathc):
        raise FileNotFoundError(
            f"camera calibration not found: {pathc} (Human3.6M intrinsics and extrinsics per subject and camera; "
            "see kerasnets.data.human36m for the JSON layout)"
        )
    raw3, _ = read_plain_npz(path3, "positions_3d")
    raw2, meta = read_plain_npz(path2, "positions_2d")
    if meta.get("num_joints", NUM_JOINTS) != NUM_JOINTS:
        raise ValueError(f"{path2}: {meta['num_joints']} 2-D joints; the Human3.6M layout has {NUM_JOINTS}")
    with open(pathc) as f:
        cams_json = json.load(f)
    subjects = sorted(raw3) if subjects is None else list(subjects)
    pos3d, pos2d, cameras = {}, {}, {}
    for subject in subjects:
        if subject not in raw3 or subject not in raw2:
            raise ValueError(f"subject {subject!r} missing from {path3 if subject not in raw3 else path2}")
        if subject not in cams_json:
            raise ValueError(f"subject {subject!r} missing from {pathc}")
        cameras[subject] = [Camera.from_json(c, f"{pathc}[{subject}][{i}]") for i, c in enumerate(cams_json[subject])]
        pos3d[subject], pos2d[subject] = {}, {}
        for action, world in raw3[subject].items():
            world = np.asarray(world, np.float32)
            if world.ndim != 3 or world.shape[1:] not in ((32, 3), (17, 3)):
                raise ValueError(f"{path3}[{subject}][{action}]: expected (T, 32, 3), got {world.shape}")
            if world.shape[1] == 32:
                world = world[:, list(KEPT_32)]
            if action not in raw2[subject]:
                raise ValueError(f"{path2}: no 2-D keypoints for {subject}/{action}")
            views = [np.asarray(v, np.float32) for v in raw2[subject][action]]
            if len(views) != len(cameras[subject]):
                raise ValueError(f"{subject}/{action}: {len(views)} 2-D views but {len(cameras[subject])} cameras")
            # Detections can be a few frames longer than the mocap (the reference trims them).
            n = min(len(world), *(len(v) for v in views))
            pos3d[subject][action] = world[:n]
            pos2d[subject][action] = [v[:n] for v in views]
    return MotionDataset(pos3d, pos2d, cameras)


class Sequence(NamedTuple):
    """One (subject, action, camera) clip ready for training.

    `keypoints_2d [T, 17, 2]` in normalised screen units, `pose_3d [T, 17, 3]`
    camera space, root-relative (root joint zero), `trajectory [T, 1, 3]`
    the root's camera-space position, `camera [9]` normalised intrinsics.
    """

    keypoints_2d: np.ndarray
    pose_3d: np.ndarray
    trajectory: np.ndarray
    camera: np.ndarray
    name: str


#: (subject, action) pairs VideoPose3D leaves out of evaluation: S11 "Directions" is corrupted.
CORRUPTED_ACTIONS = (("S11", "Directions"),)


def camera_sequences(dataset: MotionDataset, subjects, exclude=()) -> list[Sequence]:
    """Every (subject, action, camera) of `subjects` as a `Sequence` (camera space, normalised 2-D).

    `exclude`: (subject, action) pairs to leave out (e.g. `CORRUPTED_ACTIONS`).
    """
    out = []
    skip = {tuple(pair) for pair in exclude}
    for subject in subjects:
        if subject not in dataset.positions_3d:
            raise ValueError(f"subject {subject!r} not in the data set (has {sorted(dataset.positions_3d)})")
        for action in sorted(dataset.positions_3d[subject]):
            if (subject, action) in skip:
                continue
            world = dataset.positions_3d[subject][action]
            for c_idx, camera in enumerate(dataset.cameras[subject]):
                cam_space = cam_ops.world_to_camera(world, camera.orientation, camera.translation)
                root = cam_space[:, :1].copy()
                pose = cam_space - root
                pose[:, 0] = 0.0
                kp = cam_ops.normalize_screen_coordinates(
                    dataset.positions_2d[subject][action][c_idx], camera.res_w, camera.res_h
                )
                out.append(Sequence(kp.astype(np.float32), pose.astype(np.float32), root.astype(np.float32),
                                    camera.normalized_intrinsics().astype(np.float32),
                                    f"{subject}/{action}/{camera.id or c_idx}"))  # fmt: skip
    return out


# -------------------------------------------------------------------- converter


def main(argv=None) -> int:
    """`python -m kerasnets.data.human36m convert --i-trust-this-file IN [OUT]`."""
    parser = argparse.ArgumentParser(
        prog="python -m kerasnets.data.human36m",
        description="Convert VideoPose3D's pickled npz files to the plain layout kerasnets reads without pickle.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="rewrite one data_3d_h36m.npz / data_2d_h36m_*.npz without pickle")
    conv.add_argument("input")
    conv.add_argument("output", nargs="?", help="default: replace INPUT in place")
    conv.add_argument("--i-trust-this-file", action="store_true",
                      help="required: reading the input unpickles it, which runs any code it contains")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.i_trust_this_file:
        parser.error(f"{args.input}: reading it unpickles it, which can run code; "
                     "pass --i-trust-this-file only for a file you trust")  # fmt: skip
    if not os.path.isfile(args.input):
        parser.error(f"{args.input}: no such file")
    try:
        out = convert_videopose3d_npz(args.input, args.output, i_trust_this_file=True)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} (plain arrays, loads without pickle)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
