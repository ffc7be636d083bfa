"""improved_gan recipe: tiny runs, replica behaviour, export signatures, data selection."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import ConfigError, apply_overrides
from kerasnets.losses import improved_gan as ig
from kerasnets.recipes.improved_gan import ImprovedGanConfig, ImprovedGanRecipe
from kerasnets.training import engine

TINY = dict(
    steps=6,
    batch_size=20,
    reference_batch_size=10,
    noise_dim=8,
    generator_hidden=(16,),
    discriminator_hidden=(32, 16),
    labels_per_class=3,
    log_every=3,
    sample_every=3,
    gan_metrics=False,
    strategy="default",
)


def tiny(**overrides):
    return ImprovedGanConfig(**{**TINY, **overrides})


def test_labelled_subset_has_exactly_k_per_class():
    recipe = ImprovedGanRecipe(tiny(labels_per_class=4))
    data = recipe._arrays()
    counts = np.bincount(data["y"][data["labeled"]], minlength=10)
    assert counts.tolist() == [4] * 10
    batch = next(iter(recipe.build_dataset("train")))
    assert batch["labeled_images"].shape == (20, 8, 8, 1) and batch["unlabeled_images"].shape == (20, 8, 8, 1)


def test_config_errors():
    with pytest.raises(ConfigError, match="real_label"):
        apply_overrides(ImprovedGanConfig(), {"real_label": "0.3"})
    with pytest.raises(ConfigError, match="has only"):
        ImprovedGanRecipe(tiny(labels_per_class=1000))._arrays()


@pytest.mark.slow
@pytest.mark.parametrize(
    "switches",
    [
        dict(),  # feature matching + K+1 + VBN (the paper's MNIST setting)
        dict(feature_matching=False, minibatch_kernels=4, historical_averaging=0.01, real_label=0.9,
             virtual_batch_norm=False),
        dict(semi_supervised=False, feature_matching=False, minibatch_kernels=4),
    ],
)
def test_tiny_runs_train_every_switch(tmp_path, switches):
    recipe = ImprovedGanRecipe(tiny(**switches))
    result = engine.train(recipe, str(tmp_path / "run"))
    assert all(np.isfinite(v) for v in result.final_logs.values())
    assert (tmp_path / "run" / "samples" / "final.png").exists()
    assert (tmp_path / "run" / "plots" / "losses.png").exists()
    endpoints = recipe.export_endpoints(result.model)
    images = np.random.RandomState(0).rand(3, 8, 8, 1).astype("float32")
    out = endpoints["serving_default"].fn(images=tf.constant(images))
    logits = out["logits"].numpy()
    if recipe.config.semi_supervised:
        z = np.exp(logits.astype("float64")).sum(-1)
        np.testing.assert_allclose(out["real_probability"].numpy(), z / (z + 1), rtol=1e-5)
        assert out["probabilities"].shape == (3, 10)
    generated = endpoints["generate"].fn(z=tf.zeros((2, 8)))["images"]
    assert generated.shape == (2, 8, 8, 1)


@pytest.mark.slow
def test_replicas_draw_distinct_noise_and_share_state(tmp_path, two_cpu_strategy):
    recipe = ImprovedGanRecipe(tiny(historical_averaging=0.01, steps=4, sample_every=100))
    result = engine.train(recipe, str(tmp_path / "run"), strategy=two_cpu_strategy)
    model = result.model
    z = two_cpu_strategy.run(tf.function(lambda: model._sample_z(4)))
    first, second = (t.numpy() for t in two_cpu_strategy.experimental_local_results(z))
    assert not np.allclose(first, second), "replicas drew the same noise"
    for variable in model.d_history.averages + [model.d_history.count]:
        values = [v.numpy() for v in two_cpu_strategy.experimental_local_results(variable.value)]
        assert len(values) == 2
        np.testing.assert_array_equal(values[0], values[1])
    assert float(model.d_history.count.numpy()) == 4.0


def test_one_sided_smoothing_in_the_k_plus_one_loss_reduces_to_the_paper_term():
    """With real_label=1 the recipe's L_unsup equals semi_supervised_losses' unsupervised term."""
    recipe = ImprovedGanRecipe(tiny())
    model = recipe.build_model()
    rng = np.random.RandomState(0)
    lab, unl, fake = (tf.constant(rng.randn(4, 10).astype("float32")) for _ in range(3))
    labels = tf.constant([0, 1, 2, 3])
    sup, unsup = model._d_losses(lab, labels, unl, fake)
    ref_sup, ref_unsup = ig.semi_supervised_losses(lab, labels, unl, fake)
    assert float(sup) == pytest.approx(float(ref_sup), rel=1e-6)
    assert float(unsup) == pytest.approx(float(ref_unsup), rel=1e-5)
    smoothed = ImprovedGanRecipe(tiny(real_label=0.9)).build_model()
    _, unsup_smoothed = smoothed._d_losses(lab, labels, unl, fake)
    lse_unl = tf.reduce_logsumexp(unl, -1).numpy()
    lse_fake = tf.reduce_logsumexp(fake, -1).numpy()
    d_real = 1 / (1 + np.exp(-lse_unl))
    expected = np.mean(-(0.9 * np.log(d_real) + 0.1 * np.log(1 - d_real))) + np.mean(np.log1p(np.exp(lse_fake)))
    assert float(unsup_smoothed) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_export_classifier_savedmodel_and_tflite_plus_generator_signature(tmp_path):
    from kerasnets.export import export_run

    recipe = ImprovedGanRecipe(tiny(steps=3))
    result = engine.train(recipe, str(tmp_path / "run"))
    report = export_run(recipe, result.model, formats=["savedmodel", "tflite", "tflite-int8"],
                        export_root=str(tmp_path / "exported"))
    assert set(report.signatures) == {"serving_default", "generate"}
    assert report.signatures["generate"] == ["z"] and report.signatures["serving_default"] == ["images"]
    assert report.max_error("savedmodel") <= 1e-5 and report.max_error("tflite") <= 1e-4
    assert "tflite-int8" in report.tflite


def test_svhn_loader_reads_tfds_offline():
    import tensorflow_datasets as tfds

    from kerasnets.data.image_classification import load_image_classification

    with tfds.testing.mock_data(num_examples=12):
        (x, y), (xt, yt) = load_image_classification("svhn_cropped", download=False)
    assert x.shape[1:] == (32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and len(xt) == len(yt) > 0
