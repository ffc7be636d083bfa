"""Run directories: `runs/<recipe>/<name>/` with the resolved config beside the checkpoints.

Layout of a run directory::

    config.json        recipe name + resolved config (written before step 1)
    checkpoints/       tf.train.CheckpointManager files
    tensorboard/       scalars and images
    metrics.jsonl      one line per logged step (history, used for plots)
    summary.json       what the recipe reports at the end
    samples/, plots/   recipe artefacts (PNG)

This module does not import TensorFlow.
"""

from __future__ import annotations

import datetime
import json
import os

from kerasnets import __version__
from kerasnets import config as config_lib
from kerasnets.errors import UsageError

CONFIG_FILE = "config.json"
DEFAULT_RUNS_ROOT = "runs"


def resolve(recipe_name: str, run: str | None, runs_root: str | None = None) -> str:
    """Path of the run directory for `run=` (a name under runs/<recipe>/ or a path)."""
    root = runs_root or os.environ.get("KERASNETS_RUNS", DEFAULT_RUNS_ROOT)
    if run is None:
        run = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if os.sep in run or run.startswith(".") or os.path.isdir(run):
        return os.path.abspath(run)
    return os.path.abspath(os.path.join(root, recipe_name, run))


def read(run_dir: str) -> tuple[str, dict]:
    """(recipe name, config dict) stored in a run directory."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise UsageError(f"'{run_dir}' is not a kerasnets run directory (no {CONFIG_FILE})")
    with open(path) as f:
        data = json.load(f)
    return data["recipe"], data["config"]


def load_config(run_dir: str, recipe_cls, overrides: dict[str, str] | None = None):
    """The config saved in `run_dir`, with optional CLI overrides applied on top."""
    name, stored = read(run_dir)
    if name != recipe_cls.name:
        raise UsageError(f"run '{run_dir}' was trained with recipe '{name}', not '{recipe_cls.name}'")
    config = config_lib.from_dict(recipe_cls.config_class, stored)
    if overrides:
        config = config_lib.apply_overrides(config, overrides)
    return config


def check_resume(run_dir: str, recipe_name: str, config) -> bool:
    """True if `run_dir` holds an earlier run of the same config (so we resume).

    Only `steps` (train longer) and the bookkeeping keys may change on resume;
    any other difference is a usage error rather than a silent mix of configs.
    """
    if not os.path.isfile(os.path.join(run_dir, CONFIG_FILE)):
        return False
    name, stored = read(run_dir)
    if name != recipe_name:
        raise UsageError(f"run directory '{run_dir}' belongs to recipe '{name}', not '{recipe_name}'")
    previous = config_lib.from_dict(type(config), stored)
    changed = {
        k: v
        for k, v in config_lib.diff(previous, config).items()
        if k not in ("steps", "checkpoint_every", "log_every", "keep_checkpoints", "strategy")
    }
    if changed:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise UsageError(
            f"run '{run_dir}' exists with a different config ({listing}); "
            "use a new run= name, or the same keys to resume"
        )
    return True


def write_config(run_dir: str, recipe_name: str, config) -> None:
    os.makedirs(run_dir, exist_ok=True)
    payload = {
        "recipe": recipe_name,
        "kerasnets_version": __version__,
        "config": config_lib.to_dict(config),
    }
    tmp = os.path.join(run_dir, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(run_dir, CONFIG_FILE))


def read_history(run_dir: str, up_to_step: int | None = None) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if up_to_step is None or row["step"] <= up_to_step:
                rows.append(row)
    return rows


def write_history(run_dir: str, rows: list[dict]) -> None:
    tmp = os.path.join(run_dir, "metrics.jsonl.tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, os.path.join(run_dir, "metrics.jsonl"))
