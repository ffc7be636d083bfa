"""Box-constrained L-BFGS adversarial examples (Szegedy et al. 2013, arXiv 1312.6199, section 4.1).

The paper defines the minimal adversarial perturbation of `x` towards label `l` as

    minimise ||r||_2  subject to  f(x + r) = l,  x + r in [0, 1]^m

and approximates it with box-constrained L-BFGS on

    minimise  c * |r| + loss_f(x + r, l)   subject to  x + r in [0, 1]^m       (paper, 4.1)

searching over `c > 0`. Which norm `|r|` is: the paper's penalty is the
(non-squared) L2 norm of r (the quantity it minimises); most implementations
(cleverhans) use the squared norm and put the constant on the loss instead.
We follow the paper by default (`norm="l2"`, made differentiable at r = 0 as
sqrt(sum r^2 + 1e-12)); `norm="l2_squared"` gives the common variant.

Search over c: a larger c weights the distortion more, so the *largest* c
whose minimiser still reaches the label gives the smallest distortion (the
paper says "minimum c"; with c on |r| the extreme that yields the minimal
distortion is the largest one). Per example we start at `initial_c`,
multiply/divide by 10 until both a succeeding and a failing c are known, then
bisect geometrically; the smallest-distortion success over all tries is kept.

`loss_f` is the softmax cross-entropy towards the target `l` (targeted).
Untargeted ("any label but the true y", not in the paper) uses
`-log(1 - p_y(x + r))`, which is bounded below and zero exactly when the
model gives the true label no mass.

Distortion: the paper reports `sqrt(sum_i r_i^2 / n)` over the n pixels
(pixels in [0, 1]), i.e. the RMS per-pixel change; `LBFGSResult.rms`. The
plain L2 norm is `LBFGSResult.l2`.

All examples of a batch are optimised jointly as one vector: the objective
is a sum of independent per-example terms (each with its own c), so the joint
minimiser is the tuple of per-example minimisers.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf
from scipy.optimize import fmin_l_bfgs_b

NORMS = ("l2", "l2_squared")
_EPS = 1e-12


@dataclasses.dataclass
class LBFGSResult:
    """Per-example outcome. Failed examples keep `adversarial == images` and NaN distortions."""

    images: np.ndarray  # the attacked inputs [N, ...]
    adversarial: np.ndarray
    success: np.ndarray  # bool [N]
    labels: np.ndarray  # true labels [N]
    targets: np.ndarray  # target labels, -1 for untargeted [N]
    predictions: np.ndarray  # model's label of `adversarial` [N]
    c: np.ndarray  # c of the kept solution (NaN when failed)
    l2: np.ndarray  # ||r||_2 (NaN when failed)
    rms: np.ndarray  # sqrt(sum r^2 / n), the paper's distortion (NaN when failed)

    @property
    def perturbation(self) -> np.ndarray:
        return self.adversarial - self.images

    def summary(self) -> dict:
        ok = self.success
        return {
            "num_attacked": int(len(ok)),
            "success_rate": float(np.mean(ok)) if len(ok) else float("nan"),
            "mean_l2": float(np.mean(self.l2[ok])) if ok.any() else float("nan"),
            "mean_distortion_rms": float(np.mean(self.rms[ok])) if ok.any() else float("nan"),
        }


def choose_targets(model, images, labels, mode: str = "random", seed: int = 0, num_classes: int | None = None):
    """Target labels != the true label: `"random"` (uniform over the others) or `"next_likely"`."""
    labels = np.asarray(labels, "int64")
    logits = model(tf.convert_to_tensor(images, tf.float32), training=False).numpy()
    k = num_classes or logits.shape[-1]
    if mode == "random":
        rng = np.random.default_rng(seed)
        offset = rng.integers(1, k, size=len(labels))
        return ((labels + offset) % k).astype("int32")
    if mode == "next_likely":
        masked = logits.copy()
        masked[np.arange(len(labels)), labels] = -np.inf
        return np.argmax(masked, -1).astype("int32")
    raise ValueError(f"unknown target mode '{mode}'; expected 'random' or 'next_likely'")


_OBJECTIVES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _make_objective(model, norm: str):
    """tf.function: (x_adv, x, c, labels, targeted) -> (sum objective, grad wrt x_adv, per-example pred).

    Cached per model and norm, so repeated attacks on one model trace once.
    """
    try:
        cache = _OBJECTIVES.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no caching
        cache = {}
    if norm not in cache:
        cache[norm] = _build_objective(model, norm)
    return cache[norm]


def _build_objective(model, norm: str):

    @tf.function(reduce_retracing=True, autograph=False)
    def objective(x_adv, x, c, labels, targeted):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = model(x_adv, training=False)
            r = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
            sq = tf.reduce_sum(tf.square(r), axis=1)
            dist = tf.sqrt(sq + _EPS) if norm == "l2" else sq
            ce_target = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            # -log(1 - p_y) = logsumexp(all) - logsumexp(all but y)
            mask = tf.one_hot(labels, tf.shape(logits)[-1], on_value=-np.inf, off_value=0.0, dtype=logits.dtype)
            not_y = tf.reduce_logsumexp(logits, -1) - tf.reduce_logsumexp(logits + mask, -1)
            loss = tf.where(targeted, ce_target, not_y)
            total = tf.reduce_sum(c * dist + loss)
        grad = tape.gradient(total, x_adv)
        # float64 for SciPy's L-BFGS-B
        return tf.cast(total, tf.float64), tf.cast(grad, tf.float64), tf.argmax(logits, -1, output_type=tf.int32)

    return objective


def lbfgs_attack(
    model,
    images,
    labels,
    targets=None,
    *,
    norm: str = "l2",
    initial_c: float = 1.0,
    search_steps: int = 8,
    max_iterations: int = 200,
    clip=(0.0, 1.0),
    batch_size: int = 128,
) -> LBFGSResult:
    """Minimal box-constrained adversarial examples, searched over c per example.

    Args:
        model: logits classifier (a callable on float32 batches).
        images: float array [N, ...] inside `clip`.
        labels: true int labels [N].
        targets: int labels [N] to reach (targeted), or None for untargeted
            (any label but the true one).
        norm: `"l2"` (the paper's c|r|) or `"l2_squared"` (c|r|^2).
        initial_c: first c tried.
        search_steps: L-BFGS-B runs per example (each with one c).
        max_iterations: L-BFGS-B iterations per run.
        clip: `(lo, hi)` box for x + r.
        batch_size: examples optimised jointly.

    Returns:
        `LBFGSResult` with the smallest-L2 successful example per input.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got '{norm}'")
    if initial_c <= 0:
        raise ValueError(f"initial_c must be > 0, got {initial_c}")
    if search_steps < 1 or max_iterations < 1:
        raise ValueError("search_steps and max_iterations must be >= 1")
    images = np.asarray(images, "float32")
    labels = np.asarray(labels, "int32")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    lo, hi = clip
    if images.size and (images.min() < lo - 1e-6 or images.max() > hi + 1e-6):
        raise ValueError(f"images must lie in the box [{lo}, {hi}]")
    targeted = targets is not None
    if targeted:
        targets = np.asarray(targets, "int32")
        if targets.shape != labels.shape:
            raise ValueError("targets must have one label per image")
    objective = _make_objective(model, norm)

    n = len(images)
    best_adv = images.copy()
    best_l2 = np.full(n, np.inf)
    best_c = np.full(n, np.nan)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        x = images[sl]
        b = len(x)
        aim = targets[sl] if targeted else labels[sl]
        x_t = tf.constant(x)
        aim_t = tf.constant(aim)
        tgt_t = tf.constant(targeted)
        c = np.full(b, float(initial_c))
        c_ok = np.full(b, np.nan)  # largest c that succeeded
        c_fail = np.full(b, np.nan)  # smallest c that failed
        shape = x.shape
        bounds = [(lo, hi)] * x.size

        for _ in range(search_steps):
            c_t = tf.constant(c, tf.float32)

            def fg(flat):
                xa = tf.constant(flat.reshape(shape), tf.float32)
                f, g, _ = objective(xa, x_t, c_t, aim_t, tgt_t)
                return float(f), g.numpy().ravel()

            x0 = x.astype("float64").ravel()
            sol, _, _ = fmin_l_bfgs_b(fg, x0, bounds=bounds, maxiter=max_iterations, m=10, factr=1e7)
            adv = np.clip(sol.reshape(shape), lo, hi).astype("float32")
            pred = np.argmax(model(adv, training=False).numpy(), -1)
            ok = pred == aim if targeted else pred != aim
            l2 = np.sqrt(np.sum((adv - x).reshape(b, -1).astype("float64") ** 2, axis=1))
            better = ok & (l2 < best_l2[sl])
            idx = np.arange(start, start + b)[better]
            best_adv[idx] = adv[better]
            best_l2[idx] = l2[better]
            best_c[idx] = c[better]
            # update the bracket and pick the next c
            c_ok = np.where(ok, np.fmax(c_ok, c), c_ok)
            c_fail = np.where(~ok, np.fmin(c_fail, c), c_fail)
            both = ~np.isnan(c_ok) & ~np.isnan(c_fail)
            c = np.where(both, np.sqrt(np.nan_to_num(c_ok, nan=1.0) * np.nan_to_num(c_fail, nan=1.0)), c)
            c = np.where(~both & ok, c * 10.0, c)
            c = np.where(~both & ~ok, c / 10.0, c)

    success = np.isfinite(best_l2)
    preds = np.concatenate(
        [np.argmax(model(best_adv[i : i + batch_size], training=False).numpy(), -1) for i in range(0, n, batch_size)]
    ) if n else np.zeros((0,), "int64")
    m = images[0].size if n else 1
    l2 = np.where(success, best_l2, np.nan)
    return LBFGSResult(
        images=images,
        adversarial=best_adv,
        success=success,
        labels=labels,
        targets=targets if targeted else np.full(n, -1, "int32"),
        predictions=preds.astype("int32"),
        c=best_c,
        l2=l2,
        rms=l2 / np.sqrt(m),
    )
