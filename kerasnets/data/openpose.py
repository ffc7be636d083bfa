"""OpenPose BODY_25 JSON folders (one file per frame) <-> 2-D clips `[T, 15, 2]` of the `motion_pairs` skeleton.

The `retarget2d` paper's inference input is such a folder.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from kerasnets.data.motion_skeleton import NUM_JOINTS, ROOT


def load_openpose_json_dir(directory, max_frames=None) -> np.ndarray:
    """OpenPose BODY_25 JSON files (one per frame, sorted by name) -> `[T, 15, 2]` pixels.

    The first person of every frame; the first 15 keypoints. Missing joints
    (OpenPose writes 0, 0) take the previous frame's value, then leading gaps
    the next frame's; the neck and mid-hip are recomputed as the shoulder and
    hip midpoints, as the paper's preprocessing does.
    """
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not files:
        raise ValueError(f"no OpenPose .json files in {directory!r}")
    if max_frames is not None:
        files = files[: int(max_frames)]
    frames = []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        people = data.get("people") or []
        if not people:
            raise ValueError(f"{path}: no person detected")
        kp = np.asarray(people[0]["pose_keypoints_2d"], np.float64).reshape(-1, 3)
        if kp.shape[0] < NUM_JOINTS:
            raise ValueError(f"{path}: {kp.shape[0]} keypoints, expected the BODY_25 layout (>= {NUM_JOINTS})")
        frames.append(kp[:NUM_JOINTS, :2])
    clip = np.stack(frames)
    missing = np.all(clip == 0, axis=-1)
    for t in range(1, len(clip)):
        clip[t][missing[t]] = clip[t - 1][missing[t]]
        missing[t] &= missing[t - 1]
    for t in range(len(clip) - 2, -1, -1):
        clip[t][missing[t]] = clip[t + 1][missing[t]]
    clip[:, 1] = (clip[:, 2] + clip[:, 5]) / 2.0
    clip[:, ROOT] = (clip[:, 9] + clip[:, 12]) / 2.0
    return clip.astype(np.float32)


def write_openpose_json_dir(directory, joints2d) -> list[str]:
    """Write a clip `[T, 15, 2]` as OpenPose BODY_25 JSON files (other 10 keypoints zero); for tests and demos."""
    joints2d = np.asarray(joints2d, np.float64)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for t, frame in enumerate(joints2d):
        kp = np.zeros((25, 3))
        kp[:NUM_JOINTS, :2] = frame
        kp[:NUM_JOINTS, 2] = 1.0
        path = os.path.join(directory, f"frame_{t:012d}_keypoints.json")
        with open(path, "w") as f:
            json.dump({"version": 1.3, "people": [{"pose_keypoints_2d": kp.reshape(-1).tolist()}]}, f)
        paths.append(path)
    return paths
