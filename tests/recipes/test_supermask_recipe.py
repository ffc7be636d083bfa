"""supermask recipe: defaults, straight-through train step, engine run with dense baseline, pruned export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import SupermaskConv2D, SupermaskDense
from kerasnets.recipes.supermask import SupermaskConfig, SupermaskRecipe
from kerasnets.training import engine


def tiny_config(**overrides):
    values = dict(steps=4, batch_size=16, width_mult=0.125, strategy="default", log_every=2, checkpoint_every=100)
    values.update(overrides)
    return SupermaskConfig(**values)


def test_defaults():
    c = SupermaskConfig()
    assert (c.depth, c.learning_rate, c.momentum, c.weight_decay) == (2, 100.0, 0.9, 0.0)
    assert c.weight_init == "kaiming_normal" and not c.scale_fan and c.baseline


def test_registered():
    from kerasnets import registry

    assert registry.get("supermask") is SupermaskRecipe


def test_train_step_updates_logits_only_and_masks_are_sampled():
    recipe = SupermaskRecipe(tiny_config(baseline=False, learning_rate=1.0, momentum=0.0))
    model = recipe.build_model()
    layers = [lyr for lyr in model.subnet.layers if isinstance(lyr, (SupermaskConv2D, SupermaskDense))]
    assert len(layers) == 5 and all(lyr.eval_mask == "threshold" for lyr in layers)
    data = recipe.data()
    batch = (tf.constant(data.x_train[:16]), tf.constant(data.y_train[:16]))
    w0 = [lyr.kernel.numpy().copy() for lyr in layers]
    s0 = [lyr.scores.numpy().copy() for lyr in layers]
    np.testing.assert_array_equal(s0[0], 0.0)  # Zhou: logits start at 0, p = 0.5
    logs = model.train_step(batch)
    assert np.isfinite(float(logs["loss"]))
    for lyr, w, s in zip(layers, w0, s0):
        np.testing.assert_array_equal(lyr.kernel.numpy(), w)
        assert np.count_nonzero(lyr.scores.numpy() - s) > 0.5 * s.size  # straight-through reaches most logits


@pytest.mark.slow
def test_tiny_run_reports_both_accuracies_and_exports_pruned(tmp_path):
    recipe = SupermaskRecipe(tiny_config(steps=6))
    result = engine.train(recipe, str(tmp_path / "run"), progress_stream=open(os.devnull, "w"))
    s = result.summary
    keys = {"test_accuracy", "sampled_test_accuracy", "dense_test_accuracy", "chance_accuracy", "kept_fraction"}
    assert keys <= set(s)
    assert 0.0 < s["kept_fraction"] < 1.0
    model = result.model
    images = recipe.data().x_test[:6]
    probs = recipe.export_endpoints(model)["serving_default"].fn(images=tf.constant(images))["probabilities"].numpy()
    want = tf.nn.softmax(model.subnet(images, training=False)).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-6)
    # deterministic at inference (threshold mask): two calls agree
    first, second = (model.subnet(images, training=False).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)
