"""CLI: every usage error exits 2 with a message and writes nothing; show; help is TF-free."""

import json
import os
import subprocess
import sys

import pytest

from kerasnets import config as config_lib
from kerasnets.cli import main

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_TESTS = os.path.join(os.path.dirname(HERE), "engine")
TOY = "recipe=toy_recipe:ToyRecipe"


@pytest.fixture(autouse=True)
def _toy_on_path(monkeypatch):
    monkeypatch.syspath_prepend(ENGINE_TESTS)


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def _nothing_written(tmp_path):
    assert not (tmp_path / "runs").exists(), "a usage error wrote a run directory"
    assert not (tmp_path / "saved_models").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("train",), "needs recipe=NAME. Valid recipes: "),
        (("train", "recipe=begn"), "unknown recipe 'begn'. Did you mean 'began'?"),
        (("train", "recipe=begn"), "began, bit_flip_attack"),
        (("train", TOY, "stesp=3"), "unknown key 'stesp' for ToyConfig. Did you mean 'steps'?"),
        (("train", TOY, "steps=abc"), "bad value for 'steps': 'abc' (str); expected int"),
        (("train", TOY, "steps=2.5"), "bad value for 'steps': 2.5 (float); expected int"),
        (("train", TOY, "steps=0"), "bad value for 'steps': 0; expected a value in [1, inf]"),
        (("train", TOY, "hidden=99999"), "expected a value in [1, 4096]"),
        (("train", TOY, "download=maybe"), "expected bool"),
        (("train", TOY, "learning_rate=1e999"), "expected a finite number"),
        (("train", TOY, "learning_rate=nan"), "expected float"),
        (("train", TOY, "steps"), "expected key=value, got 'steps'"),
        (("train", TOY, "steps=3", "steps=4"), "key 'steps' given twice"),
        (("train", TOY, "steps=__import__('os').system('true')"), "bad value for 'steps'"),
        (("show", TOY, "nope=1"), "Valid keys: batch_size, checkpoint_every"),
        (("evaluate", TOY), "needs run=DIR"),
        (("evaluate", TOY, "run=does/not/exist"), "does not exist"),
        (("export", TOY, "run=x", "format=onnx"), "expected one of savedmodel, tflite, tflite-fp16, tflite-int8"),
        (("export", TOY, "run=x", "version=0"), "expected a positive integer"),
        (("export", TOY, "run=x", "steps=3"), "unknown key(s): steps"),
    ],
)
def test_usage_errors_exit_2_with_message_and_write_nothing(capsys, tmp_path, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (out, err)
    assert message in err, err
    _nothing_written(tmp_path)


def test_unknown_command_exits_2(capsys):
    code, _, err = run_cli(capsys, "trian")
    assert code == 2 and "No such command" in err


def test_show_prints_the_resolved_config(capsys):
    code, out, _ = run_cli(capsys, "show", TOY, "steps=7", "learning_rate=0.2", "--json")
    assert code == 0
    resolved = json.loads(out)
    assert resolved["steps"] == 7 and resolved["learning_rate"] == 0.2 and resolved["batch_size"] == 16
    code, out, _ = run_cli(capsys, "show", TOY, "data_dir=/some/where")
    assert code == 0
    assert 'data_dir = "/some/where"' in out and "# int. number of training steps" not in out
    assert "steps = 30    # int." in out


def test_literal_values_are_parsed_not_evaluated():
    assert config_lib.parse_literal("(3, 3)") == (3, 3)
    assert config_lib.parse_literal("null") is None
    assert config_lib.parse_literal("os.system('x')") == "os.system('x')"  # stays a string


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from kerasnets.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'kerasnets --help imported tensorflow'\n"
        "assert 'keras' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "export" in result.stdout


@pytest.mark.slow
def test_train_evaluate_export_through_the_cli(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", TOY, "run=cli", "steps=6", "checkpoint_every=3")
    assert code == 0, err
    run_dir = tmp_path / "runs" / "toy" / "cli"
    assert (run_dir / "config.json").exists() and (run_dir / "summary.json").exists()
    assert "eval  accuracy" in out
    code, out, err = run_cli(capsys, "evaluate", TOY, f"run={run_dir}")
    assert code == 0, err
    assert "toy @ step 6" in out and json.loads((run_dir / "eval.json").read_text())["step"] == 6
    code, out, err = run_cli(capsys, "export", TOY, f"run={run_dir}", "format=tflite")
    assert code == 0, err
    assert (tmp_path / "saved_models" / "toy" / "1" / "saved_model.pb").exists()
    assert 'name: "toy"' in (tmp_path / "saved_models" / "models.config").read_text()
    assert "reloaded without kerasnets" in out and "TFLite tflite" in out
    code, out, err = run_cli(capsys, "export", TOY, f"run={run_dir}", "version=1")
    assert code != 0 and "exists" in err  # versions are never overwritten
    # A killed/failed run cannot be resumed with another config: usage error, nothing changed.
    before = (run_dir / "config.json").read_text()
    code, _, err = run_cli(capsys, "train", TOY, "run=cli", "hidden=8")
    assert code == 2 and "different config (hidden: 16 -> 8)" in err
    assert (run_dir / "config.json").read_text() == before


@pytest.mark.slow
def test_nan_loss_exits_nonzero_naming_the_step(capsys):
    code, _, err = run_cli(capsys, "train", TOY, "run=nan", "steps=10", "nan_at_step=4")
    assert code == 1
    assert "non-finite value at step 4" in err
