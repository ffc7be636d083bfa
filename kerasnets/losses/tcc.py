"""Temporal cycle-consistency losses (Dwibedi, Aytar, Tompson, Sermanet, Zisserman, CVPR 2019).

Given the per-frame embeddings of two videos of the same action, `U = (u_1..u_M)`
and `V = (v_1..v_N)` (rows of `[M, D]` and `[N, D]` matrices), TCC asks that a
frame's soft nearest neighbour in the other video cycles back to the frame
itself. As in the reference code (google-research/tcc,
`tcc/deterministic_alignment.py` and `tcc/losses.py`):

* **scaled similarity** (`similarity="l2"`, the default)::

      sim(x, y) = -||x - y||^2 / D / tau            (tau = 0.1; "cosine": x.y / D / tau)

  the division by the embedding size `D` is the code's (it is not in the paper);
* **soft nearest neighbour** of `u_i` in `V`::

      alpha_ij = softmax_j(sim(u_i, v_j)),     v~_i = sum_j alpha_ij v_j

* **cycling back**: `logits_ik = sim(v~_i, u_k)`, an `M x M` matrix whose
  "label" is `k = i` (the frame the cycle started from);
* **cycle-back classification**: softmax cross-entropy of `logits_i` against
  `one_hot(i)` with label smoothing 0.1 (Keras' `categorical_crossentropy`:
  targets `(1 - 0.1) one_hot + 0.1 / M`);
* **cycle-back regression** (default, `"regression_mse_var"`, lambda = 0.001):
  with `beta_ik = softmax_k(logits_ik)` and the frame times `t_k` (frame indices
  divided by the sequence length when `normalize_indices`)::

      mu_i      = sum_k beta_ik t_k
      sigma_i^2 = sum_k beta_ik (t_k - mu_i)^2
      L_i       = (t_i - mu_i)^2 / sigma_i^2 + lambda log(sigma_i^2)

  The paper writes `lambda log(sigma)`; the code uses `log(sigma^2)` (a factor
  2 on lambda), followed here. `"regression_mse"` drops the variance terms
  (`(t_i - mu_i)^2`), `"regression_huber"` uses Huber(delta = 0.1) of `t_i - mu_i`.

Every ordered pair `(i, j)`, `i != j`, of the `B` videos in a batch is aligned
(`B (B - 1)` cycles of `M` frames each) and the loss is the mean over all
`B (B - 1) M` cycle starts, as the reference's deterministic alignment.

Reference:
    Dwibedi, Aytar, Tompson, Sermanet, Zisserman. "Temporal Cycle-Consistency
    Learning." CVPR 2019, arXiv:1904.07846. Section 3.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.saving import register

LOSS_TYPES = ("classification", "regression_mse_var", "regression_mse", "regression_huber")
SIMILARITIES = ("l2", "cosine")


def pairwise_squared_distances(a, b):
    """`||a_i - b_j||^2` for all rows: `[..., M, D] x [..., N, D] -> [..., M, N]`, clipped at 0."""
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b, a.dtype)
    na = tf.reduce_sum(tf.square(a), -1)[..., :, None]
    nb = tf.reduce_sum(tf.square(b), -1)[..., None, :]
    return tf.maximum(na + nb - 2.0 * tf.linalg.matmul(a, b, transpose_b=True), 0.0)


def scaled_similarity(a, b, similarity: str = "l2", temperature: float = 0.1):
    """`sim(a_i, b_j)` for all rows (`[..., M, N]`): `-||a_i - b_j||^2 / D / tau` or `a_i.b_j / D / tau`."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = tf.convert_to_tensor(a)
    b = tf.convert_to_tensor(b, a.dtype)
    channels = tf.cast(tf.shape(a)[-1], a.dtype)
    if similarity == "l2":
        sim = -pairwise_squared_distances(a, b)
    else:
        sim = tf.linalg.matmul(a, b, transpose_b=True)
    return sim / channels / temperature


