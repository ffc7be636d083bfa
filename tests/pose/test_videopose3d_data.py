"""Synthetic Human3.6M-like motion, cameras and VideoPose3D's npz format (written and read back offline)."""

import json
import os

import numpy as np
import pytest

from kerasnets.config import apply_overrides
from kerasnets.data import human36m as h36m
from kerasnets.errors import ConfigError
from kerasnets.ops import camera as cam
from kerasnets.recipes.videopose3d import VideoPose3DConfig, flip_cameras, flip_keypoints, frame_windows


@pytest.fixture(scope="module")
def tiny():
    return h36m.synthetic_dataset(("S1", "S9"), actions_per_subject=2, num_frames=60, seed=3, noise_px=0.0,
                                  outlier_rate=0.0)


def test_skeleton_layout():
    assert h36m.NUM_JOINTS == 17 and len(h36m.PARENTS) == 17 and len(h36m.KEPT_32) == 17
    assert h36m.PARENTS[11] == 8 and h36m.PARENTS[14] == 8  # shoulders re-parented to the thorax
    perm = h36m.flip_permutation()
    assert perm[4] == 1 and perm[16] == 13 and np.array_equal(perm[perm], np.arange(17))


def test_synthetic_motion_is_a_rigid_skeleton_in_view(tiny):
    world = tiny.positions_3d["S1"]["Motion1"]
    assert world.shape == (60, 17, 3)
    bones = np.linalg.norm(world[:, 1:] - world[:, list(h36m.PARENTS[1:])], axis=-1)
    np.testing.assert_allclose(bones, np.broadcast_to(bones[:1], bones.shape), atol=1e-5)  # fixed bone lengths
    assert 1.3 < world[:, 10, 2].mean() < 2.0  # head height (z up, metres)
    assert len(tiny.cameras["S1"]) == 4
    for c_idx, camera in enumerate(tiny.cameras["S1"]):
        cam_space, px = h36m.project_pixels(world, camera)
        assert np.all(cam_space[..., 2] > 2.0)  # in front of the camera
        assert np.all((px > 0) & (px < 1000))  # inside the 1000x1000 image
        np.testing.assert_allclose(tiny.positions_2d["S1"]["Motion1"][c_idx], px, atol=1e-3)  # noise off
    # Deterministic by seed, and subjects do not depend on which others are generated.
    again = h36m.synthetic_dataset(("S9",), actions_per_subject=2, num_frames=60, seed=3, noise_px=0.0, outlier_rate=0.0)
    np.testing.assert_array_equal(again.positions_3d["S9"]["Motion2"], tiny.positions_3d["S9"]["Motion2"])


def test_camera_sequences_are_root_relative_and_consistent(tiny):
    seqs = h36m.camera_sequences(tiny, ["S1"])
    assert len(seqs) == 2 * 4
    s = seqs[0]
    assert np.all(s.pose_3d[:, 0] == 0)
    # Normalised 2-D == projection of (pose + trajectory) with the normalised camera (noise is off).
    proj = cam.project_to_2d(s.pose_3d + s.trajectory, s.camera).numpy()
    np.testing.assert_allclose(proj, s.keypoints_2d, atol=1e-5)
    with pytest.raises(ValueError, match="not in the data set"):
        h36m.camera_sequences(tiny, ["S5"])
    assert len(h36m.camera_sequences(tiny, ["S1"], exclude=[("S1", "Motion2")])) == 4


def test_videopose3d_npz_round_trip(tmp_path, tiny):
    paths = h36m.write_videopose3d(str(tmp_path), tiny, source="test")
    with np.load(paths["3d"], allow_pickle=False) as raw:  # the plain layout needs no pickle
        assert str(raw["format"]) == h36m.PLAIN_FORMAT
        assert raw["positions_3d/S1/Motion1"].shape == (60, 32, 3)  # Human3.6M's 32 joints on disk
    with np.load(paths["2d"], allow_pickle=False) as raw:
        meta = json.loads(str(raw["metadata"]))
        assert raw["positions_2d/S1/Motion1/3"].shape == (60, 17, 2)
    assert meta["num_joints"] == 17 and meta["keypoints_symmetry"][0] == list(h36m.LEFT_JOINTS)
    loaded = h36m.load_videopose3d(str(tmp_path), "test")
    _assert_same_dataset(loaded, tiny)
    # Longer detections than mocap are trimmed to the mocap length (as the reference does).
    with np.load(paths["2d"], allow_pickle=False) as raw:
        members = {k: raw[k] for k in raw.files}
    for c in range(4):
        v = members[f"positions_2d/S1/Motion1/{c}"]
        members[f"positions_2d/S1/Motion1/{c}"] = np.concatenate([v, v[:3]])
    np.savez(paths["2d"], **members)
    assert len(h36m.load_videopose3d(str(tmp_path), "test").positions_2d["S1"]["Motion1"][0]) == 60


