"""Videos of one action performed at different speeds, for TCC: synthetic stick figures and TCC TFRecords.

**Embedded (no download).** Every video shows a stick figure (COCO-17 joints,
drawn by `kerasnets.data.skeleton.render`) performing the same action, a
"squat jump" given by five key poses in joint angles::

    K0 stand -> K1 crouch (lean, arms back) -> K2 jump (arms overhead, lifted)
             -> K3 land (wide knees, arms out) -> K4 finish (fists up, elbows bent)

The four segments between key poses are the **phases** (labels 0..3, the
per-frame labels the evaluation uses); within a segment the angles move with
a cosine ease `K_s + (K_{s+1} - K_s) (1 - cos(pi f)) / 2`. Each video differs by

* **time warp and speed**: length `U{min_len..max_len}` frames; random phase
  durations (each `U(0.5, 1.5)`, normalised) and a smooth random speed
  profile inside the video: frame `t` maps monotonically onto the action's
  progress `p(t) in [0, 1]`;
* **performer**: every key angle jittered by `N(0, 7)` degrees, bone lengths
  scaled by `U(0.9, 1.1)`, per-frame joint noise `N(0, 0.01)` torso units;
* **camera**: horizontal foreshortening `U(0.7, 1)` (yaw), in-plane roll
  `N(0, 6)` degrees, scale and position jitter, mirrored with probability 0.5;
* **appearance**: background gradient, clutter lines and clothing colours
  fixed per video (one seed for all its frames).

The feet stay on the ground (the lowest ankle of K0 defines it) except in the
jump, which lifts the pelvis by `lift` torso units.

**Real data: TCC's TFRecords** (`read_tcc_tfrecords`), the format written by
google-research/tcc `dataset_preparation` for Pouring and Penn Action: one
`tf.train.SequenceExample` per video with context features `name` (bytes) and
`len` (int64) and feature lists `video` (one JPEG per frame) and
`frame_labels` (int64 per frame); files `<name>_<split>-<shard>-of-<n>.tfrecord`.
`write_tcc_tfrecord` writes the same format (tests, or exporting the
synthetic videos).
"""

from __future__ import annotations

import glob
import io
import os
from typing import NamedTuple

import numpy as np

from kerasnets.data import skeleton

PHASE_NAMES = ("crouch", "jump", "land", "recover")
NUM_PHASES = len(PHASE_NAMES)

#: Key poses (degrees; `lift` in torso units). Arm angles are the upper arm's
#: abduction from the body's downward axis (0 down, 90 sideways, 180 up) and the
#: elbow's bend; leg angles the thigh's abduction and the knee's bend.
ANGLE_NAMES = ("torso", "upper_arm", "elbow", "thigh", "knee", "head", "lift")
KEY_POSES = np.array(
    [
        # torso upper_arm elbow thigh knee head lift
        [0.0, 12.0, 10.0, 6.0, 0.0, 0.0, 0.0],  # K0 stand
        [22.0, -25.0, 40.0, 60.0, 110.0, 15.0, 0.0],  # K1 crouch, arms swung back
        [-4.0, 170.0, 5.0, 8.0, 10.0, -10.0, 0.55],  # K2 jump, arms overhead
        [8.0, 95.0, 0.0, 38.0, 70.0, 5.0, 0.0],  # K3 land, arms out
        [0.0, 80.0, 130.0, 22.0, 0.0, 0.0, 0.0],  # K4 finish, fists up
    ]
)  # fmt: skip


class ActionVideos(NamedTuple):
    """Videos of variable length: lists with one entry per video.

    `frames[i]` uint8 `[T_i, H, W, 3]`; `phases[i]` int32 `[T_i]`;
    `progress[i]` float32 `[T_i]` (the action's progress p in [0, 1]);
    `keypoints[i]` float32 `[T_i, 17, 2]` pixel coordinates; `names[i]` str.
    """

    frames: list
    phases: list
    progress: list
    keypoints: list
    names: list


def _unit(angle):
    return np.array([np.sin(angle), np.cos(angle)])


