"""VideoPose3D metrics and losses on hand-computed cases: MPJPE, P-MPJPE, N-MPJPE, MPJVE, camera, back-projection."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses import pose3d as losses
from kerasnets.metrics import pose3d as metrics
from kerasnets.ops import camera as cam


def _rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k  # Rodrigues


def test_mpjpe_hand_case():
    g = np.zeros((1, 2, 3))
    p = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # errors 5 and 1
    assert metrics.mpjpe(p, g) == pytest.approx(3.0)
    assert float(losses.mpjpe_loss(tf.constant(p), tf.constant(g))) == pytest.approx(3.0)
    # weighted: w = (1, 3) -> (5 + 3) / 2
    assert metrics.weighted_mpjpe(p, g, [[1.0, 3.0]]) == pytest.approx(4.0)
    assert float(losses.weighted_mpjpe_loss(tf.constant(p), tf.constant(g), tf.constant([[1.0, 3.0]], tf.float64))) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.mpjpe(p, np.zeros((1, 3, 3)))


def test_p_mpjpe_removes_similarity_transform_only():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 17, 3))
    r = _rotation([1.0, 2.0, -0.5], 0.7)
    p = 2.5 * g @ r + np.array([0.3, -1.0, 4.0])  # scaled, rotated, translated copy
    assert metrics.mpjpe(p, g) > 1.0
    assert metrics.p_mpjpe(p, g) == pytest.approx(0.0, abs=1e-9)
    # N-MPJPE fixes the scale only: a pure scaling gives 0, a rotation does not.
    assert metrics.n_mpjpe(0.5 * g, g) == pytest.approx(0.0, abs=1e-12)
    assert metrics.n_mpjpe(g @ r, g) > 0.1
    # A mirror image is not a rotation: P-MPJPE stays > 0 (reflections excluded).
    mirror = g * np.array([-1.0, 1.0, 1.0])
    assert metrics.p_mpjpe(mirror, g) > 0.05
    # Alignment never increases the error, and equals MPJPE of the aligned pose.
    noisy = p + rng.normal(scale=0.05, size=p.shape)
    aligned = metrics.procrustes_align(noisy, g)
    assert metrics.p_mpjpe(noisy, g) == pytest.approx(metrics.mpjpe(aligned, g))
    assert metrics.p_mpjpe(noisy, g) < metrics.n_mpjpe(noisy, g) < metrics.mpjpe(noisy, g)


def test_procrustes_matches_brute_force_optimum():
    """The closed form beats every rotation on a grid (with optimal scale and translation for each)."""
    rng = np.random.default_rng(1)
    g = rng.normal(size=(1, 6, 3))
    p = g @ _rotation([0, 0, 1], 0.4) + rng.normal(scale=0.3, size=g.shape)
    best = metrics.mpjpe(metrics.procrustes_align(p, g), g)
    p0, g0 = p[0] - p[0].mean(0), g[0] - g[0].mean(0)
    for angle in np.linspace(-np.pi, np.pi, 73):
        for axis in ([0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1]):
            rp = p0 @ _rotation(axis, angle)
            a = np.sum(rp * g0) / np.sum(rp * rp)
            # The Procrustes solution minimises squared error; MPJPE of the optimum is close to the grid's best.
            sq = np.sum((a * rp - g0) ** 2)
            assert np.sum((metrics.procrustes_align(p, g)[0] - g[0]) ** 2) <= sq + 1e-9
    assert best < metrics.mpjpe(p, g)


def test_n_mpjpe_scale_formula():
    g = np.array([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    p = np.array([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    s = (2 + 4) / (4 + 4)  # sum(p.g) / sum(p.p)
    expected = np.mean(np.linalg.norm(s * p - g, axis=-1))
    assert metrics.n_mpjpe(p, g) == pytest.approx(expected)
    assert float(losses.n_mpjpe_loss(tf.constant(p[None]), tf.constant(g[None]))) == pytest.approx(expected)


def test_velocity_error():
    t = np.arange(5, dtype=np.float64)
    g = np.zeros((5, 1, 3))
    p = np.zeros((5, 1, 3))
    p[:, 0, 0] = t * 0.5  # constant velocity 0.5 vs 0
    p[3, 0, 1] = 1.0  # one spike: velocity error +1 then -1 in y
    dv = np.diff(p, axis=0)
    expected = np.mean(np.linalg.norm(dv, axis=-1))
    assert metrics.mean_velocity_error(p, g) == pytest.approx(expected)
    assert expected == pytest.approx((0.5 + 0.5 + np.sqrt(1.25) * 2) / 4)
    # A constant offset has no velocity error.
    assert metrics.mean_velocity_error(g + 3.0, g) == 0.0
    assert float(losses.velocity_loss(tf.constant(p[None]), tf.constant(g[None]))) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least 2 frames"):
        metrics.mean_velocity_error(p[:1], g[:1])


def test_projection_hand_case_and_normalisation():
    point = np.array([[0.5, -0.25, 2.0]])  # u = (0.25, -0.125)
    k = np.array([0.1, 0.01, 0.001])
    p = np.array([0.002, -0.003])
    camera = np.array([1000.0, 1010.0, 500.0, 510.0, *k, *p])
    u = np.array([0.25, -0.125])
    r2 = u @ u
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = p @ u
    expected = camera[:2] * (u * (radial + tan) + p * r2) + camera[2:4]
    got = cam.project_to_2d(point, camera).numpy()[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(cam.project_to_2d(point, camera, linear=True).numpy()[0], camera[:2] * u + camera[2:4])
    # Projecting with normalised intrinsics == normalising the pixel projection.
    w, h = 1000, 1002
    norm = cam.project_to_2d(point, cam.normalize_intrinsics(camera, w, h)).numpy()[0]
    np.testing.assert_allclose(norm, cam.normalize_screen_coordinates(got, w, h), atol=1e-12)
    np.testing.assert_allclose(cam.normalize_screen_coordinates([[0, 0], [w, h]], w, h), [[-1, -h / w], [1, h / w]])
    np.testing.assert_allclose(cam.image_coordinates(cam.normalize_screen_coordinates(got, w, h), w, h), got)
    # The flipped camera projects mirrored points to mirrored 2-D points.
    ncam = cam.normalize_intrinsics(camera, w, h)
    mirrored = cam.project_to_2d(point * [-1, 1, 1], cam.flip_camera(ncam)).numpy()[0]
    np.testing.assert_allclose(mirrored, norm * [-1, 1], atol=1e-12)


def test_quaternion_world_camera_round_trip():
    r = _rotation([0.3, -1.0, 0.2], 1.1)
    q = cam.rotation_matrix_to_quaternion(r)
    v = np.array([[0.1, 2.0, -0.7], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(cam.quaternion_rotate(np.broadcast_to(q, (2, 4)), v), v @ r.T, atol=1e-12)
    t = np.array([1.0, 2.0, 3.0])
    x_cam = cam.world_to_camera(v, q, t)
    np.testing.assert_allclose(x_cam, (v - t) @ r, atol=1e-12)
    np.testing.assert_allclose(cam.camera_to_world(x_cam, q, t), v, atol=1e-12)


def test_bone_length_loss_hand_case():
    parents = (-1, 0, 1)
    lab = np.zeros((2, 1, 3, 3))
    lab[:, 0, 1] = [1.0, 0, 0]
    lab[:, 0, 2] = [1.0, 2.0, 0]  # bones 1 and 2
    unlab = np.zeros((1, 2, 3, 3))
    unlab[0, :, 1] = [[0.5, 0, 0], [1.5, 0, 0]]  # bone 1: mean over time 1.0
    unlab[0, :, 2] = unlab[0, :, 1] + [[0, 1.0, 0], [0, 1.0, 0]]  # bone 2: 1.0 vs labelled 2.0
    loss = losses.bone_length_loss(tf.constant(lab), tf.constant(unlab), parents)
    assert float(loss) == pytest.approx((0.0 + 1.0) / 2)


def test_back_projection_losses_hand_case():
    """A pose + trajectory that projects exactly onto its 2-D input has zero reprojection loss; a shift does not."""
    parents = (-1, 0)
    camera = np.array([[1.2, 1.2, 0.05, -0.02, 0.01, 0.0, 0.0, 0.001, 0.0]])
    pose = np.array([[[[0.0, 0.0, 0.0], [0.1, -0.3, 0.05]]]])  # [B=1, T=1, J=2, 3], root-relative
    traj = np.array([[[[0.2, 0.1, 4.0]]]])
    kp2d = cam.project_to_2d(pose + traj, camera[:, None]).numpy()
    terms = losses.back_projection_losses(
        pose, traj, pose, traj, pose, traj, camera, kp2d, parents
    )
    for k in ("pose", "trajectory", "projection", "bone_length", "total"):
        assert float(terms[k]) == pytest.approx(0.0, abs=1e-12), k
    # Trajectory 0.4 m off at z_gt = 4 -> weighted error 0.4 / 4.
    moved = traj + [0.0, 0.0, 0.4]
    terms = losses.back_projection_losses(pose, moved, pose, traj, pose, traj, camera, kp2d, parents)
    assert float(terms["trajectory"]) == pytest.approx(0.1)
    # Reprojection error = mean 2-D distance to the input (hand value from the projection formula).
    off = cam.project_to_2d(pose + moved, camera[:, None]).numpy()
    terms = losses.back_projection_losses(pose, traj, pose, traj, pose, moved, camera, kp2d, parents)
    assert float(terms["projection"]) == pytest.approx(np.mean(np.linalg.norm(off - kp2d, axis=-1)))
    assert float(terms["projection"]) > 0
    terms = losses.back_projection_losses(pose, traj, pose, traj, pose, moved, camera, kp2d, parents,
                                          use_projection=False, use_bone_length=False)
    assert float(terms["projection"]) == 0.0 and float(terms["total"]) == 0.0
    # A shrunken unlabelled pose pays the bone-length term: |0.32 - 0.16|.
    half = pose * 0.5
    terms = losses.back_projection_losses(pose, traj, pose, traj, half, traj, camera, kp2d, parents)
    bone = np.linalg.norm(pose[0, 0, 1])
    assert float(terms["bone_length"]) == pytest.approx(bone / 2)


def test_gradients_flow_through_the_projection():
    camera = tf.constant([[1.1, 1.1, 0.0, 0.0, -0.2, 0.2, 0.0, 0.001, -0.001]])
    traj = tf.Variable([[[[0.0, 0.0, 5.0]]]])
    pose = tf.constant([[[[0.0, 0.0, 0.0], [0.2, 0.3, 0.1]]]])
    target = tf.constant([[[[0.05, 0.0], [0.1, 0.07]]]])
    with tf.GradientTape() as tape:
        loss = losses.reprojection_loss(pose, traj, camera, target)
    grad = tape.gradient(loss, traj)
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)


def test_mpjpe_keras_loss():
    y = np.zeros((2, 1, 2, 3), np.float32)
    p = np.zeros((2, 1, 2, 3), np.float32)
    p[0, 0, 0] = [3, 4, 0]
    assert float(losses.MPJPE()(y, p)) == pytest.approx(5.0 / 4)