def _assert_same_dataset(loaded, expected):
    assert sorted(loaded.positions_3d) == sorted(expected.positions_3d)
    for subject in expected.positions_3d:
        assert sorted(loaded.positions_3d[subject]) == sorted(expected.positions_3d[subject])
        for action, world in expected.positions_3d[subject].items():
            np.testing.assert_allclose(loaded.positions_3d[subject][action], world, atol=1e-6)
            assert len(loaded.positions_2d[subject][action]) == len(expected.positions_2d[subject][action])
            for a, b in zip(loaded.positions_2d[subject][action], expected.positions_2d[subject][action]):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(loaded.cameras[subject], expected.cameras[subject]):
            np.testing.assert_allclose(a.intrinsics, b.intrinsics)
            np.testing.assert_allclose(a.orientation, b.orientation)


class _WritesMarker:
    """Unpickling this object opens (creates) `path`: a stand-in for any code a crafted pickle runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _crafted_files(directory, tiny, marker, where):
    """VideoPose3D's files in `directory`, with a code-running pickle in the 3-D or 2-D file."""
    paths = h36m.write_videopose3d(str(directory), tiny, source="test")  # plain; one file replaced below
    evil = np.empty((), dtype=object)
    evil[()] = {"S1": {"Motion1": _WritesMarker(marker)}}
    if where == "3d":
        np.savez(paths["3d"], positions_3d=evil)
    elif where == "2d":
        np.savez(paths["2d"], positions_2d=evil, metadata=np.array({"num_joints": 17}, dtype=object))
    elif where == "plain-member":  # an object array under a plain-layout name
        np.savez(paths["3d"], format=np.array(h36m.PLAIN_FORMAT), **{"positions_3d/S1/Motion1": evil})
    else:  # a bare pickle under the npz name
        import pickle

        with open(paths["3d"], "wb") as f:
            pickle.dump(_WritesMarker(marker), f)
    return paths


@pytest.mark.parametrize("where", ["3d", "2d", "plain-member", "bare-pickle"])
def test_a_crafted_npz_does_not_run_code(tmp_path, tiny, where):
    from kerasnets.recipes.videopose3d import VideoPose3DRecipe

    marker = tmp_path / "marker"
    paths = _crafted_files(tmp_path / "h36m", tiny, marker, where)
    # Sanity: the crafted file really runs code when unpickled (so the check below can fail).
    if where != "bare-pickle":
        probe = paths["3d"] if where != "2d" else paths["2d"]
        with np.load(probe, allow_pickle=True) as raw:
            [raw[k] for k in raw.files]
        assert marker.exists()
        marker.unlink()
    # Through the recipe's data path, as `kerasnets train recipe=videopose3d data=h36m data_dir=...` does.
    config = VideoPose3DConfig(data="h36m", data_dir=str(tmp_path / "h36m"), source="test",
                               train_subjects=("S1",), test_subjects=("S9",))  # fmt: skip
    recipe = VideoPose3DRecipe(config)
    with pytest.raises(h36m.UnsafeDataFileError, match="pickle.*--i-trust-this-file") as info:
        recipe.sequences("test")
    assert not marker.exists()
    assert os.path.basename(paths["2d" if where == "2d" else "3d"]) in str(info.value)
    assert info.value.exit_code == 2


