"""Pinhole camera with Human3.6M's distortion model, screen normalisation, quaternion rotations.

Camera parameters follow VideoPose3D's 9-vector `[f_x, f_y, c_x, c_y, k_1,
k_2, k_3, p_1, p_2]` (focal length, principal point, radial and tangential
distortion). A camera-space point `X = (x, y, z)` (z forward, y down)
projects as

    u = clip((x, y) / z, -1, 1),        r^2 = |u|^2
    radial = 1 + k_1 r^2 + k_2 r^4 + k_3 r^6,    tan = p_1 u_x + p_2 u_y
    xy = f * (u * (radial + tan) + p * r^2) + c

(`linear=True`: `xy = f * u + c`). The model is differentiable, so the
semi-supervised back-projection loss can run through it.

Screen normalisation (VideoPose3D's `normalize_screen_coordinates`) maps an
image of width `w` and height `h` to `X / w * 2 - [1, h / w]`: `[0, w] -> [-1, 1]`
with the aspect ratio kept. Intrinsics in the same units are `f / w * 2` and
the normalised `c`; distortion coefficients are unit-free and unchanged, so
projecting with normalised intrinsics equals normalising the pixel projection.

Functions take NumPy arrays or tensors (`keras.ops`) and broadcast the camera
over leading dimensions: points `[..., J, 3]` with a camera `[..., 9]`
(one camera per leading index).
"""

from __future__ import annotations

import numpy as np
from keras import ops

NUM_CAMERA_PARAMS = 9


def _camera_parts(camera, rank):
    camera = ops.convert_to_tensor(camera)
    if camera.shape[-1] != NUM_CAMERA_PARAMS:
        raise ValueError(f"camera must end in {NUM_CAMERA_PARAMS} values [f(2), c(2), k(3), p(2)], got {camera.shape}")
    # Broadcast [..., 9] against points [..., J, 3].
    camera = ops.expand_dims(camera, -2)
    return camera[..., 0:2], camera[..., 2:4], camera[..., 4:7], camera[..., 7:9]


def project_to_2d(points, camera, linear: bool = False):
    """Project camera-space points `[..., J, 3]` with cameras `[..., 9]` -> `[..., J, 2]`."""
    points = ops.convert_to_tensor(points)
    if points.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {points.shape}")
    f, c, k, p = _camera_parts(ops.cast(camera, points.dtype), len(points.shape))
    u = ops.clip(points[..., :2] / points[..., 2:3], -1.0, 1.0)
    if linear:
        return f * u + c
    r2 = ops.sum(u * u, axis=-1, keepdims=True)
    radial = 1.0 + k[..., 0:1] * r2 + k[..., 1:2] * r2**2 + k[..., 2:3] * r2**3
    tan = ops.sum(p * u, axis=-1, keepdims=True)
    return f * (u * (radial + tan) + p * r2) + c


def normalize_screen_coordinates(xy, width, height):
    """Pixels `[..., 2]` -> `xy / w * 2 - [1, h / w]` (NumPy)."""
    xy = np.asarray(xy, np.float64)
    if xy.shape[-1] != 2:
        raise ValueError(f"screen coordinates must end in 2 values, got {xy.shape}")
    return xy / width * 2.0 - np.array([1.0, height / width])


def image_coordinates(xy, width, height):
    """Inverse of `normalize_screen_coordinates` (NumPy)."""
    xy = np.asarray(xy, np.float64)
    return (xy + np.array([1.0, height / width])) * width / 2.0


def normalize_intrinsics(camera, width, height):
    """Pixel intrinsics `[..., 9]` -> the same camera in normalised screen units."""
    cam = np.array(camera, np.float64)
    if cam.shape[-1] != NUM_CAMERA_PARAMS:
        raise ValueError(f"camera must end in 9 values, got {cam.shape}")
    cam[..., 0:2] = cam[..., 0:2] / width * 2.0
    cam[..., 2:4] = normalize_screen_coordinates(cam[..., 2:4], width, height)
    return cam


def flip_camera(camera):
    """Intrinsics of the horizontally mirrored image (normalised units): negate `c_x` and `p_1`.

    Projecting mirrored points `(-x, y, z)` with the flipped camera gives the
    mirrored 2-D points `(-u, v)` of the original projection.
    """
    cam = np.array(camera, np.float64)
    cam[..., 2] *= -1.0
    cam[..., 7] *= -1.0
    return cam


# ---------------------------------------------------------------- rotations (NumPy)


def quaternion_rotate(q, v):
    """Rotate vectors `v [..., 3]` by unit quaternions `q [..., 4]` (w, x, y, z)."""
    q = np.asarray(q, np.float64)
    v = np.asarray(v, np.float64)
    w, qv = q[..., :1], q[..., 1:]
    uv = np.cross(qv, v)
    uuv = np.cross(qv, uv)
    return v + 2.0 * (w * uv + uuv)


def quaternion_conjugate(q):
    q = np.array(q, np.float64)
    q[..., 1:] *= -1.0
    return q


def rotation_matrix_to_quaternion(r):
    """Unit quaternion (w, x, y, z) of a 3x3 rotation matrix."""
    r = np.asarray(r, np.float64)
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0
    y = np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0
    z = np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0
    x = np.copysign(x, r[2, 1] - r[1, 2])
    y = np.copysign(y, r[0, 2] - r[2, 0])
    z = np.copysign(z, r[1, 0] - r[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def world_to_camera(points, orientation, translation):
    """World points -> camera space for a camera at `translation` whose rotation camera->world is `orientation`."""
    return quaternion_rotate(np.broadcast_to(quaternion_conjugate(orientation), np.shape(points)[:-1] + (4,)),
                             np.asarray(points, np.float64) - np.asarray(translation, np.float64))  # fmt: skip


def camera_to_world(points, orientation, translation):
    q = np.broadcast_to(np.asarray(orientation, np.float64), np.shape(points)[:-1] + (4,))
    return quaternion_rotate(q, points) + np.asarray(translation, np.float64)
