"""Balanced positive/negative sampling of anchors (RPN) and proposals (RoI head).

Faster R-CNN (Ren et al. 2015, Sec. 3.1.3) trains the RPN on 256 anchors per
image "where the sampled positive and negative anchors have a ratio of up to
1:1. If there are fewer than 128 positive samples in an image, we pad the
mini-batch with negative ones". Fast R-CNN (Girshick 2015, Sec. 2.3) samples
RoIs with 25 % foreground; Mask R-CNN uses 512 RoIs per image at 1:3.

The sampling is uniform without replacement inside each group and is a pure
function of `seed` (stateless random ops), so a step is reproducible and
different replicas can pass different seeds.
"""

from __future__ import annotations

import tensorflow as tf

RPN_BATCH_SIZE_PER_IMAGE = 256
RPN_POSITIVE_FRACTION = 0.5
ROI_BATCH_SIZE_PER_IMAGE = 512
ROI_POSITIVE_FRACTION = 0.25


def _seed_tensor(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
    if seed.shape.rank != 1 or (seed.shape[0] is not None and seed.shape[0] != 2):
        raise ValueError(f"seed must be an int or a shape-[2] tensor, got shape {seed.shape}")
    return seed


def _take_random(mask, count, uniform):
    """`mask` restricted to `count` (per row) uniformly chosen True entries."""
    key = tf.where(mask, uniform, 2.0)  # candidates first, in random order
    rank = tf.argsort(tf.argsort(key, axis=-1, stable=True), axis=-1, stable=True)
    return mask & (rank < count)


def sample_balanced(labels, num_samples: int, positive_fraction: float, seed):
    """Choose at most `num_samples` entries per row: up to `positive_fraction` positives, the rest negatives.

    Args:
        labels: `[..., N]` ints: > 0 positive (objectness 1 or a class id),
            0 negative/background, < 0 ignored (never sampled).
        num_samples: sampled entries per row (256 for the RPN, 512 for RoIs).
        positive_fraction: target share of positives (0.5 RPN, 0.25 RoIs);
            missing positives are replaced by negatives.
        seed: int or shape-[2] int tensor for the stateless random ops.

    Returns:
        `(positive_mask, negative_mask)`, bool `[..., N]`, disjoint. Each row
        has `min(#pos, int(num_samples * positive_fraction))` positives and
        `min(#neg, num_samples - that)` negatives.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    labels = tf.convert_to_tensor(labels)
    positive = labels > 0
    negative = tf.equal(labels, 0)
    max_positive = int(num_samples * positive_fraction)
    num_pos = tf.minimum(tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True), max_positive)
    num_neg = tf.minimum(
        tf.reduce_sum(tf.cast(negative, tf.int32), axis=-1, keepdims=True), num_samples - num_pos
    )
    # Philox explicitly: "auto_select" may pick another generator under XLA, changing the samples.
    uniform = tf.random.stateless_uniform(tf.shape(labels), seed=_seed_tensor(seed), alg="philox")
    return _take_random(positive, num_pos, uniform), _take_random(negative, num_neg, uniform)


def sample_rpn_anchors(labels, seed, num_samples: int = RPN_BATCH_SIZE_PER_IMAGE,
                       positive_fraction: float = RPN_POSITIVE_FRACTION):
    """`sample_balanced` with the RPN defaults (256 anchors per image, 50 % positive)."""
    return sample_balanced(labels, num_samples, positive_fraction, seed)


def sample_rois(labels, seed, num_samples: int = ROI_BATCH_SIZE_PER_IMAGE,
                positive_fraction: float = ROI_POSITIVE_FRACTION):
    """`sample_balanced` with the RoI-head defaults (512 RoIs per image, 25 % foreground)."""
    return sample_balanced(labels, num_samples, positive_fraction, seed)


def sampled_indices(positive_mask, negative_mask, num_samples: int):
    """Fixed-size indices of the sampled entries: positives first, then negatives, then padding.

    Returns `(indices [..., num_samples] int32, valid [..., num_samples] bool)`;
    padding slots (fewer sampled entries than `num_samples`) point at index 0
    with `valid=False`. Gather RoIs with `tf.gather(..., batch_dims=...)` so the
    head sees a static number of RoIs.
    """
    positive_mask = tf.convert_to_tensor(positive_mask)
    n = positive_mask.shape[-1]
    if n is not None and n < num_samples:
        raise ValueError(f"cannot take {num_samples} samples from {n} entries")
    group = tf.where(positive_mask, 0, tf.where(tf.convert_to_tensor(negative_mask), 1, 2))
    order = tf.argsort(group, axis=-1, stable=True)[..., :num_samples]
    valid = tf.gather(group, order, batch_dims=group.shape.rank - 1) < 2
    return tf.where(valid, order, 0), valid