def cycle_back_logits(u, v, similarity: str = "l2", temperature: float = 0.1):
    """Cycle `U -> V -> U`: returns `logits [..., M, M]` with `logits_ik = sim(v~_i, u_k)`.

    `u`: `[..., M, D]`, `v`: `[..., N, D]`; `v~_i = sum_j softmax_j(sim(u_i, v_j)) v_j`.
    """
    u = tf.convert_to_tensor(u)
    v = tf.convert_to_tensor(v, u.dtype)
    alpha = tf.nn.softmax(scaled_similarity(u, v, similarity, temperature), axis=-1)
    soft_nn = tf.linalg.matmul(alpha, v)
    return scaled_similarity(soft_nn, u, similarity, temperature)


def cycle_back_classification_loss(logits, label_smoothing: float = 0.1):
    """Mean softmax cross-entropy of each row `logits_i [M]` against `one_hot(i)`, label-smoothed.

    `logits`: `[R, M]` where row `r` started at frame `r mod M`, or `[..., M, M]`.
    """
    logits = tf.convert_to_tensor(logits)
    m = tf.shape(logits)[-1]
    rows = tf.reshape(logits, [-1, m])
    labels = tf.one_hot(tf.math.floormod(tf.range(tf.shape(rows)[0]), m), m, dtype=rows.dtype)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / tf.cast(m, rows.dtype)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=rows))


def cycle_back_regression_loss(
    logits, times, loss_type: str = "regression_mse_var", variance_lambda: float = 0.001, huber_delta: float = 0.1
):
    """Cycle-back regression: the start frame's time against `mu_i = sum_k beta_ik t_k`.

    Args:
        logits: `[..., M, M]` cycle-back logits (row `i` started at frame `i`).
        times: `[..., M]` the frames' times `t_k` (normalised indices), broadcast
            against `logits`' leading axes.
        loss_type: `"regression_mse_var"` (default), `"regression_mse"` or `"regression_huber"`.
        variance_lambda: weight of `log(sigma^2)` (reference: 0.001).
        huber_delta: Huber threshold of `"regression_huber"` (reference: 0.1).

    Returns:
        The mean over all rows.
    """
    logits = tf.convert_to_tensor(logits)
    times = tf.stop_gradient(tf.cast(times, logits.dtype))
    times = tf.broadcast_to(times, tf.shape(logits)[:-1])  # [..., M] (the k axis of each row)
    t_k = times[..., None, :]  # times of the frames k we cycle back onto
    t_true = times  # row i started at frame i
    beta = tf.nn.softmax(logits, axis=-1)
    mu = tf.reduce_sum(beta * t_k, axis=-1)
    err = t_true - mu
    if loss_type == "regression_mse_var":
        var = tf.reduce_sum(beta * tf.square(t_k - mu[..., None]), axis=-1)
        log_var = tf.math.log(var)
        return tf.reduce_mean(tf.exp(-log_var) * tf.square(err) + variance_lambda * log_var)
    if loss_type == "regression_mse":
        return tf.reduce_mean(tf.square(err))
    if loss_type == "regression_huber":
        a = tf.abs(err)
        quad = tf.minimum(a, huber_delta)
        return tf.reduce_mean(0.5 * tf.square(quad) + huber_delta * (a - quad))
    raise ValueError(f"loss_type must be one of {LOSS_TYPES[1:]} for regression, got {loss_type!r}")


def _ordered_pairs(n):
    """Indices `(i, j)` of the `n (n - 1)` ordered pairs with `i != j`, in row-major order."""
    i = tf.repeat(tf.range(n), n)
    j = tf.tile(tf.range(n), [n])
    keep = tf.not_equal(i, j)
    return tf.boolean_mask(i, keep), tf.boolean_mask(j, keep)


