"""BEGAN recipe: config checks, the joint step's k_t / lr rules, tiny engine runs, 2 replicas, celeb_a, export."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError, KerasnetsError
from kerasnets.recipes.began import BeganConfig, BeganRecipe
from kerasnets.utils.images import image_grid
from kerasnets.training import engine


def tiny(**overrides):
    """8x8 digits, n=8, h=8: a fraction of a second per 10 steps."""
    base = dict(
        image_size=8, n=8, h=8, batch_size=16, steps=40, learning_rate=1e-3, lr_floor=1e-5, gamma=0.5,
        log_every=2, sample_every=20, checkpoint_every=1000, num_samples=16, strategy="default", skip=False,
    )
    base.update(overrides)
    return BeganConfig(**base)


# ------------------------------------------------------------------ config


def test_defaults_are_the_papers_except_gamma():
    c = BeganConfig()
    assert (c.lambda_k, c.learning_rate, c.batch_size) == (0.001, 1e-4, 16)
    # gamma: the paper's faces use 0.5; on the embedded digits a 4000-step run
    # at 0.5 collapses to one blob, so the CPU default is 1.0 (see the recipe docstring).
    assert c.gamma == 1.0
    assert c.data == "embedded" and c.channels == 1
    assert apply_overrides(BeganConfig(), {"data": "celeb_a", "image_size": "64"}).channels == 3


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"image_size": "12"}, "image_size"),
        ({"gamma": "1.5"}, "gamma"),
        ({"data": "cifar"}, "data"),
        ({"data": "celeb_a", "image_size": "256"}, "at most 128"),
        ({"sample_every": "15"}, "multiple of log_every"),
        ({"lr_floor": "0.01"}, "lr_floor"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(BeganConfig(), overrides)


def test_registered():
    from kerasnets import registry

    assert registry.get("began") is BeganRecipe


# -------------------------------------------------------------- joint step


def test_one_step_uses_k_t_before_the_update_and_then_moves_it():
    recipe = BeganRecipe(tiny(lambda_k=0.1))
    model = recipe.build_model()
    model.k_t.assign(0.3)
    batch = next(iter(recipe.build_dataset("train")))
    out = {k: float(v) for k, v in tf.function(model.train_step)(batch).items()}
    # L_D = L(x) - k_t L(G(z)) with the old k_t; L_G = L(G(z)).
    assert out["L_D"] == pytest.approx(out["loss_real"] - 0.3 * out["loss_fake"], rel=1e-6)
    assert out["L_G"] == pytest.approx(out["loss_fake"], rel=1e-6)
    expected_k = np.clip(0.3 + 0.1 * (0.5 * out["loss_real"] - out["loss_fake"]), 0, 1)
    assert out["k_t"] == pytest.approx(expected_k, abs=1e-6)
    assert float(model.k_t.numpy()) == pytest.approx(expected_k, abs=1e-6)
    expected_m = out["loss_real"] + abs(0.5 * out["loss_real"] - out["loss_fake"])
    assert out["M"] == pytest.approx(expected_m, rel=1e-6)
    assert out["lr"] == pytest.approx(1e-3)


def test_lr_halves_when_windowed_m_stalls_and_respects_the_floor():
    model = BeganRecipe(tiny(lr_patience=2, lr_min_improvement=0.1, learning_rate=1e-3, lr_floor=4e-4)).build_model()
    lrs = []
    for m in [1.0, 1.0, 0.95, 0.95, 0.5, 0.5, 0.49, 0.49, 0.48, 0.48]:
        model._schedule(tf.constant(m))
        lrs.append(float(model.lr.numpy()))
    # window 1 mean 1.0: first best, keep; window 2 mean 0.95 > 0.9 * 1.0: halve;
    # window 3 mean 0.5 < 0.9 * 1.0: new best, keep; windows 4 and 5 stall: halve, then stop at the floor.
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 4e-4, 4e-4, 4e-4], rtol=1e-6)
    assert float(model.m_best.numpy()) == pytest.approx(0.5)


def test_fixed_step_halving():
    model = BeganRecipe(tiny(lr_patience=0, lr_halve_every=3, learning_rate=1e-3)).build_model()
    lrs = []
    for _ in range(7):
        model._schedule(tf.constant(1.0))
        lrs.append(float(model.lr.numpy()))
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4], rtol=1e-6)


def test_image_grid():
    images = np.stack([np.full((2, 3, 1), -1.0), np.full((2, 3, 1), 1.0), np.zeros((2, 3, 1))]).astype("float32")
    grid = image_grid(images, columns=2, pad=1, value_range=(-1.0, 1.0))
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == 255 and grid[4, 1, 0] == 128  # -1, 1, 0 -> 0, 255, 127.5
    assert grid[0, 0, 0] == 255  # padding


# ------------------------------------------------------------ engine runs


@pytest.mark.slow
def test_tiny_run_m_decreases_and_writes_artefacts(tmp_path):
    run = str(tmp_path / "run")
    result = engine.train(BeganRecipe(tiny()), run)
    m = [row["M"] for row in result.history]
    assert len(m) == 20
    assert np.mean(m[-3:]) < 0.75 * np.mean(m[:3]), m
    assert set(result.history[0]) >= {"loss_real", "loss_fake", "L_D", "L_G", "k_t", "M", "lr"}
    assert sorted(os.listdir(os.path.join(run, "samples"))) == ["step_000020.png", "step_000040.png"]
    assert os.path.getsize(os.path.join(run, "plots", "convergence.png")) > 1000
    with open(os.path.join(run, "summary.json")) as f:
        summary = json.load(f)
    assert summary["M_end"] < summary["M_start"]
    ev = result.recipe.evaluate(result.model)
    assert ev["num_images"] == 180  # 10 % of sklearn's 1797 digits held out
    assert ev["M"] == pytest.approx(ev["reconstruction_l1"] + abs(0.5 * ev["reconstruction_l1"] - ev["loss_fake"]))


@pytest.mark.slow
def test_resume_continues_k_t_lr_schedule_and_data(tmp_path):
    settings = dict(lr_halve_every=4, lr_patience=3, checkpoint_every=6, sample_every=6)
    whole = engine.train(BeganRecipe(tiny(steps=12, **settings)), str(tmp_path / "whole"))
    engine.train(BeganRecipe(tiny(steps=6, **settings)), str(tmp_path / "split"))
    resumed = engine.train(BeganRecipe(tiny(steps=12, **settings)), str(tmp_path / "split"))
    assert resumed.resumed_from == 6
    assert float(resumed.model.lr.numpy()) == pytest.approx(float(whole.model.lr.numpy()))
    assert float(whole.model.lr.numpy()) == pytest.approx(1e-3 / 8)  # halved at steps 4, 8 and 12
    for name in ("k_t", "m_best", "m_window_sum", "m_window_count", "step_count"):
        assert float(getattr(resumed.model, name).numpy()) == pytest.approx(float(getattr(whole.model, name).numpy()))
    for a, b in zip(resumed.model.generator.get_weights(), whole.model.generator.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
@pytest.mark.distributed
def test_k_t_identical_across_two_replicas_and_follows_the_global_mean(tmp_path, two_cpu_strategy):
    strategy = two_cpu_strategy
    recipe = BeganRecipe(tiny(steps=2, lambda_k=0.1))
    result = engine.train(recipe, str(tmp_path / "run"), strategy=strategy)
    model = result.model
    per_replica = [float(v.numpy()) for v in strategy.experimental_local_results(model.k_t.value)]
    assert len(per_replica) == 2 and per_replica[0] == per_replica[1]

    # One more step by hand: each replica sees its own half batch and noise,
    # k_t moves by the rule applied to the *mean* of the replicas' losses.
    model.k_t.assign(0.3)
    iterator = iter(strategy.experimental_distribute_dataset(recipe.build_dataset("train", start_step=2)))

    @tf.function
    def step():
        return strategy.run(model.train_step, args=(next(iterator),))

    out = step()
    real = [float(v) for v in strategy.experimental_local_results(out["loss_real"])]
    fake = [float(v) for v in strategy.experimental_local_results(out["loss_fake"])]
    assert real[0] != real[1] and fake[0] != fake[1]  # replicas really differ
    expected = float(np.clip(0.3 + 0.1 * (0.5 * np.mean(real) - np.mean(fake)), 0, 1))
    values = [float(v.numpy()) for v in strategy.experimental_local_results(model.k_t.value)]
    assert values[0] == values[1]
    assert values[0] == pytest.approx(expected, abs=1e-6)
    # ... which is not what either replica alone would compute.
    alone = 0.3 + 0.1 * (0.5 * real[0] - fake[0])
    assert abs(alone - expected) > 1e-5


# ----------------------------------------------------------------- celeb_a


def test_celeb_a_loader_offline_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    # skip=True: the default architecture, with upsampling, in one joint step below.
    recipe = BeganRecipe(tiny(data="celeb_a", image_size=16, batch_size=4, data_dir=str(tmp_path), skip=True))
    with tfds.testing.mock_data(num_examples=10):
        batches = list(recipe.build_dataset("train").take(4).as_numpy_iterator())
        (resumed,) = list(recipe.build_dataset("train", start_step=3).take(1).as_numpy_iterator())
        again = list(recipe.build_dataset("train").take(4).as_numpy_iterator())
        evaluation = list(recipe.build_dataset("test").as_numpy_iterator())
    assert batches[0].shape == (4, 16, 16, 3) and batches[0].dtype == np.float32
    assert batches[0].min() >= -1.0 and batches[0].max() <= 1.0
    np.testing.assert_array_equal(resumed, batches[3])  # positioned start_step batches in
    np.testing.assert_array_equal(again[2], batches[2])  # deterministic by seed
    assert sum(len(b) for b in evaluation) == 10
    # Three-channel faces go through the joint step.
    model = recipe.build_model()
    logs = tf.function(model.train_step)(tf.constant(batches[0]))
    assert model.generator.output.shape == (None, 16, 16, 3) and np.isfinite(float(logs["M"]))


def test_celeb_a_preprocess_center_crop_and_range():
    from kerasnets.data.celeb_a import preprocess

    image = np.zeros((218, 178, 3), np.uint8)
    image[45:173, 25:153] = 255  # exactly the 128x128 center crop
    out = preprocess(tf.constant(image), 64).numpy()
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(out, 1.0, atol=1e-6)  # nothing outside the crop leaks in
    out = preprocess(tf.constant(np.zeros((218, 178, 3), np.uint8)), 128).numpy()
    np.testing.assert_allclose(out, -1.0)


def test_celeb_a_missing_data_is_a_clear_error(tmp_path):
    recipe = BeganRecipe(tiny(data="celeb_a", image_size=16, data_dir=str(tmp_path)))
    with pytest.raises(KerasnetsError, match="celeb_a.*download=True"):
        recipe.build_dataset("train")


# ------------------------------------------------------------------ export


def test_export_endpoints_shapes():
    recipe = BeganRecipe(tiny(image_size=16, h=6))
    model = recipe.build_model()
    endpoints = recipe.export_endpoints(model)
    assert set(endpoints) == {"serving_default", "reconstruct"}
    fn, sig = endpoints["serving_default"]
    assert [(s.name, s.dtype, s.shape.as_list()) for s in sig] == [("z", tf.float32, [None, 6])]
    images = fn(z=tf.zeros([3, 6]))["images"]
    assert images.shape == (3, 16, 16, 1)
    fn, sig = endpoints["reconstruct"]
    assert sig[0].name == "images" and sig[0].shape.as_list() == [None, 16, 16, 1]
    x = tf.random.uniform([2, 16, 16, 1], -1, 1)
    out = fn(images=x)
    assert out["reconstructions"].shape == (2, 16, 16, 1)
    assert out["reconstruction_loss"].shape == (2,)
    np.testing.assert_allclose(
        out["reconstruction_loss"], np.mean(np.abs(x - out["reconstructions"]), axis=(1, 2, 3)), rtol=1e-5
    )
    samples = list(recipe.representative_dataset(5))
    assert len(samples) == 5 and samples[0]["z"].shape == (1, 6)
    assert all(-1 <= s["z"].min() and s["z"].max() <= 1 for s in samples)


@pytest.mark.slow
def test_export_generator_to_saved_model_and_tflite(tmp_path):
    from kerasnets.export import export_run

    recipe = BeganRecipe(tiny(image_size=16))
    model = recipe.build_model()
    report = export_run(recipe, model, formats=("savedmodel", "tflite"), export_root=str(tmp_path))
    assert report.signatures == {"serving_default": ["z"], "reconstruct": ["images"]}
    assert report.max_error("savedmodel") <= 1e-5
    assert report.max_error("tflite") <= 1e-4
