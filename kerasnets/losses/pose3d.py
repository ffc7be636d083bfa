"""VideoPose3D training losses (Pavllo et al. 2019, Sec. 3-4), differentiable (TensorFlow).

Supervised:

* `mpjpe_loss`: `mean ||p - g||_2` over batch, frames and joints (protocol 1
  as a loss), `[..., J, 3]` tensors;
* `weighted_mpjpe_loss`: `mean(w ||p - g||)`; the trajectory model's loss
  uses `w = 1 / z_gt` (the root's ground-truth depth), "since far-away
  subjects have smaller 2-D footprints, errors on them should cost less";
* `n_mpjpe_loss`: MPJPE after the per-frame least-squares scale
  `s = sum(p.g) / sum(p.p)` (Rhodin et al.'s normalised loss);
* `velocity_loss`: MPJVE, `mean ||dp/dt - dg/dt||` along axis 1.

Semi-supervised back-projection (Sec. 4): on unlabelled 2-D sequences the
pose model's root-relative 3-D pose `P` plus the trajectory model's global
root position `r` is projected back to the image through the camera
(`kerasnets.ops.camera.project_to_2d`) and compared with the 2-D input at
the frame the models estimate:

    L_proj = mean_j || proj(P_j + r) - x_j ||_2

and a bone-length term keeps the unlabelled poses' bones at the lengths of
the labelled batch (otherwise the pose can shrink towards the camera):

    L_bone = mean_b | mean_{labelled}(L_b) - mean_{unlabelled}(L_b) |

where `L_b` is the length of bone b (joint to its parent), averaged over
time within each sample, then over samples.

`back_projection_losses` returns the four terms of the reference's total:
`L = mpjpe(P_lab, g) + weighted_mpjpe(r_lab, r_gt, 1/z) + L_proj + L_bone`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.ops.camera import project_to_2d
from kerasnets.saving import register


def _check(pred, target):
    if pred.shape.rank is not None and target.shape.rank is not None and pred.shape.rank != target.shape.rank:
        raise ValueError(f"prediction rank {pred.shape.rank} != target rank {target.shape.rank}")


def mpjpe_loss(pred, target):
    """Mean per-joint position error (Euclidean, last axis)."""
    pred, target = tf.convert_to_tensor(pred), tf.cast(target, tf.as_dtype(pred.dtype))
    _check(pred, target)
    return tf.reduce_mean(tf.norm(pred - target, axis=-1))


def weighted_mpjpe_loss(pred, target, weights):
    """`mean(w * ||p - g||)`; `weights` broadcast against `[..., J]`."""
    pred, target = tf.convert_to_tensor(pred), tf.cast(target, tf.as_dtype(pred.dtype))
    _check(pred, target)
    return tf.reduce_mean(tf.cast(weights, pred.dtype) * tf.norm(pred - target, axis=-1))


def n_mpjpe_loss(pred, target):
    """MPJPE after the least-squares scale per sample and frame (`[B, T, J, 3]` or `[B, J, 3]`)."""
    pred, target = tf.convert_to_tensor(pred), tf.cast(target, tf.as_dtype(pred.dtype))
    num = tf.reduce_sum(pred * target, axis=[-2, -1], keepdims=True)
    den = tf.reduce_sum(pred * pred, axis=[-2, -1], keepdims=True)
    return mpjpe_loss(num / den * pred, target)


def velocity_loss(pred, target, axis: int = 1):
    """MPJVE along `axis` (default 1: `[B, T, J, 3]`)."""
    pred, target = tf.convert_to_tensor(pred), tf.cast(target, tf.as_dtype(pred.dtype))
    n = pred.shape[axis]
    if n is not None and n < 2:
        raise ValueError(f"velocity needs at least 2 frames along axis {axis}, got shape {pred.shape}")

    def diff(x):
        x = tf.experimental.numpy.moveaxis(x, axis, 0)
        return x[1:] - x[:-1]

    return tf.reduce_mean(tf.norm(diff(pred) - diff(target), axis=-1))


def bone_lengths(poses, parents):
    """`[..., J, 3]` -> `[..., B]` lengths of the bones (j, parent[j]) for every non-root joint j."""
    children = [j for j, p in enumerate(parents) if p >= 0]
    parent_idx = [parents[j] for j in children]
    return tf.norm(tf.gather(poses, children, axis=-2) - tf.gather(poses, parent_idx, axis=-2), axis=-1)


def bone_length_loss(pose_labelled, pose_unlabelled, parents):
    """`mean_b |mean_lab(L_b) - mean_unlab(L_b)|`; poses `[B, T, J, 3]` (time-averaged per sample first)."""
    lab = tf.reduce_mean(tf.reduce_mean(bone_lengths(pose_labelled, parents), axis=1), axis=0)
    unlab = tf.reduce_mean(tf.reduce_mean(bone_lengths(pose_unlabelled, parents), axis=1), axis=0)
    return tf.reduce_mean(tf.abs(lab - unlab))


def reprojection_loss(pose, trajectory, camera, keypoints_2d, linear: bool = False):
    """2-D MPJPE of `proj(pose + trajectory)` against the 2-D input.

    Args:
        pose: `[B, T, J, 3]` root-relative 3-D pose (camera space).
        trajectory: `[B, T, 1, 3]` global root position (camera space).
        camera: `[B, 9]` intrinsics in the same units as `keypoints_2d`.
        keypoints_2d: `[B, T, J, 2]` the 2-D poses the models estimated from
            (at the frames they estimate).
    """
    pose = tf.convert_to_tensor(pose)
    cam = tf.cast(camera, pose.dtype)[:, None, :]  # one camera per sample, broadcast over time
    projected = project_to_2d(pose + tf.cast(trajectory, pose.dtype), cam, linear=linear)
    return mpjpe_loss(projected, keypoints_2d)


def back_projection_losses(
    pose_labelled,
    trajectory_labelled,
    target_pose,
    target_trajectory,
    pose_unlabelled,
    trajectory_unlabelled,
    camera_unlabelled,
    keypoints_2d_unlabelled,
    parents,
    use_projection: bool = True,
    use_bone_length: bool = True,
    linear_projection: bool = False,
) -> dict:
    """The terms of VideoPose3D's semi-supervised objective (see the module docstring).

    Returns a dict with `pose` (MPJPE), `trajectory` (1/z-weighted MPJPE),
    `projection` and `bone_length` (zero when disabled) and `total`.
    """
    pose_term = mpjpe_loss(pose_labelled, target_pose)
    depth = tf.cast(target_trajectory, pose_term.dtype)[..., 2]
    traj_term = weighted_mpjpe_loss(trajectory_labelled, target_trajectory, 1.0 / depth)
    zero = tf.zeros([], pose_term.dtype)
    proj = (
        reprojection_loss(pose_unlabelled, trajectory_unlabelled, camera_unlabelled, keypoints_2d_unlabelled,
                          linear=linear_projection)
        if use_projection else zero
    )  # fmt: skip
    bone = bone_length_loss(pose_labelled, pose_unlabelled, parents) if use_bone_length else zero
    return {
        "pose": pose_term,
        "trajectory": traj_term,
        "projection": proj,
        "bone_length": bone,
        "total": pose_term + traj_term + proj + bone,
    }


@register
class MPJPE(keras.losses.Loss):
    """Mean per-joint position error as a Keras loss (for `compile`): `mean ||y_pred - y_true||_2`."""

    def __init__(self, name="mpjpe", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        # Per-sample mean over all but the batch axis; the reduction averages over the batch.
        err = tf.norm(y_pred - tf.cast(y_true, y_pred.dtype), axis=-1)
        return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=-1)