def temporal_cycle_consistency_loss(
    embeddings,
    steps=None,
    seq_lens=None,
    loss_type: str = "regression_mse_var",
    similarity: str = "l2",
    temperature: float = 0.1,
    label_smoothing: float = 0.1,
    variance_lambda: float = 0.001,
    huber_delta: float = 0.1,
    normalize_indices: bool = True,
):
    """TCC loss over all ordered pairs of the videos in a batch (deterministic alignment).

    Args:
        embeddings: `[B, M, D]` embeddings of `M` frames of each of `B >= 2` videos.
        steps: `[B, M]` frame indices the embeddings were computed at (default
            `0..M-1`); used by the regression losses.
        seq_lens: `[B]` lengths of the videos the frames were sampled from
            (default `M`); `t = steps / seq_len` when `normalize_indices`.
        loss_type: one of `LOSS_TYPES` (reference default `"regression_mse_var"`).
        similarity: `"l2"` (default) or `"cosine"`.
        temperature: softmax temperature tau (reference: 0.1).
        label_smoothing: for `"classification"` (reference: 0.1).
        variance_lambda: for `"regression_mse_var"` (reference: 0.001).
        huber_delta: for `"regression_huber"` (reference: 0.1).
        normalize_indices: divide `steps` by `seq_lens` (reference: True).

    Returns:
        Scalar loss: the mean over the `B (B - 1) M` cycle starts.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    embs = tf.convert_to_tensor(embeddings)
    if embs.shape.rank != 3:
        raise ValueError(f"embeddings must be [batch, frames, dim], got shape {embs.shape}")
    if embs.shape[0] is not None and embs.shape[0] < 2:
        raise ValueError(f"TCC aligns pairs of videos: the batch needs >= 2 videos, got {embs.shape[0]}")
    b, m = tf.shape(embs)[0], tf.shape(embs)[1]
    i, j = _ordered_pairs(b)
    logits = cycle_back_logits(tf.gather(embs, i), tf.gather(embs, j), similarity, temperature)  # [P, M, M]
    if loss_type == "classification":
        return cycle_back_classification_loss(logits, label_smoothing)
    if steps is None:
        steps = tf.tile(tf.range(m)[None], [b, 1])
    if seq_lens is None:
        seq_lens = tf.fill([b], m)
    times = tf.cast(steps, embs.dtype)
    if normalize_indices:
        times = times / tf.cast(seq_lens, embs.dtype)[:, None]
    return cycle_back_regression_loss(
        logits, tf.gather(times, i), loss_type=loss_type, variance_lambda=variance_lambda, huber_delta=huber_delta
    )


@register
class TemporalCycleConsistencyLoss(keras.losses.Loss):
    """TCC as a Keras loss: `y_pred` = embeddings `[B, M, D]`, `y_true` = frame times `[B, M]`.

    `y_true` holds each sampled frame's time (its index divided by its video's
    length, i.e. `steps / seq_len` of the reference); it is used by the
    regression variants and ignored by `"classification"`. The loss is one
    scalar for the batch (pairs of videos are aligned), so Keras' reduction
    is a no-op on it.

    Args:
        loss_type, similarity, temperature, label_smoothing, variance_lambda,
            huber_delta: see `temporal_cycle_consistency_loss`.
    """

    def __init__(
        self,
        loss_type: str = "regression_mse_var",
        similarity: str = "l2",
        temperature: float = 0.1,
        label_smoothing: float = 0.1,
        variance_lambda: float = 0.001,
        huber_delta: float = 0.1,
        name: str = "temporal_cycle_consistency",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.loss_type = loss_type
        self.similarity = similarity
        self.temperature = temperature
        self.label_smoothing = label_smoothing
        self.variance_lambda = variance_lambda
        self.huber_delta = huber_delta

    def call(self, y_true, y_pred):
        times = tf.cast(y_true, y_pred.dtype)
        return temporal_cycle_consistency_loss(
            y_pred, steps=times, seq_lens=tf.ones([tf.shape(y_pred)[0]], y_pred.dtype),
            loss_type=self.loss_type, similarity=self.similarity, temperature=self.temperature,
            label_smoothing=self.label_smoothing, variance_lambda=self.variance_lambda,
            huber_delta=self.huber_delta, normalize_indices=True,
        )  # fmt: skip

    def get_config(self):
        return {
            **super().get_config(),
            "loss_type": self.loss_type,
            "similarity": self.similarity,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
            "variance_lambda": self.variance_lambda,
            "huber_delta": self.huber_delta,
        }
