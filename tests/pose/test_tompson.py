"""Tompson 2014: spatial-model energy by hand, displacement priors, stage schedule, shapes, tiny run, export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.layers import MRFSpatialModel
from kerasnets.layers.mrf_spatial_model import inverse_softplus
from kerasnets.models import tompson as tompson_models
from kerasnets.recipes.tompson import TompsonConfig, TompsonRecipe, stage_of_step
from kerasnets.testing import run_layer_test
from kerasnets.training import engine

TINY = dict(image_size=32, bank_filters=(4, 4, 4), fc_filters=(8,), batch_size=4, num_train=16, num_val=8,
            strategy="default", log_every=1, checkpoint_every=1000)  # fmt: skip


def _xcorr_same(x, k):
    """Zero-padded 'same' cross-correlation of one map with an odd kernel, by loops."""
    h, w = x.shape
    kh, kw = k.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            for a in range(kh):
                for b in range(kw):
                    y, z = i + a - kh // 2, j + b - kw // 2
                    if 0 <= y < h and 0 <= z < w:
                        out[i, j] += k[a, b] * x[y, z]
    return out


def test_spatial_model_energy_by_hand():
    rng = np.random.default_rng(0)
    pairs = [(0, 0), (0, 1), (1, 1)]
    kernels = rng.uniform(0.05, 1.0, size=(3, 3, 3))  # SoftPlus(w) per pair
    biases = np.array([0.1, 0.2, 0.3])  # SoftPlus(b) per pair
    layer = MRFSpatialModel(
        2, (3, 3), pairs,
        kernel_initializer=tf.keras.initializers.Constant(inverse_softplus(kernels)[..., None]),
        bias_initializer=tf.keras.initializers.Constant(inverse_softplus(biases)),
    )  # fmt: skip
    e = rng.normal(size=(1, 5, 5, 2))  # negative values are cut by the ReLU
    got = layer(tf.constant(e, tf.float32)).numpy()[0]
    relu = np.maximum(e[0], 0.0)
    # e_0 = (k_00 * e_0 + b_00)(k_01 * e_1 + b_01); e_1 = k_11 * e_1 + b_11.
    want0 = (_xcorr_same(relu[..., 0], kernels[..., 0]) + 0.1) * (_xcorr_same(relu[..., 1], kernels[..., 1]) + 0.2)
    want1 = _xcorr_same(relu[..., 1], kernels[..., 2]) + 0.3
    np.testing.assert_allclose(got[..., 0], want0, rtol=1e-5)
    np.testing.assert_allclose(got[..., 1], want1, rtol=1e-5)


def test_spatial_model_layer_contract():
    out = run_layer_test(
        MRFSpatialModel, {"num_joints": 3, "kernel_size": (5, 3), "pairs": [(0, 0), (1, 0), (2, 2), (2, 1)]},
        np.random.default_rng(1).uniform(size=(2, 6, 6, 3)).astype("float32"),
        expected_output_shape=(2, 6, 6, 3), expected_num_trainable_weights=2,
    )  # fmt: skip
    assert np.all(out > 0)
    with pytest.raises(ValueError, match="no conditioning pair"):
        MRFSpatialModel(3, 3, pairs=[(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="odd"):
        MRFSpatialModel(3, (4, 3))
    with pytest.raises(ValueError, match="heatmap channels"):
        MRFSpatialModel(3, 3)(tf.zeros((1, 4, 4, 2)))


def test_displacement_prior_places_the_other_joint():
    # Joint 1 sits 2 heatmap pixels right of and 1 below joint 0 in every training person.
    kp = np.zeros((5, 2, 3))
    kp[:, 0] = [[8.0, 8.0, 2]] * 5
    kp[:, 1] = [[16.0, 12.0, 2]] * 5  # stride 4: displacement (dx, dy) = (2, 1)
    pairs = [(1, 0), (0, 1)]
    prior = tompson_models.pairwise_displacement_prior(kp, pairs, (7, 7), stride=4, smooth=0.0, floor=0.0)
    assert prior[..., 0].sum() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(prior[..., 0]), (7, 7)) == (3 - 1, 3 - 2)
    # Through the layer: joint 0 detected at (row 4, col 3) predicts joint 1 at (5, 5).
    layer = tompson_models.build_spatial_model((9, 9, 2), pairs, (7, 7), prior + 1e-6)
    e = np.zeros((1, 9, 9, 2), np.float32)
    e[0, 4, 3, 0] = 1.0
    out = layer(e).numpy()[0, ..., 1]
    assert np.unravel_index(np.argmax(out), (9, 9)) == (5, 5)


def test_part_detector_shapes_and_sizes():
    det = tompson_models.build_part_detector((64, 48, 3), 17, (8, 8, 8), (16, 16))
    assert det.output_shape == (None, 16, 12, 17)
    names = [layer.name for layer in det.layers]
    assert "banks_add" in names and "bank_half_up" in names and "fc_conv1" in names
    assert det.get_layer("fc_conv0").kernel_size == (9, 9) and det.get_layer("bank_full_conv0").kernel_size == (5, 5)
    with pytest.raises(ValueError, match="multiples of 8"):
        tompson_models.build_part_detector((60, 64, 3))


@pytest.mark.parametrize(
    "overrides, match",
    [({"image_size": "60"}, "multiple of 8"), ({"stage_fractions": "(0.5, 0.5, 0.5)"}, "summing to 1"),
     ({"spatial_kernel": "8"}, "odd"), ({"bank_filters": "(8, 8)"}, "3 values")],
)  # fmt: skip
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(TompsonConfig(), overrides)


def test_stage_boundaries():
    c = TompsonConfig(steps=100, stage_fractions=(0.5, 0.3, 0.2))
    assert c.stage_boundaries() == (50, 80)
    assert [stage_of_step(s, (50, 80)) for s in (1, 50, 51, 80, 81, 100)] == [1, 1, 2, 2, 3, 3]


@pytest.mark.slow
def test_stage_schedule_trains_the_right_variables():
    recipe = TompsonRecipe(TompsonConfig(steps=6, stage_fractions=(1 / 3, 1 / 3, 1 / 3), **TINY))
    model = recipe.build_model()
    batch = next(iter(recipe.build_dataset("train")))
    step = tf.function(model.train_step)
    changed = []
    for _ in range(6):
        det = [v.numpy().copy() for v in model.detector.trainable_variables]
        sp = [v.numpy().copy() for v in model.spatial.trainable_variables]
        logs = step(batch)
        d = any(not np.array_equal(a, v.numpy()) for a, v in zip(det, model.detector.trainable_variables))
        s = any(not np.array_equal(a, v.numpy()) for a, v in zip(sp, model.spatial.trainable_variables))
        changed.append((int(logs["stage"]), d, s))
    assert changed == [(1, True, False)] * 2 + [(2, False, True)] * 2 + [(3, True, True)] * 2


@pytest.mark.slow
def test_tiny_run_and_export(tmp_path):
    from kerasnets.export import export_run

    recipe = TompsonRecipe(TompsonConfig(steps=12, seed=1, **TINY))
    result = engine.train(recipe, str(tmp_path / "run"))
    assert [r["stage"] for r in result.history] == [1.0] * 6 + [2.0] * 3 + [3.0] * 3
    losses = [r["detector_loss"] for r in result.history]
    assert np.mean(losses[3:6]) < np.mean(losses[:3])  # stage 1 fits the detector
    for key in ("pck", "pck_detector", "pck_torso", "pck_torso_wrist"):
        assert 0.0 <= result.summary[key] <= 1.0
    assert os.path.exists(result.summary["predictions_png"])
    report = export_run(recipe, result.model, formats=["savedmodel"], export_root=str(tmp_path / "export"))
    assert report.max_error("savedmodel") <= 1e-5
    assert sorted(report.signatures["serving_default"]) == ["images"]
    images = next(recipe.representative_dataset(1))["images"]
    out = result.model.spatial(result.model.detector(images)).numpy()
    assert out.shape == (1, 8, 8, 17) and np.all(out > 0)
