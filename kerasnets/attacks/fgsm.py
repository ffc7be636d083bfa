"""Fast gradient sign method (Goodfellow, Shlens, Szegedy 2015, arXiv 1412.6572).

    x_adv = clip(x + eps * sign(grad_x L(f(x), y)), lo, hi)

with L the softmax cross-entropy of the classifier's logits against the true
label. Used by the `gat` recipe to compare robustness at fixed eps.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _ce(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def fgsm(model, images, labels, eps: float, clip=(0.0, 1.0)):
    """Adversarial images `clip(x + eps * sign(dL/dx))` (a tensor like `images`).

    Args:
        model: logits model.
        images: float batch.
        labels: int labels (the loss is raised for these labels).
        eps: L-infinity step size (>= 0).
        clip: `(lo, hi)` box, or None for no clipping.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(_ce(labels, model(x, training=False)))
    grad = tape.gradient(loss, x)
    adv = x + eps * tf.sign(grad)
    if clip is not None:
        adv = tf.clip_by_value(adv, clip[0], clip[1])
    return adv


def fgsm_accuracy(model, images, labels, eps: float, clip=(0.0, 1.0), batch_size: int = 256) -> float:
    """Top-1 accuracy of `model` on FGSM examples crafted against `model` itself (white box)."""
    labels = np.asarray(labels)
    correct = 0
    for i in range(0, len(images), batch_size):
        xb, yb = images[i : i + batch_size], labels[i : i + batch_size]
        adv = fgsm(model, xb, yb, eps, clip)
        pred = np.argmax(model(adv, training=False).numpy(), -1)
        correct += int(np.sum(pred == yb))
    return correct / max(len(images), 1)
