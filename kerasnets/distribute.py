"""tf.distribute helpers shared by the engine and the recipes' train steps."""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """Pick the strategy: `auto` = multi_worker if TF_CONFIG names >1 worker, mirrored if
    several local devices (GPUs, or logical CPUs set up by the caller), else default.

    MultiWorkerMirroredStrategy must be created before any other TF op runs, so
    call this first in a process.
    """
    if kind == "auto":
        if _tf_config_workers() > 1:
            kind = "multi_worker"
        elif len(_local_devices()) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(_local_devices())
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy '{kind}'")


def _tf_config_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _local_devices() -> list[str]:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [d.name for d in gpus]
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that owns the run directory (always true off multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss(loss):
    """Per-replica mean loss -> the share that, summed over replicas, is the global mean.

    Keras' TF optimizer *sums* gradients over replicas, so a hand-written mean
    loss must be divided by the replica count (Keras' own `keras.losses.*`
    objects already do this inside a replica context).
    """
    return loss / tf.cast(num_replicas(), loss.dtype)


def replica_id():
    """This replica's id as an int32 scalar tensor (0 outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return tf.constant(0, tf.int32)
    return tf.cast(ctx.replica_id_in_sync_group, tf.int32)


def replica_seed(seed_generator):
    """A stateless-RNG seed `[2] int32` that differs per replica and per call.

    `keras.random.SeedGenerator` alone yields the *same* noise on every
    replica; folding the replica id in makes each replica's noise distinct
    while the generator's state (checkpointed) keeps resumed runs identical.
    """
    seed = tf.cast(seed_generator.next(), tf.int32)
    return tf.random.experimental.stateless_fold_in(seed, replica_id())