def pose_from_angles(angles, bones=None) -> np.ndarray:
    """Joints `[17, 2]` in torso units (pelvis centre at the origin, y down) from one row of `ANGLE_NAMES`.

    Both sides mirror each other (the action is symmetric); `bones` scales the
    upper arm, forearm, thigh and shin lengths (4 values).
    """
    torso, upper, elbow, thigh, knee, head, lift = (float(a) for a in angles)
    bones = np.ones(4) if bones is None else np.asarray(bones, np.float64)
    deg = np.deg2rad
    j = np.zeros((skeleton.NUM_KEYPOINTS, 2))
    down = _unit(deg(torso))
    right = np.array([down[1], -down[0]])
    neck = -down
    for side, (sh, el, wr, hp, kn, an) in ((1.0, (5, 7, 9, 11, 13, 15)), (-1.0, (6, 8, 10, 12, 14, 16))):
        j[sh] = neck + side * right * 0.36
        j[hp] = side * right * 0.22
        a_up = deg(torso) + side * deg(upper)
        j[el] = j[sh] + _unit(a_up) * 0.55 * bones[0]
        j[wr] = j[el] + _unit(a_up + side * deg(elbow)) * 0.5 * bones[1]
        # Frontal view: a bent knee points at the camera, so the thigh splays outward and shortens.
        a_th = side * deg(thigh)
        fore = 1.0 - 0.35 * np.sin(deg(knee) / 2.0)
        j[kn] = j[hp] + _unit(a_th) * 0.8 * bones[2] * fore
        j[an] = j[kn] + _unit(a_th - side * deg(knee) * 0.8) * 0.75 * bones[3]
    head_dir = -_unit(deg(torso) + deg(head))
    head_right = np.array([-head_dir[1], head_dir[0]])
    nose = neck + head_dir * 0.38
    j[0] = nose
    j[1] = nose + head_dir * 0.08 + head_right * 0.08
    j[2] = nose + head_dir * 0.08 - head_right * 0.08
    j[3] = nose + head_dir * 0.03 + head_right * 0.19
    j[4] = nose + head_dir * 0.03 - head_right * 0.19
    j[:, 1] -= lift
    return j


def key_times(rng) -> np.ndarray:
    """Progress values `[NUM_PHASES + 1]` at which the key poses are reached (0 ... 1)."""
    durations = rng.uniform(0.5, 1.5, size=NUM_PHASES)
    return np.concatenate([[0.0], np.cumsum(durations) / durations.sum()])


def time_warp(num_frames: int, rng) -> np.ndarray:
    """A smooth, strictly increasing map of frames `0..T-1` onto `[0, 1]` (random speed profile)."""
    knots = np.exp(rng.normal(0.0, 0.35, size=6))  # speeds at 6 knots, log-normal
    speed = np.interp(np.linspace(0, 5, num_frames), np.arange(6), knots)
    cum = np.concatenate([[0.0], np.cumsum(speed[1:] + speed[:-1]) / 2.0])
    return cum / cum[-1]


def angles_at(progress, keys, times) -> tuple[np.ndarray, np.ndarray]:
    """Joint angles `[T, 7]` and phase labels `[T]` at action progress `p` (key poses `keys` at `times`)."""
    p = np.clip(np.asarray(progress, np.float64), 0.0, 1.0)
    seg = np.clip(np.searchsorted(times, p, side="right") - 1, 0, NUM_PHASES - 1)
    f = (p - times[seg]) / (times[seg + 1] - times[seg])
    ease = (1.0 - np.cos(np.pi * f)) / 2.0
    angles = keys[seg] + (keys[seg + 1] - keys[seg]) * ease[:, None]
    return angles, seg.astype(np.int32)


