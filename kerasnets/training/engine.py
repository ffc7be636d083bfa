"""One training loop for one device, MirroredStrategy and MultiWorkerMirroredStrategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so the engine drives the recipe model's
`train_step` itself through `strategy.run`; the same code path then serves
all three strategies. Per step:

    per_replica = strategy.run(model.train_step, args=(batch,))
    logs = {k: strategy.reduce(MEAN, v) for k, v in per_replica.items()}

The loop owns the run directory, checkpoints (resume = same command, same
`run=`), TensorBoard, the progress line and the NaN/inf guard.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from kerasnets.errors import NonFiniteLossError
from kerasnets import distribute
from kerasnets.training import run_dir as run_dir_lib


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    model: object
    recipe: object
    history: list
    summary: dict
    final_logs: dict
    resumed_from: int


def _checkpoint(recipe, model, step_var) -> tf.train.Checkpoint:
    items = dict(recipe.checkpoint_items(model))
    # Seed-generator states and other untracked state (Keras 3 layers hold them
    # outside TF's object graph): save every model variable by position too.
    items["all_variables"] = list(model.variables)
    return tf.train.Checkpoint(step=step_var, **items)


def build_and_restore(recipe, run_dir: str, strategy=None):
    """Model restored from the latest checkpoint of `run_dir` (for evaluate/export)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = recipe.build_model()
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    ckpt = _checkpoint(recipe, model, step_var)
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        from kerasnets.errors import UsageError

        raise UsageError(f"run '{run_dir}' has no checkpoint yet")
    ckpt.restore(latest).expect_partial()
    return model, int(step_var.numpy())


class _Progress:
    """One status line: step, rate, key metrics. Redrawn in place on a TTY."""

    def __init__(self, total: int, keys, stream, every: int = 10, start_step: int = 0):
        self.total, self.keys, self.stream, self.every = total, tuple(keys), stream, every
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        # The rate counts from the first step on (tracing included), not from the first print.
        self.t0, self.s0 = time.perf_counter(), start_step

    def update(self, step: int, logs: dict, force: bool = False):
        if not (self.tty or force or step % self.every == 0 or step == self.total):
            return
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = (step - self.s0) / elapsed
        shown = [k for k in self.keys if k in logs] or list(logs)[:4]
        metrics = "  ".join(f"{k} {logs[k]:.4g}" for k in shown)
        line = f"step {step}/{self.total}  {rate:.2f} step/s  {metrics}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100) + ("\n" if step == self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def train(recipe, run_dir: str, *, strategy=None, progress_stream=None) -> TrainResult:
    """Train `recipe` (config in `recipe.config`) into `run_dir`; resume if it holds a run."""
    progress_stream = progress_stream or sys.stderr
    config = recipe.config
    strategy = strategy or distribute.make_strategy(config.strategy)
    chief = distribute.is_chief(strategy)

    resuming = run_dir_lib.check_resume(run_dir, recipe.name, config)
    # Hooks (on_log) may write artefacts straight away; only the chief owns the directory.
    recipe.run_dir = run_dir if chief else None
    if chief:
        run_dir_lib.write_config(run_dir, recipe.name, config)
    # Non-chief workers must take part in saving, into a throwaway directory.
    ckpt_dir = os.path.join(run_dir, "checkpoints") if chief else tempfile.mkdtemp(prefix="kn-worker-")

    with strategy.scope():
        model = recipe.build_model()
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    ckpt = _checkpoint(recipe, model, step_var)
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=config.keep_checkpoints)

    start_step = 0
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is not None:
        ckpt.restore(latest).assert_existing_objects_matched()
        start_step = int(step_var.numpy())
    elif resuming and chief:
        print(f"run '{run_dir}' has no checkpoint yet; starting from step 0", file=progress_stream)

    history = run_dir_lib.read_history(run_dir, up_to_step=start_step) if chief else []
    if start_step:
        print(f"resuming '{run_dir}' from step {start_step}", file=progress_stream)

    dataset = recipe.build_dataset("train", start_step=start_step)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))

    @tf.function
    def distributed_step(it):
        per_replica = strategy.run(model.train_step, args=(next(it),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard")) if chief else None
    progress = _Progress(config.steps, recipe.key_metrics, progress_stream, every=config.log_every, start_step=start_step)
    logs: dict = {}
    post_train: dict = {}

    def save(step):
        step_var.assign(step)
        manager.save(checkpoint_number=step)
        if chief:
            run_dir_lib.write_history(run_dir, history)

    try:
        for step in range(start_step + 1, config.steps + 1):
            logs = {k: float(v) for k, v in distributed_step(iterator).items()}
            bad = {k: v for k, v in logs.items() if not math.isfinite(v)}
            if bad:
                raise NonFiniteLossError(step, bad)
            progress.update(step, logs)
            if step % config.log_every == 0 or step == config.steps:
                history.append({"step": step, **logs})
                if writer is not None:
                    with writer.as_default(step=step):
                        for k, v in logs.items():
                            tf.summary.scalar(k, v)
                        recipe.on_log(model, step, writer)
            if step % config.checkpoint_every == 0 and step != config.steps:
                save(step)
        if config.steps > start_step:
            post_train = recipe.post_train(model) or {}
        if config.steps > start_step or latest is None:
            save(config.steps)
    finally:
        if writer is not None:
            writer.flush()
        if not chief:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    summary = {}
    # The weights are final: on_train_end and the CLI's eval.json share one evaluation.
    recipe._final_model, recipe._final_evaluation = model, None
    if chief:
        summary = recipe.on_train_end(model, run_dir, history) or {}
        summary = {"steps": config.steps, "final": logs, **post_train, **summary}
        with open(os.path.join(run_dir, "summary.json"), "w") as f:
            json.dump(_jsonable(summary), f, indent=2, sort_keys=True)
    return TrainResult(run_dir, model, recipe, history, summary, logs, start_step)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
