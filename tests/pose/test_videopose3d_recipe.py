"""videopose3d recipe: schedules, train/eval alignment, tiny supervised and semi-supervised runs,
the h36m npz path, SavedModel + TFLite export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets import registry
from kerasnets.data import human36m as h36m
from kerasnets.metrics import pose3d as pose_metrics
from kerasnets.models import videopose3d as vp
from kerasnets.recipes.videopose3d import VideoPose3DConfig, VideoPose3DRecipe, frame_windows
from kerasnets.training import engine

TINY = dict(
    filter_widths=(3, 3), channels=16, batch_size=32, num_frames=40, actions_per_subject=1,
    train_subjects=("S1", "S5"), test_subjects=("S9",), strategy="default", log_every=2, checkpoint_every=1000,
)  # fmt: skip


def test_registered():
    assert registry.get("videopose3d") is VideoPose3DRecipe


def test_lr_and_bn_momentum_schedules():
    recipe = VideoPose3DRecipe(VideoPose3DConfig(steps=100, epoch_steps=10, **TINY))
    model = recipe.build_model()
    opt = model.optimizer
    assert opt.amsgrad
    # lr 1e-3 x 0.95 per epoch (10 steps here), staircase.
    assert float(opt.learning_rate) == pytest.approx(1e-3)
    assert float(opt._learning_rate(tf.constant(25))) == pytest.approx(1e-3 * 0.95**2)
    # BN momentum (PyTorch) 0.1 exp(-e/E ln(0.1/0.001)): epoch 0 -> 0.1, epoch 5 of 10 -> 0.01.
    assert float(model.bn_momentum(tf.constant(0, tf.int64))) == pytest.approx(0.9)
    assert float(model.bn_momentum(tf.constant(55, tf.int64))) == pytest.approx(1 - 0.01, abs=1e-6)
    # Default epoch = labelled frames / batch: 2 subjects x 1 action x 4 cameras x 40 frames / 32.
    assert VideoPose3DRecipe(VideoPose3DConfig(**TINY)).epoch_steps() == 320 // 32


@pytest.mark.parametrize("causal", [False, True])
def test_training_windows_align_with_evaluation(causal):
    """The strided model on a training window predicts exactly what the padded dilated model gives that frame."""
    recipe = VideoPose3DRecipe(VideoPose3DConfig(causal=causal, flip_test=False, **TINY))
    model = recipe.build_model()
    rng = np.random.default_rng(0)
    for block in vp.temporal_blocks(model.pose_model):
        for w in block.non_trainable_weights:
            if "moving_mean" in w.name:
                w.assign(rng.normal(scale=0.1, size=w.shape))
    seq = recipe.sequences("test")[0]
    full = recipe.lift(model, seq.keypoints_2d[None])["pose"].numpy()[0]
    w = frame_windows([seq], recipe.config.receptive_field(), causal)
    windows = w["padded_2d"][w["start"][:, None] + np.arange(recipe.config.receptive_field())]
    single = model.pose_train(windows, training=False).numpy()[:, 0]
    np.testing.assert_allclose(single, full, rtol=1e-4, atol=1e-5)
    # And the dataset's (unflipped) target for a window is that frame's pose.
    np.testing.assert_array_equal(w["pose"], seq.pose_3d)


@pytest.mark.slow
def test_tiny_supervised_run_loss_falls(tmp_path):
    recipe = VideoPose3DRecipe(VideoPose3DConfig(steps=40, seed=1, **TINY))
    result = engine.train(recipe, str(tmp_path / "run"))
    losses = [row["mpjpe"] for row in result.history]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    s = result.summary
    assert s["receptive_field"] == 9 and s["test_frames"] == 4 * 40
    assert 0 < s["p_mpjpe_mm"] < s["mpjpe_mm"] and 0 < s["n_mpjpe_mm"] <= s["mpjpe_mm"] + 1e-6
    assert os.path.exists(s["training_png"]) and os.path.exists(s["prediction_png"])
    # evaluate() is the metric of the flip-averaged dilated prediction over the test frames.
    seqs = recipe.sequences("test")
    pred = np.concatenate([p["pose"] for p in recipe.predict_sequences(result.model, seqs)])
    gt = np.concatenate([q.pose_3d for q in seqs])
    assert s["mpjpe_mm"] == pytest.approx(1000 * pose_metrics.mpjpe(pred, gt), rel=1e-6)
    batch = next(iter(recipe.build_dataset("train")))
    assert batch["windows"].shape == (32, 9, 17, 2) and batch["pose"].shape == (32, 1, 17, 3)


@pytest.mark.slow
def test_tiny_semi_supervised_run(tmp_path):
    config = VideoPose3DConfig(steps=30, seed=2, semi_supervised=True, labelled_subjects=("S1",), epoch_steps=5,
                               warmup_epochs=1, **TINY)  # fmt: skip
    recipe = VideoPose3DRecipe(config)
    batch = next(iter(recipe.build_dataset("train")))
    assert batch["unlabelled_windows"].shape == (32, 9, 17, 2) and batch["unlabelled_camera"].shape == (32, 9)
    result = engine.train(recipe, str(tmp_path / "run"))
    rows = result.history
    for key in ("mpjpe", "trajectory", "projection", "bone_length"):
        assert all(np.isfinite(r[key]) for r in rows), key
    # Warm-up (5 steps) is supervised only: loss = mpjpe + trajectory; afterwards all four terms count.
    first, last = rows[0], rows[-1]
    assert first["loss"] == pytest.approx(first["mpjpe"] + first["trajectory"], rel=1e-5)
    assert last["loss"] == pytest.approx(last["mpjpe"] + last["trajectory"] + last["projection"] + last["bone_length"], rel=1e-5)
    assert np.mean([r["projection"] for r in rows[-3:]]) < np.mean([r["projection"] for r in rows[:3]])
    assert "trajectory_mpjpe_mm" in result.summary


def test_h36m_npz_data_feeds_the_recipe(tmp_path):
    data = h36m.synthetic_dataset(("S1", "S5", "S9"), actions_per_subject=1, num_frames=40, seed=9)
    h36m.write_videopose3d(str(tmp_path / "h36m"), data, source="cpn_ft_h36m_dbb")
    recipe = VideoPose3DRecipe(VideoPose3DConfig(data="h36m", data_dir=str(tmp_path / "h36m"), **TINY))
    assert len(recipe.sequences("labelled")) == 2 * 4 and len(recipe.sequences("test")) == 4
    expected = h36m.camera_sequences(data, ["S9"])
    np.testing.assert_allclose(recipe.sequences("test")[2].pose_3d, expected[2].pose_3d, atol=1e-5)
    np.testing.assert_allclose(recipe.sequences("test")[2].keypoints_2d, expected[2].keypoints_2d, atol=1e-6)
    batch = next(iter(recipe.build_dataset("train")))
    assert batch["windows"].shape == (32, 9, 17, 2)
    missing = VideoPose3DRecipe(VideoPose3DConfig(data="h36m", data_dir=str(tmp_path / "nowhere"), **TINY))
    with pytest.raises(FileNotFoundError, match="data_3d_h36m.npz"):
        missing.sequences("test")


@pytest.mark.slow
def test_export_savedmodel_and_tflite_round_trip(tmp_path):
    from kerasnets.export import export_run, run_tflite

    recipe = VideoPose3DRecipe(VideoPose3DConfig(steps=1, **TINY))
    model = recipe.build_model()
    report = export_run(recipe, model, formats=["tflite"], export_root=str(tmp_path))
    assert report.signatures["serving_default"] == ["keypoints_2d"]
    assert report.max_error("savedmodel") <= 1e-5 and report.max_error("tflite") <= 1e-4
    # The SavedModel lifts any length, one 3-D pose per input frame.
    loaded = tf.saved_model.load(report.saved_model_dir)
    seq = recipe.sequences("test")[0].keypoints_2d[None, :5]
    out = loaded.signatures["serving_default"](keypoints_2d=tf.constant(seq))
    assert out["joints_3d"].shape == (1, 5, 17, 3)
    expected = recipe.lift(model, seq)["pose"].numpy()
    np.testing.assert_allclose(out["joints_3d"].numpy(), expected, atol=1e-5)
    sample = next(recipe.representative_dataset(1))
    tfl = run_tflite(report.tflite["tflite"], sample)
    assert tfl["joints_3d"].shape == sample["keypoints_2d"].shape[:-1] + (3,)


@pytest.mark.slow
def test_two_replicas(tmp_path, two_cpu_strategy):
    """MirroredStrategy: BN statistics and the annealed momentum (mean-aggregated) update on 2 replicas."""
    config = VideoPose3DConfig(steps=4, seed=4, epoch_steps=2, eval_max_sequences=1,
                               **{**TINY, "strategy": "mirrored"})  # fmt: skip
    recipe = VideoPose3DRecipe(config)
    result = engine.train(recipe, str(tmp_path / "run"), strategy=two_cpu_strategy)
    assert all(np.isfinite(v) for v in result.final_logs.values())
    block = vp.temporal_blocks(result.model.pose_model)[1]
    # Annealed momentum in epoch 1 of 2 (2 steps per epoch): PyTorch 0.1 exp(-1/2 ln 100) = 0.01 -> Keras 0.99.
    assert float(block.bn_momentum.numpy()) == pytest.approx(0.99, abs=1e-6)
    assert np.isfinite(result.summary["mpjpe_mm"])
