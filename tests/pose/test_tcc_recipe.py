"""TCC embedder, context sampling, synthetic videos, TFRecord reader, config, tiny run and export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.data import action_videos
from kerasnets.errors import ConfigError
from kerasnets.models import tcc as tcc_models
from kerasnets.recipes.tcc import TCCConfig, TCCRecipe, sample_steps
from kerasnets.training import engine

TINY = dict(frame_size=16, base_filters=(4, 4, 4), conv_filters=(8,), fc_units=(16,), embedding_dim=8,
            num_frames=6, batch_size=2, num_train=4, num_val=3, min_len=10, max_len=14,
            strategy="default", log_every=1, checkpoint_every=1000)  # fmt: skip


def test_context_indices_by_hand():
    idx = tcc_models.context_indices(tf.constant([[0, 4, 9]]), num_context=3, stride=2).numpy()
    np.testing.assert_array_equal(idx[0], [[0, 0, 0], [0, 2, 4], [5, 7, 9]])
    frames = tf.reshape(tf.range(2 * 10, dtype=tf.float32), (2, 10, 1, 1, 1))
    clips = tcc_models.gather_context(frames, tf.constant([[3, 5], [0, 9]]), 2, 3).numpy()[..., 0, 0, 0]
    np.testing.assert_array_equal(clips, [[[0, 3], [2, 5]], [[10, 10], [16, 19]]])


def test_embedder_shapes_and_reference_layout():
    emb = tcc_models.build_tcc_embedder((16, 16, 3), num_context=2, base_filters=(4, 4), conv_filters=(8, 8),
                                        fc_units=(16, 16), embedding_dim=128)  # fmt: skip
    assert emb.output_shape == (None, 128)
    assert [emb.get_layer(f"context_conv{i}").kernel_size for i in (0, 1)] == [(3, 3, 3)] * 2
    assert emb.get_layer("fc0").activation.__name__ == "relu" and emb.get_layer("embedding").activation.__name__ == "linear"
    assert emb.get_layer("fc_dropout0").rate == 0.1
    clips = tf.zeros((2, 5, 2, 16, 16, 3))
    assert tcc_models.embed_clips(emb, clips).shape == (2, 5, 128)
    with pytest.raises(ValueError, match="base"):
        tcc_models.build_frame_base((16, 16, 3), base="vgg")


@pytest.mark.slow
def test_resnet50v2_base_is_cut_at_conv4c():
    base = tcc_models.build_frame_base((64, 64, 3), base="resnet50v2")
    assert base.output_shape == (None, 4, 4, 1024)  # conv4_block3_out: 1/16, 1024 channels


def test_sample_steps_are_sorted_distinct_and_inside_each_video():
    lengths = tf.constant([7, 12, 5], tf.int32)
    steps = sample_steps(lengths, 5, 12, tf.constant([1, 2], tf.int64)).numpy()
    for row, n in zip(steps, [7, 12, 5]):
        assert np.all(np.diff(row) > 0) and row.min() >= 0 and row.max() < n
    np.testing.assert_array_equal(steps[2], np.arange(5))
    again = sample_steps(lengths, 5, 12, tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(steps, again)


def test_synthetic_videos_are_time_warped_versions_of_one_action():
    v = action_videos.generate(3, size=24, min_len=20, max_len=30, seed=4)
    again = action_videos.generate(3, size=24, min_len=20, max_len=30, seed=4)
    np.testing.assert_array_equal(v.frames[1], again.frames[1])
    for frames, phases, progress, kp in zip(v.frames, v.phases, v.progress, v.keypoints):
        assert 20 <= len(frames) <= 30 and frames.shape[1:] == (24, 24, 3) and frames.dtype == np.uint8
        assert np.all(np.diff(progress) > 0) and progress[0] == 0 and progress[-1] == pytest.approx(1)
        assert np.all(np.diff(phases) >= 0) and set(phases) == {0, 1, 2, 3}  # phases in order, all visited
        assert kp.shape == (len(frames), 17, 2)
    # Different speeds: the same phase boundary falls at different fractions of each video.
    fractions = [np.argmax(p >= 2) / len(p) for p in v.phases]
    assert np.ptp(fractions) > 0.01
    with pytest.raises(ValueError, match="min_len"):
        action_videos.generate(1, min_len=10, max_len=5)


def test_tcc_tfrecord_round_trip(tmp_path):
    v = action_videos.generate(2, size=24, min_len=8, max_len=9, seed=1)
    action_videos.write_tcc_tfrecord(tmp_path / "squat_train-0-of-1.tfrecord", v)
    back = action_videos.read_tcc_tfrecords(str(tmp_path), "squat", "train")
    assert back.names == v.names
    for a, b, pa, pb in zip(v.frames, back.frames, v.phases, back.phases):
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 6  # JPEG
        np.testing.assert_array_equal(pa, pb)
    small = action_videos.read_tcc_tfrecords(str(tmp_path), "squat", "train", size=16)
    assert small.frames[0].shape[1:] == (16, 16, 3)
    with pytest.raises(FileNotFoundError, match="squat_val"):
        action_videos.read_tcc_tfrecords(str(tmp_path), "squat", "val")


@pytest.mark.parametrize(
    "overrides, match",
    [({"num_frames": "50"}, "min_len"), ({"data": "tcc_tfrecords"}, "data_dir"), ({"min_len": "80"}, "max_len"),
     ({"num_phases": "5"}, "4 phases"), ({"loss_type": "'triplet'"}, "loss_type"), ({"batch_size": "1"}, "batch_size")],
)  # fmt: skip
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TCCConfig(), overrides)


def test_defaults_follow_the_reference():
    c = TCCConfig()
    assert (c.temperature, c.variance_lambda, c.label_smoothing, c.similarity) == (0.1, 0.001, 0.1, "l2")
    assert (c.loss_type, c.num_frames, c.num_context, c.embedding_dim, c.l2) == ("regression_mse_var", 20, 2, 128, 1e-5)


def test_dataset_batches(tmp_path):
    recipe = TCCRecipe(TCCConfig(**TINY))
    clips, steps, lengths = next(iter(recipe.build_dataset("train")))
    assert clips.shape == (2, 6, 2, 16, 16, 3) and steps.shape == (2, 6) and lengths.shape == (2,)
    assert float(tf.reduce_max(clips)) <= 1.0 and np.all(steps.numpy() < lengths.numpy()[:, None])


@pytest.mark.slow
def test_tiny_run_evaluation_and_export(tmp_path):
    from kerasnets.export import export_run

    recipe = TCCRecipe(TCCConfig(steps=4, **TINY))
    result = engine.train(recipe, str(tmp_path / "run"))
    assert all(np.isfinite(r["tcc_loss"]) for r in result.history)
    s = result.summary
    assert -1.0 <= s["kendalls_tau"] <= 1.0 and 0.0 <= s["phase_classification"] <= 1.0
    assert np.isfinite(s["phase_progression"]) and os.path.exists(s["alignment_png"])
    report = export_run(recipe, result.model, formats=["savedmodel"], export_root=str(tmp_path / "export"))
    assert report.max_error("savedmodel") <= 1e-5
    # The endpoint embeds whole videos; frame t equals the training path's embedding of its context clip.
    frames = next(recipe.representative_dataset(1))["frames"]
    emb = recipe.embed(result.model, action_videos.ActionVideos([(frames[0] * 255).round().astype(np.uint8)],
                                                                [], [], [], []))[0]  # fmt: skip
    out = recipe.export_endpoints(result.model)["serving_default"].fn(tf.constant(frames))["embeddings"].numpy()[0]
    np.testing.assert_allclose(out, emb, atol=1e-4)
