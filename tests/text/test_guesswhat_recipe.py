"""guesswhat recipe: config checks, the supervised -> REINFORCE schedule (what each phase may change), tiny runs
of every stage (with init_from), evaluation, and the raw-string SavedModel endpoints in a fresh process."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.guesswhat import GuessWhatConfig, GuessWhatRecipe, PhaseLearningRate
from kerasnets.training import engine


def tiny(**overrides):
    base = dict(num_train=256, num_test=64, batch_size=16, steps=30, reinforce_steps=10, word_dim=16,
                oracle_units=16, guesser_units=16, qgen_units=16, category_dim=8, hidden_units=16, scene_dim=8,
                baseline_units=8, max_questions=2, max_question_tokens=5, num_eval_games=64, log_every=5,
                checkpoint_every=10**6, strategy="default", learning_rate=3e-3, rl_learning_rate=0.05)
    base.update(overrides)
    return GuessWhatConfig(**base)


def test_config_checks():
    with pytest.raises(ConfigError, match="stages"):
        apply_overrides(GuessWhatConfig(), {"stages": "('oracle', 'critic')"})
    with pytest.raises(ConfigError, match="repeats"):
        apply_overrides(GuessWhatConfig(), {"stages": "('oracle', 'oracle')"})
    with pytest.raises(ConfigError, match="needs trained guesser"):
        apply_overrides(GuessWhatConfig(), {"stages": "('oracle', 'qgen', 'reinforce')"})
    with pytest.raises(ConfigError, match="reinforce_steps"):
        apply_overrides(GuessWhatConfig(), {"steps": "100", "reinforce_steps": "100"})
    ok = apply_overrides(GuessWhatConfig(), {"stages": "('reinforce',)", "init_from": "/some/run"})
    assert ok.supervised_steps == 0
    assert GuessWhatConfig().supervised_steps == 4000 - 1500
    assert tiny(stages=("oracle",)).supervised_steps == 30
    with pytest.raises(ConfigError, match="data_dir"):
        GuessWhatRecipe(tiny(data="guesswhat")).data()
    schedule = PhaseLearningRate(0.1, 3)
    assert [float(schedule(s)) for s in (0, 2, 3, 9)] == pytest.approx([0.1, 0.1, 0.0, 0.0])


def test_registered():
    from kerasnets import registry

    assert registry.get("guesswhat") is GuessWhatRecipe


def _values(net):
    return [w.numpy().copy() for w in net.weights]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
def test_phase_schedule_updates_only_what_each_phase_trains():
    recipe = GuessWhatRecipe(tiny(steps=5, reinforce_steps=2))
    model = recipe.build_model()
    step = tf.function(model.train_step)
    it = iter(recipe.build_dataset())
    logs = []
    for i in range(5):
        before = {k: _values(getattr(model, k)) for k in ("oracle", "guesser", "qgen", "baseline")}
        logs.append({k: float(v) for k, v in step(next(it)).items()})
        after = {k: _values(getattr(model, k)) for k in before}
        supervised = i < 3
        for net in ("oracle", "guesser"):
            assert _same(before[net], after[net]) != supervised, (i, net)  # frozen in the REINFORCE phase
        assert not _same(before["qgen"], after["qgen"])  # Adam, then SGD
        assert _same(before["baseline"], after["baseline"]) == supervised
        if i == 2:
            supervised_qgen = after["qgen"]
        # The snapshot follows the generator during the supervised phase only.
        assert _same(_values(model.qgen_supervised), after["qgen"] if supervised else supervised_qgen)
    assert [l["phase"] for l in logs] == [0, 0, 0, 1, 1]
    assert logs[0]["oracle_loss"] > 0 and logs[3]["oracle_loss"] == 0
    assert 0 <= logs[4]["reward"] <= 1 and logs[4]["baseline_loss"] > 0 and logs[4]["questions"] > 0
    assert int(model.step_counter.numpy()) == 5


@pytest.mark.slow
def test_tiny_stages_init_from_evaluate_and_raw_string_export(tmp_path):
    from kerasnets.export import export_run, run_saved_model_in_subprocess

    supervised = GuessWhatRecipe(tiny(stages=("oracle", "guesser", "qgen"), steps=40, learning_rate=1e-2))
    first = engine.train(supervised, str(tmp_path / "sup"))
    h = first.history
    for key in ("oracle_loss", "guesser_loss", "qgen_loss"):  # every supervised stage learns
        assert np.mean([r[key] for r in h[-2:]]) < np.mean([r[key] for r in h[:2]]), key
    s = first.summary
    assert 0 <= s["oracle_error"] < 0.6 and 0 <= s["guesser_error"] <= 1
    assert 0 <= s["success_supervised_greedy"] <= 1 and "success_reinforce_greedy" not in s
    assert (tmp_path / "sup" / "plots" / "supervised.png").exists()

    rl = GuessWhatRecipe(tiny(stages=("reinforce",), init_from=str(tmp_path / "sup"), steps=6))
    second = engine.train(rl, str(tmp_path / "rl"))
    model = second.model
    # init_from loaded the trained networks; the oracle stayed as trained.
    assert _same(_values(model.oracle), _values(first.model.oracle))
    assert _same(_values(model.qgen_supervised), _values(first.model.qgen))
    assert not _same(_values(model.qgen), _values(first.model.qgen))
    ev = second.summary
    for key in ("success_supervised_greedy", "success_supervised_sampled", "success_reinforce_greedy",
                "success_reinforce_sampled", "chance_success"):
        assert 0 <= ev[key] <= 1, key
    assert ev["success_supervised_greedy"] == pytest.approx(s["success_supervised_greedy"])
    assert [r["phase"] for r in second.history] == [1.0] * len(second.history)

    # SavedModel: raw strings in, reloaded in a fresh process without kerasnets.
    report = export_run(rl, model, export_root=str(tmp_path / "sm"))
    assert report.max_error("savedmodel") <= 1e-5
    assert set(report.signatures) == {"serving_default", "guesser", "question_generator"}
    test = rl.data()[1].subset(slice(0, 4))
    inputs = rl.guesser_inputs(test)
    inputs["dialogue"] = np.array([b"Is it a CUP? <Yes> is it on the LEFT? <no>", b"", test.dialogues[2].encode(),
                                   b"is it a zebra? <n/a>"])
    fresh = run_saved_model_in_subprocess(report.saved_model_dir,
                                          {"guesser": inputs, "question_generator": inputs})
    endpoints = rl.export_endpoints(model)
    specs = {s.name: s for s in endpoints["guesser"].input_signature}
    feed = {k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}
    want = endpoints["guesser"].fn(**feed)
    np.testing.assert_allclose(fresh["guesser"]["probabilities"], want["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_allclose(fresh["guesser"]["probabilities"].sum(1), 1.0, atol=1e-5)
    assert (fresh["guesser"]["probabilities"][~test.object_mask] == 0).all()
    question = endpoints["question_generator"].fn(**feed)["question"].numpy()
    assert fresh["question_generator"]["question"].tolist() == question.tolist()
    oracle = run_saved_model_in_subprocess(report.saved_model_dir, {"serving_default": {
        "question": np.array([b"Is it a DOG?", b"is it on the left?"]), "category": np.array([5, 1], np.int32),
        "bbox": np.array([[10, 10, 50, 50], [500, 10, 50, 50]], np.float32),
        "image_size": np.array([[640, 480], [640, 480]], np.float32)}})["serving_default"]
    assert oracle["probabilities"].shape == (2, 3)
    assert set(oracle["answer"].tolist()) <= {b"yes", b"no", b"n/a"}
