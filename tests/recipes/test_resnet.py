"""ResNet recipe: schedule, loss and update rule against hand computation; tiny runs through the engine."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.resnet import ResNetConfig, ResNetRecipe, StepDecayWithWarmup
from kerasnets.training import engine


# two_cpu_strategy: the shared fixture in tests/conftest.py (fresh collective keys per test).


def tiny_config(**overrides):
    """Depth 8 (n=1) on 8x8 digits: a few seconds per run."""
    base = dict(depth=8, image_size=8, batch_size=16, steps=6, strategy="default", log_every=1, checkpoint_every=100)
    base.update(overrides)
    return ResNetConfig(**base)


# ------------------------------------------------------------------ config


def test_defaults_are_the_papers():
    c = ResNetConfig()
    assert (c.depth, c.shortcut, c.batch_size) == (20, "A", 128)
    assert (c.learning_rate, c.momentum, c.weight_decay, c.lr_decay_factor) == (0.1, 0.9, 1e-4, 0.1)
    # "divide it by 10 at 32k and 48k iterations, and terminate training at 64k"
    assert apply_overrides(ResNetConfig(), {"steps": "64000"}).resolved_boundaries() == (32000, 48000)
    assert ResNetConfig().resolved_warmup_steps() == 0
    assert ResNetConfig(depth=110).resolved_warmup_steps() == 400
    assert ResNetConfig(lr_boundaries=(5, 9)).resolved_boundaries() == (5, 9)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"depth": "21"}, "6n\\+2"),
        ({"shortcut": "C"}, "shortcut"),
        ({"data": "cifar10", "image_size": "16"}, "32x32"),
        ({"lr_decay_at": "(0.75, 0.5)"}, "increasing"),
        ({"lr_boundaries": "(10, 5)"}, "increasing"),
        ({"val_fraction": "0.9"}, "val_fraction"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(ResNetConfig(), overrides)


def test_recipe_rejects_bad_depth_built_directly():
    with pytest.raises(ConfigError, match="depth"):
        ResNetRecipe(ResNetConfig(depth=22))


# ---------------------------------------------------------------- schedule


def test_step_schedule_values_at_the_boundaries():
    # t = optimizer.iterations = updates done so far; the 32001st update is the first at 0.01.
    schedule = StepDecayWithWarmup(0.1, boundaries=(32000, 48000), factor=0.1)
    got = [float(schedule(t)) for t in (0, 31999, 32000, 47999, 48000, 63999)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_resnet110_warmup_schedule():
    recipe = ResNetRecipe(ResNetConfig(depth=110, steps=64000))
    schedule = recipe.learning_rate_schedule()
    got = [float(schedule(t)) for t in (0, 399, 400, 31999, 32000, 48000)]
    np.testing.assert_allclose(got, [0.01, 0.01, 0.1, 0.1, 0.01, 0.001], rtol=1e-6)
    assert StepDecayWithWarmup.from_config(schedule.get_config()).get_config() == schedule.get_config()


# -------------------------------------------------------- loss and update


def _fixed_batch(recipe, n=16):
    data = recipe.data()
    return tf.constant(data.x_train[:n]), tf.constant(data.y_train[:n])


def test_train_step_loss_is_cross_entropy_plus_half_wd_l2_and_sgd_is_coupled():
    """loss = mean CE + wd/2 * sum(w^2); first SGD step: w1 = w0 - lr * (dCE/dw + wd * w0)."""
    config = tiny_config(weight_decay=1e-2, learning_rate=0.05)
    recipe = ResNetRecipe(config)
    model = recipe.build_model()
    images, labels = _fixed_batch(recipe)
    kernels = [v for v in model.network.trainable_variables if "kernel" in v.path]
    assert len(kernels) == 7 + 1  # 1 stem + 3 stages x 2 convs, 1 classifier (option A: no shortcut convs)
    w0 = [v.numpy().copy() for v in kernels]

    with tf.GradientTape() as tape:
        logits = model(images, training=True)  # batch statistics: same logits as inside train_step
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    ce_grads = tape.gradient(ce, kernels)
    z = logits.numpy().astype("float64")
    log_softmax = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    expected_ce = -log_softmax[np.arange(len(z)), labels.numpy()].mean()
    expected_l2 = 1e-2 / 2 * sum(float((w.astype("float64") ** 2).sum()) for w in w0)

    logs = model.train_step((images, labels))
    np.testing.assert_allclose(float(logs["cross_entropy"]), expected_ce, rtol=1e-5)
    np.testing.assert_allclose(float(logs["loss"]), expected_ce + expected_l2, rtol=1e-5)
    np.testing.assert_allclose(float(logs["learning_rate"]), 0.05, rtol=1e-6)
    for v, w, g in zip(kernels, w0, ce_grads):
        np.testing.assert_allclose(v.numpy(), w - 0.05 * (g.numpy() + 1e-2 * w), atol=2e-6)


def test_model_subtracts_the_train_pixel_mean():
    recipe = ResNetRecipe(tiny_config())
    model = recipe.build_model()
    data = recipe.data()
    np.testing.assert_allclose(model.pixel_mean.numpy(), data.x_train.mean(0), rtol=1e-5)
    images = data.x_test[:4]
    np.testing.assert_allclose(
        model(images).numpy(), model.network(images - data.x_train.mean(0)).numpy(), rtol=1e-4, atol=1e-5
    )


def test_serving_endpoint_takes_raw_pixels():
    recipe = ResNetRecipe(tiny_config())
    model = recipe.build_model()
    endpoints = recipe.export_endpoints(model)
    fn, (spec,) = endpoints["serving_default"]
    assert spec.name == "images" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, 8, 8, 3]
    images = recipe.data().x_test[:5]
    out = tf.function(fn, input_signature=[spec])(tf.constant(images))
    assert set(out) == {"probabilities", "classes"}
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, rtol=1e-5)
    expected = tf.nn.softmax(model.network(images - model.pixel_mean.numpy())).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), expected.argmax(-1))
    samples = list(recipe.representative_dataset(3))
    assert len(samples) == 3 and samples[0]["images"].shape == (1, 8, 8, 3)
    assert samples[0]["images"].dtype == np.float32 and samples[0]["images"].max() <= 255.0


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_tiny_run_through_the_engine_learns_and_exports(tmp_path):
    config = tiny_config(steps=40, batch_size=32, log_every=5, lr_decay_at=(0.75,))
    result = engine.train(ResNetRecipe(config), str(tmp_path / "run"), progress_stream=open(os.devnull, "w"))
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses
    summary = result.summary
    assert summary["trainable_params"] == sum(int(np.prod(v.shape)) for v in result.model.network.trainable_variables)
    assert 0.0 <= summary["test_error"] <= 1.0
    assert summary["test_accuracy"] > 0.3  # chance is 0.1
    assert os.path.isfile(tmp_path / "run" / "plots" / "training_curves.png")
    np.testing.assert_allclose(result.final_logs["learning_rate"], 0.01, rtol=1e-6)

    # The trained model exports for TF Serving and LiteRT (raw pixels in, probabilities and classes out).
    from kerasnets.export import export_run

    report = export_run(
        result.recipe, result.model, formats=("savedmodel", "tflite", "tflite-int8"),
        export_root=str(tmp_path / "export"),
    )
    assert report.signatures["serving_default"] == ["images"]
    assert report.max_error("savedmodel") <= 1e-5 and report.max_error("tflite") <= 1e-4
    assert set(report.errors["tflite-int8"]) == {"probabilities", "classes"}
    assert report.errors["tflite-int8"]["probabilities"] < 0.5  # int8 error is reported, loosely bounded


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Momentum, step counter (lr schedule), BN statistics and data position all survive a restart."""
    devnull = open(os.devnull, "w")
    config = tiny_config(steps=6, lr_boundaries=(4,))
    straight = engine.train(ResNetRecipe(config), str(tmp_path / "straight"), progress_stream=devnull)
    engine.train(ResNetRecipe(tiny_config(steps=3, lr_boundaries=(4,))), str(tmp_path / "resumed"),
                 progress_stream=devnull)
    resumed = engine.train(ResNetRecipe(config), str(tmp_path / "resumed"), progress_stream=devnull)
    assert resumed.resumed_from == 3
    for a, b in zip(straight.model.variables, resumed.model.variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    assert int(resumed.model.optimizer.iterations.numpy()) == 6


@pytest.mark.slow
@pytest.mark.distributed
def test_two_replicas_with_sync_bn_match_one_device(tmp_path, two_cpu_strategy):
    """Same global batch: MirroredStrategy over 2 logical CPUs with synchronized BN == 1 device.

    Checks the engine's replica-correct loss scaling (a loss not divided by the
    replica count would double the step) and the per-replica split of the batch.
    """
    config = tiny_config(sync_bn=True, steps=4, learning_rate=0.05)
    devnull = open(os.devnull, "w")
    single = engine.train(ResNetRecipe(config), str(tmp_path / "one"), strategy=tf.distribute.get_strategy(),
                          progress_stream=devnull)
    mirrored = engine.train(ResNetRecipe(config), str(tmp_path / "two"), strategy=two_cpu_strategy,
                            progress_stream=devnull)
    a = {v.path: v.numpy() for v in single.model.network.variables}
    b = {v.path: v.numpy() for v in mirrored.model.network.variables}
    assert a.keys() == b.keys()
    moved = 0.0
    for path in a:
        np.testing.assert_allclose(b[path], a[path], rtol=1e-4, atol=1e-5, err_msg=path)
    for v0, v1 in zip(ResNetRecipe(config).build_model().network.trainable_variables,
                      single.model.network.trainable_variables):
        moved = max(moved, float(np.abs(v1.numpy() - v0.numpy()).max()))
    assert moved > 1e-3  # the runs did train
    np.testing.assert_allclose(mirrored.final_logs["loss"], single.final_logs["loss"], rtol=1e-4)


@pytest.mark.slow
def test_cifar10_recipe_offline_with_mock_data():
    import tensorflow_datasets as tfds

    config = tiny_config(data="cifar10", image_size=None, data_dir="/nonexistent-cifar-dir", batch_size=8)
    recipe = ResNetRecipe(config)
    with tfds.testing.mock_data(num_examples=20):
        data = recipe.data()
    assert recipe.image_shape() == (32, 32, 3) and data.flip
    images, labels = next(iter(recipe.build_dataset("train")))
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8,)
    model = recipe.build_model()
    logs = model.train_step((images, labels))
    assert np.isfinite(float(logs["loss"]))
    assert 0.0 <= recipe.evaluate(model)["test_accuracy"] <= 1.0
