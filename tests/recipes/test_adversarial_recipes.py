"""lbfgs_attack, bit_flip_attack, gat: configs, tiny engine runs, resume, 2 replicas, export."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets import registry
from kerasnets.attacks.quantization import QuantizedModel, dequantize
from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.bit_flip_attack import BitFlipAttackConfig, BitFlipAttackRecipe
from kerasnets.recipes.gat import GATConfig, GATRecipe
from kerasnets.recipes.lbfgs_attack import LBFGSAttackConfig, LBFGSAttackRecipe
from kerasnets.training import engine

DEVNULL = open(os.devnull, "w")
TINY = dict(steps=30, batch_size=32, max_train=300, max_test=60, num_attack=3, num_plot=2, log_every=10,
            strategy="default")


def _train(recipe, path, **kw):
    return engine.train(recipe, str(path), progress_stream=DEVNULL, **kw)


def test_registered_and_configs_checked():
    assert registry.get("lbfgs_attack") is LBFGSAttackRecipe
    assert registry.get("bit_flip_attack") is BitFlipAttackRecipe
    assert registry.get("gat") is GATRecipe
    with pytest.raises(ConfigError, match="norm"):
        apply_overrides(LBFGSAttackConfig(), {"norm": "l1"})
    with pytest.raises(ConfigError, match="target_accuracy"):
        apply_overrides(BitFlipAttackConfig(), {"target_accuracy": "1.5"})
    with pytest.raises(ConfigError, match="max_train"):
        apply_overrides(GATConfig(), {"max_train": "10", "batch_size": "64"})
    with pytest.raises(ConfigError, match="fgsm_eps"):
        apply_overrides(GATConfig(), {"fgsm_eps": "()"})


@pytest.mark.slow
def test_lbfgs_recipe_tiny_run_and_resume(tmp_path):
    attack = dict(search_steps=2, max_iterations=30)
    result = _train(LBFGSAttackRecipe(LBFGSAttackConfig(**TINY, **attack)), tmp_path / "run")
    s = result.summary
    assert s["targeted_num_attacked"] == 3
    assert 0.0 <= s["targeted_success_rate"] <= 1.0 and 0.0 <= s["untargeted_success_rate"] <= 1.0
    assert s["test_accuracy_A"] > 0.3 and s["test_accuracy_B"] > 0.2
    assert os.path.isfile(s["plots"]["targeted"])
    with open(tmp_path / "run" / "summary.json") as f:
        assert json.load(f)["targeted_num_attacked"] == 3
    # resume to more steps: weights and both optimizers come back from the checkpoint
    again = LBFGSAttackRecipe(LBFGSAttackConfig(**{**TINY, "steps": 40}, **attack))
    again.on_train_end = lambda *args: {}  # attacks were checked above
    resumed = _train(again, tmp_path / "run")
    assert resumed.resumed_from == 30
    assert int(resumed.model.optimizers["A"].iterations) == 40
    assert int(resumed.model.optimizers["B"].iterations) == 40


@pytest.mark.slow
def test_bit_flip_recipe_tiny_run_writes_codes_and_exports(tmp_path):
    from kerasnets.export import export_run

    config = BitFlipAttackConfig(**TINY, classifier="mlp", max_flips=6, random_trials=2, random_max_flips=10,
                                 attack_batch=32)
    recipe = BitFlipAttackRecipe(config)
    result = _train(recipe, tmp_path / "run")
    s = result.summary
    assert 1 <= s["bfa_flips"] <= 6
    assert s["bfa_loss_first_last"][1] > s["bfa_loss_first_last"][0]
    assert abs(s["test_accuracy_8bit"] - s["test_accuracy_float"]) < 0.1
    with open(tmp_path / "run" / "bit_flips.json") as f:
        log = json.load(f)
    assert len(log["flips"]) == s["bfa_flips"]
    assert all(b > a for a, b in zip(log["loss"], log["loss"][1:]))
    q, steps = QuantizedModel.load_codes(str(tmp_path / "run" / "quantized_weights.npz"))
    # the exported classifier runs on the *clean* int8 codes
    exported = recipe.exported_classifier(result.model)
    for name in q:
        np.testing.assert_array_equal(exported.get_layer(name).kernel.numpy(), dequantize(q[name], steps[name]))
    report = export_run(recipe, result.model, formats=("savedmodel",), export_root=str(tmp_path / "export"))
    assert report.max_error("savedmodel") <= 1e-5
    assert report.signatures["serving_default"] == ["images"]


@pytest.mark.slow
@pytest.mark.distributed
def test_gat_recipe_two_replicas_match_one_device(tmp_path, two_cpu_strategy):
    """The GAT step (input gradient, generator step, classifier step) is replica-correct."""
    config = GATConfig(**{**TINY, "steps": 3, "strategy": "auto"}, fgsm_eps=(0.1,), lbfgs_search_steps=1)
    single = _train(GATRecipe(config), tmp_path / "one", strategy=tf.distribute.get_strategy())
    mirrored_recipe = GATRecipe(config)
    mirrored_recipe.on_train_end = lambda *args: {}  # only the weights are compared: skip the attacks
    mirrored = _train(mirrored_recipe, tmp_path / "two", strategy=two_cpu_strategy)
    for part in ("classifier", "generator", "baseline"):
        a = getattr(single.model, part).get_weights()
        b = getattr(mirrored.model, part).get_weights()
        for x, y in zip(a, b):
            np.testing.assert_allclose(y, x, rtol=1e-4, atol=1e-5, err_msg=part)
    for key in ("loss_classifier", "loss_generator", "loss_baseline"):
        np.testing.assert_allclose(mirrored.final_logs[key], single.final_logs[key], rtol=1e-4, atol=1e-6)
    s = single.summary
    assert {"gat_fgsm_accuracy_eps0.1", "baseline_fgsm_accuracy_eps0.1", "gat_lbfgs_mean_distortion_rms",
            "baseline_lbfgs_mean_distortion_rms"} <= set(s)
    for key in ("generator", "fgsm_gat", "fgsm_baseline"):
        assert os.path.isfile(s["plots"][key])


@pytest.mark.slow
def test_tfds_sources_offline_with_mock_data():
    import tensorflow_datasets as tfds

    base = dict(batch_size=8, max_train=16, max_test=8, num_attack=2, strategy="default")
    with tfds.testing.mock_data(num_examples=16):
        lbfgs = LBFGSAttackRecipe(LBFGSAttackConfig(**base, data="mnist", search_steps=1, max_iterations=5,
                                                    untargeted=False))
        lbfgs.data()
        gat = GATRecipe(GATConfig(**base, data="cifar10", fgsm_eps=(0.1,), lbfgs_search_steps=1))
        gat.data()
    assert lbfgs.image_shape() == (28, 28, 1) and gat.image_shape() == (32, 32, 3)
    model = lbfgs.build_model()
    logs = model.train_step(next(iter(lbfgs.build_dataset("train"))))
    assert np.isfinite(float(logs["loss_A"]))
    metrics = lbfgs.evaluate(model)
    assert metrics["targeted_num_attacked"] <= 2
    model = gat.build_model()
    images, labels = next(iter(gat.build_dataset("train")))
    assert images.shape == (8, 32, 32, 3)
    logs = model.train_step((images, labels))
    assert np.isfinite(float(logs["loss_generator"]))
    assert model.perturbation(images, labels).shape == images.shape
