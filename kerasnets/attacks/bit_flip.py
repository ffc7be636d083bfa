"""Bit-Flip Attack: progressive bit search on 8-bit weights (Rakin, He, Fan, ICCV 2019, arXiv 1903.12269).

Written from the paper's description (the reference code is CC BY-NC-SA and
was not used). The attacker flips bits of the int8 weight codes of a
`QuantizedModel` (see `kerasnets.attacks.quantization`) to raise the loss

    L = mean CE(f(x; W_q), y)  on an attack batch,

with `y` the clean model's own predictions (no label leakage) or the true labels.

One iteration of progressive bit search (PBS):

1. Gradient of L w.r.t. each quantized kernel, `dL/dW`. Since `W = q * step`
   and `q = -128 b_7 + sum_{i<7} 2^i b_i`, the gradient w.r.t. bit i is
   `dL/db_i = dL/dW * step * v_i` with `v_i` the bit's value (1..64, -128).
2. In-layer search: in each layer, among the top-k weights by |dL/dW|, a flip
   of bit i (0 -> 1 changes q by +v_i, 1 -> 0 by -v_i) raises L to first
   order iff `dL/db_i * (1 - 2 b_i) > 0`; take the `n` admissible bits with
   the largest |dL/db_i| and evaluate L with them flipped (then undo).
3. Cross-layer search: commit the flips of the layer whose evaluated L is
   largest, if it is larger than the current L. Otherwise retry with
   `n + 1` bits per layer (up to `max_bits_per_step`), as the paper's PBS
   enlarges the search when a single bit does not increase the loss.

Iterate until the accuracy on the evaluation set is at most `target_accuracy`
(chance) or `max_flips` bits have been flipped. `random_bit_flips` is the
baseline: bits drawn uniformly over all weight bits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kerasnets.attacks.quantization import BIT_VALUES, NUM_BITS, QuantizedModel, bits_of


@dataclasses.dataclass
class BitFlipResult:
    flips: list  # [(layer, flat_index, bit, old_code, new_code)] in the order applied
    loss: list  # attack-batch loss before the attack, then after each iteration
    accuracy: list  # eval accuracy before the attack, then after each iteration
    stopped: str  # "target_accuracy", "max_flips" or "no_improving_flip"
    flips_per_iteration: list = dataclasses.field(default_factory=list)  # bits committed per iteration

    @property
    def num_flips(self) -> int:
        return len(self.flips)

    @property
    def cumulative_flips(self) -> list:
        """Bits flipped after each entry of `loss` / `accuracy` (starts at 0)."""
        out = [0]
        for k in self.flips_per_iteration:
            out.append(out[-1] + k)
        return out


def _ce(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def _eval_fns(qmodel: QuantizedModel):
    model = qmodel.model
    kernels = [qmodel.kernel_variable(n) for n in qmodel.layer_names]

    @tf.function(reduce_retracing=True, autograph=False)
    def loss_and_grads(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(_ce(y, model(x, training=False)))
        return loss, tape.gradient(loss, kernels)

    @tf.function(reduce_retracing=True, autograph=False)
    def loss_fn(x, y):
        return tf.reduce_mean(_ce(y, model(x, training=False)))

    @tf.function(reduce_retracing=True, autograph=False)
    def correct_fn(x, y):
        pred = tf.argmax(model(x, training=False), -1, output_type=tf.int32)
        return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, tf.int32)), tf.int32))

    return loss_and_grads, loss_fn, correct_fn


def make_accuracy_fn(qmodel: QuantizedModel, images, labels, batch_size: int = 1024):
    """`fn() -> accuracy` of the (current) quantized model on fixed arrays."""
    _, _, correct_fn = _eval_fns(qmodel)
    batches = [
        (tf.constant(images[i : i + batch_size]), tf.constant(labels[i : i + batch_size], tf.int32))
        for i in range(0, len(images), batch_size)
    ]

    def accuracy():
        return sum(int(correct_fn(x, y)) for x, y in batches) / max(len(images), 1)

    return accuracy


def candidate_bits(grad_w, codes, step, k_top: int, n_bits: int):
    """In-layer search: up to `n_bits` `(flat_index, bit, score)` that raise the loss to first order.

    `grad_w` is dL/dW of the layer (float array like `codes`).
    """
    g = np.asarray(grad_w, "float64").reshape(-1)
    q = np.asarray(codes, np.int8).reshape(-1)
    k = min(k_top, g.size)
    top = np.argpartition(-np.abs(g), k - 1)[:k] if k < g.size else np.arange(g.size)
    bit_grad = g[top, None] * float(step) * BIT_VALUES[None, :]  # dL/db_i, [k, 8]
    current = bits_of(q[top]).astype("float64")  # [k, 8]
    direction = 1.0 - 2.0 * current  # +1 for a 0->1 flip, -1 for 1->0
    gain = bit_grad * direction  # first-order loss change per unit flip
    admissible = gain > 0
    if not admissible.any():
        return []
    score = np.where(admissible, np.abs(bit_grad), -np.inf).reshape(-1)
    order = np.argsort(-score, kind="stable")[:n_bits]
    out = []
    for flat in order:
        if not np.isfinite(score[flat]):
            break
        w, b = divmod(int(flat), NUM_BITS)
        out.append((int(top[w]), b, float(score[flat])))
    return out


def progressive_bit_search(
    qmodel: QuantizedModel,
    attack_images,
    attack_labels,
    *,
    accuracy_fn=None,
    target_accuracy: float = 0.11,
    max_flips: int = 100,
    k_top: int = 10,
    max_bits_per_step: int = 4,
    on_iteration=None,
) -> BitFlipResult:
    """Run PBS on `qmodel` in place (its codes are changed); see the module docstring.

    Args:
        qmodel: the quantized model to attack.
        attack_images, attack_labels: the attack batch and the labels whose loss is raised.
        accuracy_fn: `() -> accuracy` for the stopping rule (e.g. `make_accuracy_fn` on test data);
            None runs exactly until `max_flips` or no improving flip.
        target_accuracy: stop once `accuracy_fn() <= target_accuracy`.
        max_flips: bit budget.
        k_top: weights per layer considered in the in-layer search.
        max_bits_per_step: largest number of bits tried in one layer when one bit does not raise L.
        on_iteration: optional callback `(iteration, loss, accuracy, flips)`.
    """
    if k_top < 1 or max_flips < 0 or max_bits_per_step < 1:
        raise ValueError("k_top and max_bits_per_step must be >= 1 and max_flips >= 0")
    loss_and_grads, loss_fn, _ = _eval_fns(qmodel)
    x = tf.constant(np.asarray(attack_images, "float32"))
    y = tf.constant(np.asarray(attack_labels, "int32"))
    current = float(loss_fn(x, y))
    acc = accuracy_fn() if accuracy_fn else float("nan")
    result = BitFlipResult(flips=[], loss=[current], accuracy=[acc], stopped="max_flips")
    iteration = 0
    while True:
        if accuracy_fn is not None and acc <= target_accuracy:
            result.stopped = "target_accuracy"
            break
        if len(result.flips) >= max_flips:
            result.stopped = "max_flips"
            break
        _, grads = loss_and_grads(x, y)
        grads = [g.numpy() for g in grads]
        committed = False
        budget = max_flips - len(result.flips)
        for n_bits in range(1, min(max_bits_per_step, budget) + 1):
            best = None  # (loss, layer, candidates)
            for name, g in zip(qmodel.layer_names, grads):
                cands = candidate_bits(g, qmodel.q[name], qmodel.steps[name], k_top, n_bits)
                if not cands:
                    continue
                saved = qmodel.q[name].copy()
                for idx, bit, _ in cands:
                    qmodel.flip_bit(name, idx, bit)
                trial = float(loss_fn(x, y))
                qmodel.set_codes(name, saved)
                if best is None or trial > best[0]:
                    best = (trial, name, cands)
            if best is not None and best[0] > current:
                _, name, cands = best
                for idx, bit, _ in cands:
                    old, new = qmodel.flip_bit(name, idx, bit)
                    result.flips.append((name, idx, bit, old, new))
                current = float(loss_fn(x, y))
                result.flips_per_iteration.append(len(cands))
                committed = True
                break
        if not committed:
            result.stopped = "no_improving_flip"
            break
        iteration += 1
        acc = accuracy_fn() if accuracy_fn else float("nan")
        result.loss.append(current)
        result.accuracy.append(acc)
        if on_iteration is not None:
            on_iteration(iteration, current, acc, len(result.flips))
    return result


def random_bit_flips(
    qmodel: QuantizedModel,
    accuracy_fn,
    *,
    max_flips: int,
    target_accuracy: float | None = None,
    seed: int = 0,
):
    """Baseline: flip bits drawn uniformly over all weight bits, one at a time (in place).

    Returns `(accuracies, flips)`: `accuracies[j]` is the accuracy after `j` flips
    (`accuracies[0]` = before); stops early once `accuracy <= target_accuracy`.
    """
    rng = np.random.default_rng(seed)
    names = list(qmodel.layer_names)
    sizes = np.array([qmodel.q[n].size for n in names], "int64")
    bounds = np.cumsum(sizes)
    accuracies = [accuracy_fn()]
    flips = []
    for _ in range(max_flips):
        if target_accuracy is not None and accuracies[-1] <= target_accuracy:
            break
        g = int(rng.integers(0, int(bounds[-1])))
        li = int(np.searchsorted(bounds, g, side="right"))
        idx = g - (int(bounds[li - 1]) if li else 0)
        bit = int(rng.integers(0, NUM_BITS))
        old, new = qmodel.flip_bit(names[li], idx, bit)
        flips.append((names[li], idx, bit, old, new))
        accuracies.append(accuracy_fn())
    return accuracies, flips
