"""The one gradient step every train step uses: `minimize`.

A recipe's `train_step` computes its paper's loss under a `tf.GradientTape`
and hands the tape to `minimize`, which does the bookkeeping every step needs
and that used to be written out (slightly differently) in each recipe:

1. adds the model's regularisation losses (`model.losses`: kernel
   regularisers, `add_loss` terms), recorded on the same tape;
2. divides by `num_replicas_in_sync` (`distribute.scale_loss`), because the
   optimizer sums gradients over replicas;
3. multiplies by the loss scale of a `keras.optimizers.LossScaleOptimizer`
   (mixed float16; the base optimizer's `scale_loss` is the identity);
4. takes the gradient and applies it (a LossScaleOptimizer unscales, checks
   finiteness and skips the update on overflow inside `apply`).

Multi-optimizer steps (GANs) call it once per optimizer with a persistent tape.
This module does not depend on `kerasnets.training`, so models may import it.
"""

from __future__ import annotations

import tensorflow as tf

from kerasnets.distribute import scale_loss


def regularization_loss(model):
    """Sum of `model.losses` as a float32 scalar (0 when there are none).

    `model` may be a list of models (one optimizer training several networks).
    """
    models = model if isinstance(model, (list, tuple)) else [model]
    losses = [loss for m in models for loss in (getattr(m, "losses", None) or [])]
    if not losses:
        return tf.zeros([], tf.float32)
    return tf.add_n([tf.cast(loss, tf.float32) for loss in losses])


def minimize(tape, loss, variables, optimizer, *, model=None):
    """Apply one optimizer step on `loss` (a per-replica mean); return the total loss.

    Args:
        tape: the `tf.GradientTape` that recorded `loss` (re-entered here so the
            regularisation terms and loss scaling are recorded too; persistent if
            the caller takes more gradients from it).
        loss: scalar tensor, this replica's mean loss (unscaled).
        variables: the variables to update.
        optimizer: a Keras optimizer built over `variables` (may be a
            `LossScaleOptimizer`).
        model: if given (a model or a list of models), its regularisation
            losses (`model.losses`) are added.

    Returns:
        The unscaled float32 loss that was minimised (`loss` + regularisation), for logs.
    """
    variables = list(variables)
    total, grads = scaled_gradients(tape, loss, variables, optimizer, model=model)
    optimizer.apply(grads, variables)
    return total


def scaled_gradients(tape, loss, variables, optimizer, *, model=None, unconnected_gradients=None):
    """`minimize` without the apply: `(total, grads)` ready for `optimizer.apply(grads, variables)`.

    For the steps that must touch the gradients between the two (D-GEX's
    per-layer learning rates) or apply them outside a `tf.cond` branch
    (GuessWhat?!'s phases). The gradients carry the replica and loss scaling,
    so only `optimizer.apply` (which unscales) may consume them.
    """
    with tape:
        total = tf.cast(loss, tf.float32)
        if model is not None:
            total = total + regularization_loss(model)
        scaled = optimizer.scale_loss(scale_loss(total))
    kwargs = {} if unconnected_gradients is None else {"unconnected_gradients": unconnected_gradients}
    return total, tape.gradient(scaled, list(variables), **kwargs)
