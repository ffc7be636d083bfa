"""Deterministic, resumable example streams for in-memory data.

Training data is an endless stream of epochs; epoch `e` visits the examples in
a pseudo-random order fixed by `(seed, e)`. Batch `b` of the stream holds the
examples at stream positions `[b * batch, (b + 1) * batch)`. Because the
permutation is computed statelessly per position
(`tf.random.experimental.index_shuffle`), a run resumed at step `s` starts at
batch `s` directly: no replay, and exactly the batches an uninterrupted run
would have seen.
"""

from __future__ import annotations

import tensorflow as tf


def stream_indices(num_examples: int, batch_size: int, seed: int, start_step: int = 0) -> tf.data.Dataset:
    """Endless dataset of int64 index batches `[batch_size]`, starting at batch `start_step`."""
    if num_examples < 1:
        raise ValueError("stream_indices needs at least one example")
    n = tf.constant(num_examples, tf.int64)

    def batch_indices(step):
        positions = step * batch_size + tf.range(batch_size, dtype=tf.int64)
        epoch = positions // n
        within = positions % n
        # A batch spans at most two epochs (batch_size <= num_examples).
        first = epoch[0]
        perm_a = tf.random.experimental.index_shuffle(within, tf.stack([tf.cast(seed, tf.int64), first]), n - 1)
        perm_b = tf.random.experimental.index_shuffle(within, tf.stack([tf.cast(seed, tf.int64), first + 1]), n - 1)
        return tf.where(epoch == first, perm_a, perm_b)

    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} is larger than the data set ({num_examples} examples)")
    return tf.data.Dataset.range(start_step, 2**62).map(batch_indices)


def array_dataset(arrays, batch_size: int, seed: int, start_step: int = 0, map_fn=None) -> tf.data.Dataset:
    """Endless shuffled batches of in-memory `arrays` (a tuple/dict of equal-length arrays).

    `map_fn(batch, step)` (optional) transforms each batch, e.g. augmentation
    with stateless ops seeded by `step` so it is reproducible on resume.
    """
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    n = int(tf.nest.flatten(tensors)[0].shape[0])
    steps = tf.data.Dataset.range(start_step, 2**62)
    indices = stream_indices(n, batch_size, seed, start_step)

    def gather(step, idx):
        batch = tf.nest.map_structure(lambda t: tf.gather(t, idx), tensors)
        return map_fn(batch, step) if map_fn is not None else batch

    ds = tf.data.Dataset.zip((steps, indices)).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(arrays, batch_size: int) -> tf.data.Dataset:
    """One ordered pass over `arrays` (last batch may be short)."""
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)
