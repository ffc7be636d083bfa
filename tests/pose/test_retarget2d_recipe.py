"""retarget2d recipe: paired batches, config checks, tiny training, evaluation, demo and export."""

import os

import numpy as np
import pytest

from kerasnets.config import apply_overrides
from kerasnets.data import motion_pairs as mp
from kerasnets.errors import ConfigError
from kerasnets.recipes.retarget2d import Retarget2DConfig, Retarget2DRecipe, retargeting_errors

SMALL_NET = dict(
    motion_channels=(30, 16, 16, 32),
    body_channels=(28, 8, 8, 8, 4),
    view_channels=(28, 8, 8, 8, 2),
    decoder_channels=(38, 16, 16, 30),
)


def tiny(**kw):
    base = dict(
        steps=4, batch_size=8, window=16, train_motions=4, train_bodies=3, test_motions=3, test_bodies=2,
        views=(-60.0, 0.0, 60.0), eval_pairs=8, demo_examples=2, log_every=2, checkpoint_every=100,
        strategy="default", **SMALL_NET,
    )  # fmt: skip
    base.update(kw)
    return Retarget2DConfig(**base)


def _identify(clip, table):
    """Index (motion, body, view) of the bank clip equal to `clip`."""
    err = np.abs(table - clip).reshape(table.shape[:3] + (-1,)).max(-1)
    idx = np.unravel_index(np.argmin(err), err.shape)
    assert err[idx] < 1e-3, f"clip not found in the bank (closest error {err[idx]})"
    return idx


def test_batches_pair_motion_body_and_view_correctly():
    recipe = Retarget2DRecipe(tiny())
    mean, std = recipe.stats()
    train, _ = recipe.banks()
    table = (mp.localize(mp.bank_clips(train, recipe.config.views)) - mean) / std  # [M, B, V, T, 30]
    batch = next(iter(recipe.build_dataset("train")))
    assert sorted(batch) == sorted(["111", "222", "121", "112", "122", "212", "221", "211"])
    for n in range(recipe.config.batch_size):
        ids = {k: _identify(batch[k].numpy()[n], table) for k in batch}
        one, two = ids["111"], ids["222"]
        assert all(a != b for a, b in zip(one, two)), "the two clips must differ in motion, body and view"
        for key, got in ids.items():
            expected = tuple((one, two)[int(ch) - 1][f] for f, ch in enumerate(key))
            assert got == expected, f"clip {key}: {got} != {expected}"


def test_train_batches_are_deterministic_and_resumable():
    recipe = Retarget2DRecipe(tiny())
    it = iter(recipe.build_dataset("train"))
    next(it)
    second = next(it)
    resumed = next(iter(recipe.build_dataset("train", start_step=1)))
    np.testing.assert_array_equal(second["121"].numpy(), resumed["121"].numpy())


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="window"):
        apply_overrides(tiny(), {"window": "20"})
    with pytest.raises(ConfigError, match="decoder_channels"):
        apply_overrides(tiny(), {"decoder_channels": "(40, 16, 16, 30)"})
    with pytest.raises(ConfigError, match="views"):
        apply_overrides(tiny(), {"views": "(0.0,)"})
    with pytest.raises(ConfigError, match="static encoders"):
        apply_overrides(tiny(), {"body_channels": "(30, 8, 8, 8, 4)"})


def test_retargeting_errors_by_hand():
    truth = np.zeros((1, 2, 15, 2))
    pred = truth.copy()
    pred[:, :, 0, 0] = 3.0  # the nose 3 px off in x, every frame
    out = retargeting_errors(pred, truth, np.zeros(30), np.full(30, 3.0))
    assert out["mpjpe_px"] == pytest.approx(3.0 / 15)
    assert out["mse_px"] == pytest.approx(2 * 9.0 / 60)  # 2 of 60 coordinates off by 3
    assert out["mpjpe_local_px"] == pytest.approx(3.0 / 15)
    assert out["mse"] == pytest.approx(1.0 / 30)  # one of 30 channels off by 1 std


def test_eval_pairs_settings():
    recipe = Retarget2DRecipe(tiny())
    for setting in ("body", "view", "both"):
        (i, a, u), (j, b, w) = recipe.eval_pairs(setting)
        assert np.all(i != j)
        assert np.all(a != b) if setting != "view" else np.all(a == b)
        assert np.all(u != w) if setting != "body" else np.all(u == w)
    with pytest.raises(ValueError, match="setting"):
        recipe.eval_pairs("pose")


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_and_writes_the_demo(tmp_path):
    from kerasnets.training.engine import train

    recipe = Retarget2DRecipe(tiny(steps=40, log_every=5))
    result = train(recipe, str(tmp_path / "run"))
    losses = [row["loss"] for row in result.history]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses
    summary = result.summary
    for key in ("demo_png", "demo_gif"):
        assert os.path.getsize(summary[key]) > 1000
    from PIL import Image

    gif = Image.open(summary["demo_gif"])
    assert gif.n_frames == recipe.config.window
    for setting in ("body", "view", "both"):
        for metric in ("mse", "mse_px", "mpjpe_px"):
            assert np.isfinite(summary[f"{setting}_{metric}"]) and np.isfinite(summary[f"baseline_{setting}_{metric}"])


@pytest.mark.slow
def test_export_round_trip_savedmodel_in_a_fresh_process_and_tflite(tmp_path):
    from kerasnets.export import export_run

    recipe = Retarget2DRecipe(tiny())
    model = recipe.build_model()
    sample = next(recipe.representative_dataset(1))
    # 20 frames: trimmed to 16 in the graph.
    sample = {"source": np.concatenate([sample["source"], sample["source"][:, :4]], 1), **{k: sample[k] for k in ("body", "view")}}
    report = export_run(recipe, model, formats=("savedmodel", "tflite"), export_root=str(tmp_path), sample_inputs=sample)
    assert set(report.signatures["serving_default"]) == {"source", "body", "view"}
    assert report.max_error("savedmodel") <= 1e-4
    assert report.max_error("tflite") <= 1e-3  # builtin ops only (MirrorPad, cumsum, ...), float32
    out = recipe.export_endpoints(model)["serving_default"].fn(**{k: v for k, v in sample.items()})
    assert tuple(out["joints"].shape) == (1, 16, 15, 2) and tuple(out["motion"].shape) == (1, 16, 30)
    # The trajectory integrates the decoded root velocity from the source's first root position
    # (the reference's `globalize_motion`: frame 0 adds the decoded velocity of frame 0).
    net = model.net
    velocity = out["motion"].numpy()[0, :, 28:] * net.norm_std.numpy()[28:] + net.norm_mean.numpy()[28:]
    root = sample["source"][0, 0, mp.ROOT] + np.cumsum(velocity, axis=0)
    np.testing.assert_allclose(out["joints"].numpy()[0, :, mp.ROOT], root, atol=1e-3)
    local = out["motion"].numpy()[0, :, 2:4] * net.norm_std.numpy()[2:4] + net.norm_mean.numpy()[2:4]
    np.testing.assert_allclose(out["joints"].numpy()[0, :, 1] - root, local, atol=1e-3)  # neck = local joint 1
