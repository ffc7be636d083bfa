"""Test-suite setup: 2 logical CPU devices so MirroredStrategy runs on a CPU-only box.

This must happen before TensorFlow initialises its devices, so it runs at
import time of the test session. Tests that need one device use the default
strategy explicitly (`strategy="default"` in configs).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture
def two_cpu_strategy():
    """MirroredStrategy over the two logical CPUs set up above.

    Fresh collective keys per test: strategies in one process otherwise share
    them and a differently shaped all-reduce aborts the process
    (tensorflow/tensorflow#62790).
    """
    from kerasnets.testing import fresh_mirrored_strategy

    return fresh_mirrored_strategy(("/cpu:0", "/cpu:1"))


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Runs and exports of a test go to its own temp dir, never the checkout."""
    monkeypatch.setenv("KERASNETS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("KERASNETS_EXPORT_ROOT", str(tmp_path / "saved_models"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
