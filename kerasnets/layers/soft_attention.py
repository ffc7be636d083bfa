"""Soft (deterministic) attention of Show, Attend and Tell (Xu et al. 2015, Sec. 4.2)."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register


@register
class SoftAttention(keras.layers.Layer):
    """Bahdanau-style soft attention over L annotation vectors, with the gating scalar beta.

    For annotations `a_1..a_L` (`a_i` in R^D, one per image location) and the
    decoder's previous hidden state `h_{t-1}` (Xu et al. 2015, Sec. 3.1.2,
    4.2 and 4.2.1):

        e_ti  = w_att . tanh(W_a a_i + W_h h_{t-1} + b) + b_att     (f_att: a one-hidden-layer MLP)
        alpha_ti = exp(e_ti) / sum_k exp(e_tk)                        (softmax over the L locations)
        z_t   = sum_i alpha_ti a_i
        beta_t = sigmoid(w_beta . h_{t-1} + b_beta)                   (gating scalar, Sec. 4.2.1)
        zhat_t = beta_t z_t

    `W_a a_i` does not depend on t: a decoder computes it once per image with
    `project(annotations)` and calls `attend(...)` at every step; `call` does
    both.

    Args:
        units: hidden size of the attention MLP f_att.
        use_gate: multiply the context by beta_t (the paper's gating scalar);
            without it beta_t = 1.
        kernel_initializer: initializer of the kernels (default Glorot uniform).

    Call arguments:
        inputs: `[annotations, hidden]`: `[B, L, D]` and `[B, H]`.
        training: unused (no dropout).
        return_attention: if True, return `(zhat [B, D], alpha [B, L], beta [B, 1])`;
            else only `zhat`.

    Reference:
        Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio 2015. Show,
        Attend and Tell: Neural Image Caption Generation with Visual Attention.
        ICML, arXiv:1502.03044. Bahdanau, Cho, Bengio 2015, arXiv:1409.0473.
    """

    def __init__(self, units: int, use_gate: bool = True, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = units
        self.use_gate = bool(use_gate)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"SoftAttention takes [annotations, hidden], got input shape {input_shape}")
        a_shape, h_shape = input_shape
        if len(a_shape) != 3 or len(h_shape) != 2:
            raise ValueError(f"expected annotations [B, L, D] and hidden [B, H], got {a_shape} and {h_shape}")
        d, h = a_shape[-1], h_shape[-1]
        if d is None or h is None:
            raise ValueError(f"the last dimensions of annotations and hidden must be known, got {d} and {h}")
        init = self.kernel_initializer
        self.annotation_kernel = self.add_weight(shape=(d, self.units), initializer=init, name="annotation_kernel")
        self.hidden_kernel = self.add_weight(shape=(h, self.units), initializer=init, name="hidden_kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        self.score_kernel = self.add_weight(shape=(self.units, 1), initializer=init, name="score_kernel")
        self.score_bias = self.add_weight(shape=(1,), initializer="zeros", name="score_bias")
        if self.use_gate:
            self.gate_kernel = self.add_weight(shape=(h, 1), initializer=init, name="gate_kernel")
            self.gate_bias = self.add_weight(shape=(1,), initializer="zeros", name="gate_bias")
        self.built = True

    def project(self, annotations):
        """`W_a a_i + b` for every location: `[B, L, D]` -> `[B, L, units]` (independent of t)."""
        return ops.matmul(annotations, self.annotation_kernel) + self.bias

    def attend(self, annotations, projected, hidden):
        """One step: `(zhat [B, D], alpha [B, L], beta [B, 1])` from `project(annotations)` and `h_{t-1}`."""
        hidden_term = ops.matmul(hidden, self.hidden_kernel)[:, None, :]  # [B, 1, units]
        scores = ops.matmul(ops.tanh(projected + hidden_term), self.score_kernel)[..., 0] + self.score_bias
        alpha = ops.softmax(scores, axis=-1)  # over the L locations
        context = ops.sum(alpha[..., None] * annotations, axis=1)
        if self.use_gate:
            beta = ops.sigmoid(ops.matmul(hidden, self.gate_kernel) + self.gate_bias)
        else:
            beta = ops.ones_like(context[:, :1])
        return beta * context, alpha, beta

    def call(self, inputs, training=None, return_attention=False):
        annotations, hidden = inputs
        zhat, alpha, beta = self.attend(annotations, self.project(annotations), hidden)
        if return_attention:
            return zhat, alpha, beta
        return zhat

    def compute_output_shape(self, input_shape):
        a_shape, _ = input_shape
        return (a_shape[0], a_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "use_gate": self.use_gate,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
