"""batchnorm recipe: percentiles, the side-by-side SGD step by hand, Figure 1 from a tiny engine run."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.batchnorm import (
    BatchNormConfig,
    BatchNormRecipe,
    percentiles,
    sigmoid_input_batch_stats,
)
from kerasnets.testing import fresh_mirrored_strategy
from kerasnets.training import engine


@pytest.fixture
def two_replicas():
    """MirroredStrategy over the two logical CPUs, with collective keys of its own (see fresh_mirrored_strategy)."""
    return fresh_mirrored_strategy()


def tiny(**overrides):
    base = dict(steps=40, log_every=10, checkpoint_every=1000, strategy="default", curve_examples=200)
    base.update(overrides)
    return BatchNormConfig(**base)


def test_defaults_are_the_papers():
    c = BatchNormConfig()
    assert (c.batch_size, c.hidden_layers, c.hidden_units) == (60, 3, 100)
    assert c.data == "embedded"


@pytest.mark.parametrize(
    "overrides, match",
    [({"tracked_unit": "100"}, "tracked_unit"), ({"bn_momentum": "1.0"}, "bn_momentum"), ({"data": "cifar10"}, "data")],
)
def test_bad_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(BatchNormConfig(), overrides)


@pytest.mark.parametrize("n", [1, 2, 7, 200])
def test_percentiles_match_numpy(n):
    x = np.random.default_rng(n).normal(size=n).astype("float32")
    got = percentiles(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, np.percentile(x, [15, 50, 85]), rtol=1e-5, atol=1e-6)


def test_architecture():
    recipe = BatchNormRecipe(tiny())
    model = recipe.build_model()
    # 64 inputs (8x8 digits) -> 3 x 100 sigmoid -> 10.
    plain = 64 * 100 + 100 + 2 * (100 * 100 + 100) + 100 * 10 + 10
    assert model.no_bn.count_params() == plain
    bn_layers = [l for l in model.bn.layers if l.__class__.__name__ == "BatchNormalization"]
    assert len(bn_layers) == 3
    # With BN the hidden layers' bias is dropped (beta takes its role): 3 x (gamma, beta, mean, var).
    assert model.bn.count_params() == plain - 3 * 100 + 3 * 4 * 100
    assert all(not model.bn.get_layer(f"dense_{i}").use_bias for i in (1, 2, 3))


def test_train_step_is_plain_sgd_on_both_nets_with_the_same_batch():
    recipe = BatchNormRecipe(tiny(learning_rate=0.3))
    model = recipe.build_model()
    pixels, labels = next(iter(recipe.build_dataset("train")))
    before = {name: [v.numpy() for v in net.trainable_variables] for name, net in model.nets.items()}
    grads, losses = {}, {}
    for name, net in model.nets.items():
        # Independent reference: each net's own cross-entropy gradient on the batch.
        with tf.GradientTape() as tape:
            logits = net(pixels, training=True)[0]
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads[name] = [g.numpy() for g in tape.gradient(loss, net.trainable_variables)]
        losses[name] = float(loss)
    # Undo the moving-statistics update of the reference pass.
    for layer in model.bn.layers:
        if hasattr(layer, "moving_mean"):
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
            layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    logs = model.train_step((pixels, labels))
    for name, net in model.nets.items():
        for w0, g, w1 in zip(before[name], grads[name], net.trainable_variables):
            np.testing.assert_allclose(w1.numpy(), w0 - 0.3 * g, rtol=1e-4, atol=1e-6)
    for name in model.nets:
        assert float(logs[f"loss_{name}"]) == pytest.approx(losses[name], rel=1e-5)
    assert float(logs["test_accuracy_bn"]) == 0.0  # step 1 is not a logging step
    moving = model.bn.get_layer("bn_1").moving_mean.numpy()
    assert np.abs(moving).max() > 0  # BN statistics were updated by the step


def test_sigmoid_input_batch_stats_is_the_training_forward_without_side_effects():
    recipe = BatchNormRecipe(tiny())
    model = recipe.build_model()
    x = tf.constant(recipe.data()[1][0][:50])
    got = sigmoid_input_batch_stats(model.bn, x).numpy()
    assert np.abs(model.bn.get_layer("bn_3").moving_mean.numpy()).max() == 0.0
    _, want = model.bn(x, training=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_tiny_run_writes_figure1_and_bn_is_more_stable(tmp_path):
    from kerasnets.export import export_run

    recipe = BatchNormRecipe(tiny(steps=200, log_every=20))
    result = engine.train(recipe, str(tmp_path / "run"))
    summary = result.summary
    assert os.path.isfile(summary["plot"]) and summary["plot"].endswith(os.path.join("plots", "figure1.png"))
    with open(summary["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for key in ("test_accuracy_no_bn", "test_accuracy_bn"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["test_accuracy_bn"] > 0.5  # BN learns within 200 steps on digits
    # Figure 1 (b, c): the BN net's sigmoid input distribution moves less.
    assert summary["sigmoid_input_drift_bn"] < summary["sigmoid_input_drift_no_bn"]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(20, 201, 20))
    assert all(f"sigmoid_input_{n}/p{q}" in rows[-1] for n in ("bn", "no_bn") for q in (15, 50, 85))
    assert rows[-1]["sigmoid_input_bn/p15"] <= rows[-1]["sigmoid_input_bn/p50"] <= rows[-1]["sigmoid_input_bn/p85"]
    assert os.listdir(tmp_path / "run" / "tensorboard")
    # Evaluation equals the curve's last point when the probe covers the whole test set.
    full = BatchNormRecipe(tiny(curve_examples=10**6))
    assert full.evaluate(result.model)["test_accuracy_bn"] == pytest.approx(summary["test_accuracy_bn"])

    # Export: the BN net, images -> probabilities, SavedModel and TFLite verified.
    report = export_run(recipe, result.model, formats=("savedmodel", "tflite"), export_root=str(tmp_path / "sm"))
    assert report.signatures["serving_default"] == ["images"]
    images = recipe.data()[1][0][:5].reshape(5, 8, 8, 1)
    probs = recipe.export_endpoints(result.model)["serving_default"].fn(images=tf.constant(images))["probabilities"]
    np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, atol=1e-5)
    want = tf.nn.softmax(result.model.bn(images.reshape(5, 64), training=False)[0]).numpy()
    np.testing.assert_allclose(probs.numpy(), want, atol=1e-6)


@pytest.mark.slow
def test_mnist_loader_offline_with_mock_data(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # The shared loader reads whole splits (`batch_size=-1`), which tfds sizes from the split
    # metadata; mock_data has none (0 -> sys.maxsize -> a C++ abort), so give it a size.
    monkeypatch.setattr(tfds.core.splits.SplitDict, "total_num_examples", property(lambda self: 24))
    recipe = BatchNormRecipe(tiny(data="mnist", steps=3, data_dir=str(tmp_path), batch_size=8, curve_examples=16))
    with tfds.testing.mock_data(num_examples=24):
        (x_tr, y_tr), (x_te, _) = recipe.data()
        result = engine.train(recipe, str(tmp_path / "run"))
    assert x_tr.shape[1] == 784 and x_tr.dtype == np.float32 and 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert recipe.input_dim() == 784 and result.model.bn.input_shape[-1] == 784
    assert set(result.summary) >= {"test_accuracy_bn", "test_accuracy_no_bn"}


def test_mnist_missing_is_a_clear_error(tmp_path):
    recipe = BatchNormRecipe(tiny(data="mnist", data_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="download=True"):
        recipe.data()


def test_registered():
    from kerasnets import registry

    assert registry.get("batchnorm") is BatchNormRecipe


@pytest.mark.slow
def test_two_replicas_run(tmp_path, two_replicas):
    """Same code path under MirroredStrategy: the global batch of 60 is split over 2 replicas."""
    recipe = BatchNormRecipe(tiny(steps=20, strategy="mirrored"))
    result = engine.train(recipe, str(tmp_path / "run"), strategy=two_replicas)
    last = result.history[-1]
    assert last["step"] == 20 and np.isfinite(last["loss_bn"])
    assert 0.0 <= last["test_accuracy_bn"] <= 1.0 and last["sigmoid_input_bn/p15"] < last["sigmoid_input_bn/p85"]
    # sync_bn (default): BN statistics of the global batch, so the replicas' moving statistics agree.
    bn = result.model.bn.get_layer("bn_3")
    copies = [v.numpy() for v in bn.moving_mean.value.values]
    np.testing.assert_allclose(copies[0], copies[1], rtol=1e-6, atol=1e-6)
    assert os.path.isfile(result.summary["plot"])
