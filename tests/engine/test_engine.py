"""Engine: replica-correct training, resume after SIGKILL, NaN guard, multi-worker sync."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.errors import NonFiniteLossError, UsageError
from kerasnets.training import engine
from toy_recipe import ToyConfig, ToyRecipe

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, REPO, env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def _weights(model):
    return [v.numpy() for v in model.net.trainable_variables]


def _checkpoint_arrays(run_dir):
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints"))
    keys = sorted(k for k in reader.get_variable_to_shape_map() if k.startswith("all_variables/"))
    return {k: reader.get_tensor(k) for k in keys}, reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")


@pytest.mark.slow
def test_one_device_and_two_replicas_train_to_same_weights(tmp_path, two_cpu_strategy):
    config = ToyConfig(steps=12, batch_size=16, noise=0.0, checkpoint_every=100)
    single = engine.train(ToyRecipe(config), str(tmp_path / "one"), strategy=tf.distribute.get_strategy())
    mirrored = engine.train(ToyRecipe(config), str(tmp_path / "two"), strategy=two_cpu_strategy)
    for a, b in zip(_weights(single.model), _weights(mirrored.model)):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # The state variable (aggregation="mean") ends equal on every replica and to the 1-device value.
    per_replica = mirrored.model.state.value if hasattr(mirrored.model.state, "value") else mirrored.model.state
    values = [float(v) for v in two_cpu_strategy.experimental_local_results(per_replica)]
    assert len(set(values)) == 1
    assert values[0] == pytest.approx(float(single.model.state.numpy()), rel=1e-5)
    assert single.final_logs["loss"] == pytest.approx(mirrored.final_logs["loss"], rel=1e-4)


@pytest.mark.slow
def test_loss_scaling_matters(tmp_path, two_cpu_strategy):
    """Guard for the test above: without scale_loss the 2-replica step would double."""
    config = ToyConfig(steps=1, batch_size=16, noise=0.0, learning_rate=0.5)
    base = ToyRecipe(config).build_model()
    start = _weights(base)
    run = engine.train(ToyRecipe(config), str(tmp_path / "two"), strategy=two_cpu_strategy)
    one = engine.train(ToyRecipe(config), str(tmp_path / "one"), strategy=tf.distribute.get_strategy())
    step_two = [b - a for a, b in zip(start, _weights(run.model))]
    step_one = [b - a for a, b in zip(start, _weights(one.model))]
    assert max(float(np.abs(s).max()) for s in step_one) > 1e-3
    for a, b in zip(step_one, step_two):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_run_directory_contents_and_resume_extends(tmp_path):
    run = str(tmp_path / "run")
    config = ToyConfig(steps=10, checkpoint_every=4, log_every=2)
    first = engine.train(ToyRecipe(config), run)
    assert first.resumed_from == 0
    with open(os.path.join(run, "config.json")) as f:
        saved = json.load(f)
    assert saved["recipe"] == "toy" and saved["config"]["steps"] == 10
    assert os.listdir(os.path.join(run, "tensorboard"))
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-10")
    # Same command with more steps continues from step 10.
    longer = engine.train(ToyRecipe(dataclasses.replace(config, steps=14)), run)
    assert longer.resumed_from == 10
    assert [row["step"] for row in longer.history] == [2, 4, 6, 8, 10, 12, 14]
    # A different config in the same run directory is refused.
    with pytest.raises(UsageError, match="learning_rate"):
        engine.train(ToyRecipe(dataclasses.replace(config, learning_rate=0.3)), run)


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    run = str(tmp_path / "run")
    config = ToyConfig(steps=20, checkpoint_every=5, nan_at_step=8)
    with pytest.raises(NonFiniteLossError, match="step 8") as info:
        engine.train(ToyRecipe(config), run)
    assert info.value.step == 8 and "loss" in info.value.metrics
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith("ckpt-5")


@pytest.mark.slow
def test_sigkill_mid_training_then_rerun_equals_uninterrupted(tmp_path):
    args = ["-m", "kerasnets", "train", "recipe=toy_recipe:ToyRecipe", "steps=30", "checkpoint_every=10", "log_every=5"]
    straight = subprocess.run(
        [sys.executable, *args, f"run={tmp_path / 'straight'}"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed = subprocess.run(
        [sys.executable, *args, f"run={tmp_path / 'killed'}"],
        env=_env(TOY_KILL_AT_STEP="12"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    assert tf.train.latest_checkpoint(str(tmp_path / "killed" / "checkpoints")).endswith("ckpt-10")

    resumed = subprocess.run(
        [sys.executable, *args, f"run={tmp_path / 'killed'}"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "from step 10" in resumed.stderr

    want, want_step = _checkpoint_arrays(str(tmp_path / "straight"))
    got, got_step = _checkpoint_arrays(str(tmp_path / "killed"))
    assert want_step == got_step == 30
    assert want.keys() == got.keys() and len(want) >= 5
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=key)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.distributed
def test_two_workers_with_tf_config_end_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    script = os.path.join(HERE, "multi_worker_main.py")
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(
            subprocess.Popen(
                [sys.executable, script, str(tmp_path / "run"), str(tmp_path / f"weights{index}.npz")],
                env=_env(TF_CONFIG=tf_config),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    w0 = np.load(tmp_path / "weights0.npz")
    w1 = np.load(tmp_path / "weights1.npz")
    assert w0.files == w1.files and len(w0.files) >= 4
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    assert int(w0["replicas"]) == 2
    # Only the chief (worker 0) writes the run directory.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-8")
