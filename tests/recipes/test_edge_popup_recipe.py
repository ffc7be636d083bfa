"""edge_popup recipe: config checks, coupled decay on the scores, frozen weights, engine run, pruned export."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.errors import ConfigError
from kerasnets.layers import EdgePopupConv2D, EdgePopupDense
from kerasnets.recipes.edge_popup import EdgePopupConfig, EdgePopupRecipe
from kerasnets.training import engine


# two_cpu_strategy: the shared fixture in tests/conftest.py (fresh collective keys per test).


def tiny_config(**overrides):
    values = dict(
        steps=4, batch_size=16, depth=2, width_mult=0.125, strategy="default",
        log_every=2, checkpoint_every=100,
    )
    values.update(overrides)
    return EdgePopupConfig(**values)


def test_defaults_follow_the_reference_configs():
    c = EdgePopupConfig()
    assert (c.k, c.learning_rate, c.momentum, c.weight_decay, c.batch_size) == (0.5, 0.1, 0.9, 1e-4, 128)
    assert c.weight_init == "signed_kaiming_constant" and c.scale_fan
    assert c.baseline and c.dense_learning_rate == 0.01 and c.data == "embedded"


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(k=0.0), "'k'"),
        (dict(depth=3), "'depth'"),
        (dict(depth=8, image_size=8), "'image_size'"),
        (dict(data="cifar10", image_size=16), "'image_size'"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        EdgePopupRecipe(tiny_config(**overrides))


def test_registered():
    from kerasnets import registry

    assert registry.get("edge_popup") is EdgePopupRecipe


def _batch(recipe, n=16):
    data = recipe.data()
    return tf.constant(data.x_train[:n]), tf.constant(data.y_train[:n])


def test_train_step_is_coupled_l2_on_scores_and_weights_stay():
    """loss = CE + wd/2 sum(s^2); first SGD step s1 = s0 - lr (dCE/ds + wd s0); W unchanged."""
    recipe = EdgePopupRecipe(tiny_config(weight_decay=1e-2, learning_rate=0.05, baseline=False))
    model = recipe.build_model()
    layers = [lyr for lyr in model.subnet.layers if isinstance(lyr, (EdgePopupConv2D, EdgePopupDense))]
    assert len(layers) == 2 * 1 + 3  # Conv2: one block of two convs, three FC
    assert {id(v) for v in model.subnet.trainable_variables} == {id(lyr.scores) for lyr in layers}
    images, labels = _batch(recipe)
    s0 = [lyr.scores.numpy().copy() for lyr in layers]
    w0 = [lyr.kernel.numpy().copy() for lyr in layers]
    with tf.GradientTape() as tape:
        logits = model.subnet(images, training=True)
        ce = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
        )
    grads = tape.gradient(ce, [lyr.scores for lyr in layers])
    expected_l2 = 1e-2 / 2 * sum(float((s.astype("float64") ** 2).sum()) for s in s0)
    logs = model.train_step((images, labels))
    np.testing.assert_allclose(float(logs["cross_entropy"]), float(ce), rtol=1e-5)
    np.testing.assert_allclose(float(logs["loss"]), float(ce) + expected_l2, rtol=1e-5)
    for lyr, s, w, g in zip(layers, s0, w0, grads):
        np.testing.assert_allclose(lyr.scores.numpy(), s - 0.05 * (g.numpy() + 1e-2 * s), atol=1e-6)
        np.testing.assert_array_equal(lyr.kernel.numpy(), w)
        n = lyr.kernel.shape.num_elements()
        assert int(lyr.mask().numpy().sum()) == n - int(0.5 * n)


def test_dense_baseline_same_architecture():
    recipe = EdgePopupRecipe(tiny_config())
    model = recipe.build_model()
    sub_shapes = [tuple(lyr.kernel.shape) for lyr in model.subnet.layers if hasattr(lyr, "kernel")]
    dense_shapes = [tuple(lyr.kernel.shape) for lyr in model.dense.layers if hasattr(lyr, "kernel")]
    assert sub_shapes == dense_shapes
    assert all(isinstance(v, keras.Variable) for v in model.dense.trainable_variables)
    assert len(model.dense.trainable_variables) == len(dense_shapes)


@pytest.mark.slow
def test_tiny_run_reports_both_accuracies_and_exports_pruned(tmp_path):
    from kerasnets.export import export_run

    recipe = EdgePopupRecipe(tiny_config(steps=6))
    fresh = recipe.build_model()
    result = engine.train(recipe, str(tmp_path / "run"), progress_stream=open(os.devnull, "w"))
    s = result.summary
    assert {"test_accuracy", "dense_test_accuracy", "chance_accuracy", "kept_fraction"} <= set(s)
    assert s["chance_accuracy"] == pytest.approx(0.1)
    assert 0.49 < s["kept_fraction"] <= 0.51
    assert os.path.isfile(s["plot"])
    model = result.model
    # same seed -> same frozen weights as a freshly built model: training never touched them
    for a, b in zip(fresh.subnet.non_trainable_weights, model.subnet.non_trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    moved = max(
        float(np.abs(a.numpy() - b.numpy()).max())
        for a, b in zip(fresh.subnet.trainable_weights, model.subnet.trainable_weights)
    )
    assert moved > 0
    # export: plain pruned net, equal to the subnet's inference output
    images = recipe.data().x_test[:5]
    endpoint = recipe.export_endpoints(model)["serving_default"]
    probs = endpoint.fn(images=tf.constant(images))["probabilities"].numpy()
    want = tf.nn.softmax(model.subnet(images, training=False)).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-6)
    report = export_run(recipe, model, formats=("savedmodel", "tflite"), export_root=str(tmp_path / "sm"))
    assert report.signatures["serving_default"] == ["images"]
    assert report.max_error("tflite") <= 1e-4


@pytest.mark.slow
def test_cifar10_offline_with_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds.core.splits.SplitDict, "total_num_examples", property(lambda self: 20))
    config = tiny_config(data="cifar10", data_dir="/nonexistent-cifar-dir", batch_size=8, baseline=False)
    recipe = EdgePopupRecipe(config)
    with tfds.testing.mock_data(num_examples=20):
        data = recipe.data()
    assert recipe.image_shape() == (32, 32, 3) and data.flip
    images, labels = next(iter(recipe.build_dataset("train")))
    assert images.shape == (8, 32, 32, 3)
    model = recipe.build_model()
    assert np.isfinite(float(model.train_step((images, labels))["loss"]))
    assert 0.0 <= recipe.evaluate(model)["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_two_replicas_match_one_device(tmp_path, two_cpu_strategy):
    """Global batch split over 2 replicas: same losses and scores as one device (mask is deterministic)."""
    quiet = open(os.devnull, "w")
    single = engine.train(EdgePopupRecipe(tiny_config(steps=3, baseline=False)), str(tmp_path / "one"),
                          progress_stream=quiet)
    mirrored = engine.train(EdgePopupRecipe(tiny_config(steps=3, baseline=False, strategy="mirrored")),
                            str(tmp_path / "two"), strategy=two_cpu_strategy, progress_stream=quiet)
    np.testing.assert_allclose(mirrored.final_logs["loss"], single.final_logs["loss"], rtol=1e-4)
    for a, b in zip(single.model.subnet.trainable_weights, mirrored.model.subnet.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
