"""BEGAN's boundary-equilibrium objective (Berthelot, Schumm, Metz 2017).

The discriminator of BEGAN is an auto-encoder `D: R^Nx -> R^Nx`. Its
per-image reconstruction loss (eta = 1, the paper's choice) is

    L(v) = |v - D(v)|                                   (mean absolute error)

and the two players and the equilibrium controller are

    L_D     = L(x) - k_t * L(G(z_D))                    (discriminator)
    L_G     = L(G(z_G))                                 (generator)
    k_{t+1} = clip(k_t + lambda_k * (gamma * L(x) - L(G(z_G))), 0, 1)

with `gamma = E[L(G(z))] / E[L(x)]` the diversity ratio, `lambda_k = 0.001`
and `k_0 = 0`. Training progress is tracked by the global convergence measure

    M_global = L(x) + |gamma * L(x) - L(G(z_G))|.

All functions take and return tensors (any backend `keras.ops` accepts) so a
recipe's `train_step` can use them directly; they hold no state.

Reference:
    Berthelot, Schumm, Metz. "BEGAN: Boundary Equilibrium Generative
    Adversarial Networks." arXiv:1703.10717, 2017. Section 3.
"""

from __future__ import annotations

from keras import ops


def reconstruction_loss(x, x_rec, axis=None):
    """`L(v) = mean |v - D(v)|`: the auto-encoder's L1 reconstruction loss (eta = 1).

    Args:
        x: the images fed to the auto-encoder, e.g. `[batch, H, W, C]`.
        x_rec: the auto-encoder's output `D(x)`, same shape as `x`.
        axis: axes to average over. `None` (default) averages over every
            element, giving the batch's scalar `L(x)` used in the losses; pass
            e.g. `(1, 2, 3)` for one loss per image.

    Returns:
        The mean absolute reconstruction error, a scalar for `axis=None`.
    """
    x = ops.convert_to_tensor(x)
    x_rec = ops.convert_to_tensor(x_rec, dtype=x.dtype)
    if tuple(x.shape) != tuple(x_rec.shape) and None not in tuple(x.shape) + tuple(x_rec.shape):
        raise ValueError(f"reconstruction_loss: x has shape {tuple(x.shape)} but x_rec has {tuple(x_rec.shape)}")
    return ops.mean(ops.abs(x - x_rec), axis=axis)


def boundary_equilibrium_losses(loss_real, loss_fake_d, loss_fake_g, k_t):
    """The two players' objectives.

        L_D = L(x) - k_t * L(G(z_D))
        L_G = L(G(z_G))

    `k_t` weights how hard the discriminator pushes the reconstruction loss
    of generated images up; it is a constant for the gradient (the caller
    updates it with `update_k`).

    Args:
        loss_real: `L(x)`, the reconstruction loss of real images.
        loss_fake_d: `L(G(z_D))`, reconstruction loss of the fakes used for D.
        loss_fake_g: `L(G(z_G))`, reconstruction loss of the fakes used for G
            (the same tensor as `loss_fake_d` when one batch of fakes serves
            both players, as in the usual joint step).
        k_t: the current equilibrium weight in [0, 1].

    Returns:
        `(L_D, L_G)`.
    """
    k_t = ops.stop_gradient(ops.cast(k_t, ops.dtype(loss_real)))
    loss_d = loss_real - k_t * loss_fake_d
    loss_g = loss_fake_g
    return loss_d, loss_g


def update_k(k_t, loss_real, loss_fake, gamma, lambda_k):
    """Proportional control of the equilibrium `E[L(G(z))] = gamma E[L(x)]`.

        k_{t+1} = clip(k_t + lambda_k * (gamma * L(x) - L(G(z))), 0, 1)

    Args:
        k_t: current value of `k`.
        loss_real: `L(x)` of the step.
        loss_fake: `L(G(z_G))` of the step.
        gamma: diversity ratio in [0, 1].
        lambda_k: proportional gain (the paper uses 0.001).

    Returns:
        `k_{t+1}`, clipped to [0, 1]; no gradient flows through it.
    """
    balance = gamma * loss_real - loss_fake
    k_next = ops.cast(k_t, ops.dtype(balance)) + lambda_k * balance
    return ops.stop_gradient(ops.clip(k_next, 0.0, 1.0))


def convergence_measure(loss_real, loss_fake, gamma):
    """Global convergence measure.

        M_global = L(x) + |gamma * L(x) - L(G(z))|

    Low when the auto-encoder reconstructs real images well (first term) and
    the generator sits at the equilibrium `L(G(z)) = gamma L(x)` (second).
    """
    return loss_real + ops.abs(gamma * loss_real - loss_fake)