def test_reference_layout_is_refused_then_converted_knowingly(tmp_path, tiny):
    paths = h36m.write_videopose3d(str(tmp_path), tiny, source="test", layout="reference")
    with pytest.raises(h36m.UnsafeDataFileError, match="convert --i-trust-this-file"):
        h36m.load_videopose3d(str(tmp_path), "test")
    with pytest.raises(h36m.UnsafeDataFileError, match="i_trust_this_file"):
        h36m.convert_videopose3d_npz(paths["3d"])
    # The command line refuses without the loud flag (exit 2, nothing written) ...
    out = str(tmp_path / "converted_3d.npz")
    with pytest.raises(SystemExit) as info:
        h36m.main(["convert", paths["3d"], out])
    assert info.value.code == 2 and not os.path.exists(out)
    # ... and converts with it; then the loader reads the plain files and gets the same arrays.
    assert h36m.main(["convert", "--i-trust-this-file", paths["3d"], out]) == 0
    os.replace(out, paths["3d"])
    assert h36m.main(["convert", "--i-trust-this-file", paths["2d"]]) == 0  # in place
    with np.load(paths["2d"], allow_pickle=False) as raw:
        assert json.loads(str(raw["metadata"]))["keypoints_symmetry"][1] == list(h36m.RIGHT_JOINTS)
    _assert_same_dataset(h36m.load_videopose3d(str(tmp_path), "test"), tiny)


def test_loader_errors(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="data_3d_h36m.npz"):
        h36m.load_videopose3d(str(tmp_path), "test")
    paths = h36m.write_videopose3d(str(tmp_path), tiny, source="test")
    with pytest.raises(ValueError, match="subject 'S5' missing"):
        h36m.load_videopose3d(str(tmp_path), "test", subjects=["S5"])
    with open(paths["cameras"]) as f:
        cams = json.load(f)
    del cams["S1"][0]["orientation"]
    with open(paths["cameras"], "w") as f:
        json.dump(cams, f)
    with pytest.raises(ValueError, match="missing keys \\['orientation'\\]"):
        h36m.load_videopose3d(str(tmp_path), "test")

    os.remove(paths["cameras"])
    with pytest.raises(FileNotFoundError, match="cameras_h36m.json"):
        h36m.load_videopose3d(str(tmp_path), "test")


def test_frame_windows_edge_padding():
    seq = h36m.Sequence(np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 17, 2), np.float32),
                        np.zeros((5, 17, 3), np.float32), np.zeros((5, 1, 3), np.float32),
                        np.zeros(9, np.float32), "x")  # fmt: skip
    w = frame_windows([seq, seq], receptive_field=3, causal=False)
    win = w["padded_2d"][w["start"][:, None] + np.arange(3)][:, :, 0, 0]
    np.testing.assert_array_equal(win[:5], [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])
    np.testing.assert_array_equal(win[5:], win[:5])  # the second sequence starts fresh
    w = frame_windows([seq], receptive_field=3, causal=True)
    win = w["padded_2d"][w["start"][:, None] + np.arange(3)][:, :, 0, 0]
    np.testing.assert_array_equal(win[:, -1], np.arange(5))  # each window ends at its own frame


def test_flip_augmentation_is_consistent_with_the_camera(tiny):
    s = h36m.camera_sequences(tiny, ["S1"])[1]
    perm = h36m.flip_permutation()
    pose_f = flip_keypoints(s.pose_3d + s.trajectory, perm).numpy()
    kp_f = flip_keypoints(s.keypoints_2d, perm).numpy()
    cam_f = flip_cameras(s.camera).numpy()
    np.testing.assert_allclose(cam.project_to_2d(pose_f, cam_f).numpy(), kp_f, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"filter_widths": "(3, 4)"}, "odd"),
        ({"test_subjects": "('S1',)"}, "overlap"),
        ({"data": "h36m"}, "data_dir"),
        ({"semi_supervised": "True", "labelled_subjects": "('S9',)"}, "subset of train_subjects"),
        ({"semi_supervised": "True", "labelled_subjects": "('S1','S5','S6','S7','S8')"}, "unlabelled"),
        ({"dropout": "1.5"}, "dropout"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(VideoPose3DConfig(), overrides)


def test_defaults_follow_the_reference():
    c = VideoPose3DConfig()
    assert c.learning_rate == 1e-3 and c.lr_decay == 0.95 and c.amsgrad and c.dropout == 0.25
    assert c.flip_augment and c.flip_test
    assert c.train_subjects == ("S1", "S5", "S6", "S7", "S8") and c.test_subjects == ("S9", "S11")