def generate(
    num_videos: int,
    size: int = 32,
    min_len: int = 40,
    max_len: int = 72,
    seed: int = 0,
    noise: float = 0.0,
    clutter: bool = False,
) -> ActionVideos:
    """`num_videos` synthetic videos of the squat-jump action (see the module docstring).

    Args:
        num_videos: number of videos.
        size: frame height and width in pixels (>= 16).
        min_len, max_len: range of video lengths in frames.
        seed: the same seed gives the same videos.
        noise, clutter: background pixel noise and random clutter lines
            (`skeleton.render`'s options; off by default: the nuisance here is
            the per-video appearance, and a small embedder trained from scratch
            learns the pose much sooner without them).
    """
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if not 2 <= min_len <= max_len:
        raise ValueError(f"need 2 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng = np.random.default_rng(seed)
    out = ActionVideos([], [], [], [], [])
    for v in range(num_videos):
        length = int(rng.integers(min_len, max_len + 1))
        keys = KEY_POSES + rng.normal(0.0, 7.0, size=KEY_POSES.shape) * np.array([1, 1, 1, 1, 1, 1, 0])
        keys[:, 6] = KEY_POSES[:, 6] * rng.uniform(0.8, 1.2)
        times = key_times(rng)
        progress = time_warp(length, rng)
        angles, phases = angles_at(progress, keys, times)
        bones = rng.uniform(0.9, 1.1, size=4)
        yaw = rng.uniform(0.7, 1.0)
        roll = np.deg2rad(rng.normal(0.0, 6.0))
        mirror = rng.uniform() < 0.5
        extent = 4.6  # torso units from the raised hands to the feet, a bit of margin
        unit = size / extent * rng.uniform(0.85, 1.0)
        ground = pose_from_angles(keys[0], bones)[[15, 16], 1].max()
        anchor = np.array([size / 2.0 + rng.uniform(-0.08, 0.08) * size, size * rng.uniform(0.84, 0.9)])
        c, s = np.cos(roll), np.sin(roll)
        rot = np.array([[c, s], [-s, c]])
        appearance = int(rng.integers(2**31))
        frames = np.zeros((length, size, size, 3), np.uint8)
        keypoints = np.zeros((length, skeleton.NUM_KEYPOINTS, 2), np.float32)
        for t in range(length):
            j = pose_from_angles(angles[t], bones)
            j += rng.normal(0.0, 0.01, size=j.shape)
            if angles[t, 6] == 0:  # feet on the ground
                j[:, 1] += ground - j[[15, 16], 1].max()
            else:
                j[:, 1] += ground - pose_from_angles(np.r_[angles[t, :6], 0.0], bones)[[15, 16], 1].max()
            j[:, 0] *= yaw
            if mirror:
                j[:, 0] = -j[:, 0]
                j = j[skeleton.flip_permutation()]
            j[:, 1] -= ground
            xy = (j @ rot) * unit + anchor
            keypoints[t] = xy
            frames[t] = (skeleton.render(xy, unit, np.random.default_rng(appearance), size, size, noise=noise, clutter=clutter) * 255 + 0.5).astype(
                np.uint8
            )
        out.frames.append(frames)
        out.phases.append(phases)
        out.progress.append(progress.astype(np.float32))
        out.keypoints.append(keypoints)
        out.names.append(f"squat_jump_{seed}_{v:04d}")
    return out


# ------------------------------------------------------------------ TFRecords


def write_tcc_tfrecord(path, videos: ActionVideos, jpeg_quality: int = 95) -> str:
    """Write `videos` in TCC's SequenceExample format (JPEG frames, `frame_labels`, `name`, `len`)."""
    import tensorflow as tf
    from PIL import Image

    def jpeg(frame):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(frame, np.uint8)).save(buf, "jpeg", quality=jpeg_quality)
        return buf.getvalue()

    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for frames, labels, name in zip(videos.frames, videos.phases, videos.names):
            feats = {
                "video": tf.train.FeatureList(
                    feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg(f)])) for f in frames]
                ),
                "frame_labels": tf.train.FeatureList(
                    feature=[tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)])) for v in labels]
                ),
            }
            context = tf.train.Features(
                feature={
                    "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
                    "len": tf.train.Feature(int64_list=tf.train.Int64List(value=[len(frames)])),
                }
            )
            example = tf.train.SequenceExample(context=context, feature_lists=tf.train.FeatureLists(feature_list=feats))
            writer.write(example.SerializeToString())
    return os.fspath(path)


def read_tcc_tfrecords(data_dir, dataset: str, split: str, size: int | None = None, max_videos=None) -> ActionVideos:
    """Read `<data_dir>/<dataset>_<split>-*.tfrecord` (TCC's format) into `ActionVideos`.

    Frames are decoded to uint8 RGB and, if `size` is given, resized to
    `size x size` (bilinear). `progress` is `frame / len`; `keypoints` are
    empty `[T, 0, 2]` arrays (the format has none).
    """
    import tensorflow as tf

    pattern = os.path.join(os.fspath(data_dir), f"{dataset}_{split}-*.tfrecord")
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no TCC TFRecords match {pattern}")
    context = {"name": tf.io.FixedLenFeature([], tf.string), "len": tf.io.FixedLenFeature([], tf.int64)}
    sequence = {
        "video": tf.io.FixedLenSequenceFeature([], tf.string),
        "frame_labels": tf.io.FixedLenSequenceFeature([], tf.int64),
    }
    out = ActionVideos([], [], [], [], [])
    for record in tf.data.TFRecordDataset(files):
        ctx, seq = tf.io.parse_single_sequence_example(record, context_features=context, sequence_features=sequence)
        frames = tf.map_fn(lambda b: tf.io.decode_jpeg(b, channels=3), seq["video"], fn_output_signature=tf.uint8)
        if size is not None:
            frames = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(frames, (size, size))), 0, 255), tf.uint8)
        n = int(ctx["len"])
        labels = seq["frame_labels"].numpy().astype(np.int32)
        if len(labels) != frames.shape[0]:
            raise ValueError(f"video {ctx['name'].numpy()!r}: {frames.shape[0]} frames but {len(labels)} frame labels")
        out.frames.append(frames.numpy())
        out.phases.append(labels)
        out.progress.append((np.arange(n) / n).astype(np.float32))
        out.keypoints.append(np.zeros((n, 0, 2), np.float32))
        out.names.append(ctx["name"].numpy().decode())
        if max_videos is not None and len(out.names) >= max_videos:
            break
    return out
