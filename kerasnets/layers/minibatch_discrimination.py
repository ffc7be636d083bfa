"""`MinibatchDiscrimination` (Salimans et al. 2016): per-example closeness to the rest of the batch."""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.saving import register


@register
class MinibatchDiscrimination(keras.layers.Layer):
    """Appends to each example how close it is to the other examples of its minibatch.

    With input features ``f(x_i) in R^A`` and a learned tensor
    ``T in R^{A x B x C}`` (Salimans et al. 2016, Sec. 3.2):

        M_i = f(x_i) T                      in R^{B x C}
        c_b(x_i, x_j) = exp(-||M_{i,b} - M_{j,b}||_1)
        o(x_i)_b = sum_{j != i} c_b(x_i, x_j)   (+ bias_b if use_bias)
        output_i = concat(f(x_i), o(x_i))   in R^{A + B}

    **Self term.** The paper's formula sums over ``j = 1..n``, which includes
    ``c_b(x_i, x_i) = exp(0) = 1``, a constant. The reference code
    (openai/improved-gan ``MinibatchLayer``) excludes it by adding ``1e6`` to
    the diagonal of the distance matrix so that ``exp(-1e6) = 0``; here the
    diagonal is masked out exactly, i.e. the sum runs over the ``n - 1``
    other examples of the batch (a batch of one gives ``o = 0``). The
    reference's weight normalisation of ``T`` and its data-dependent
    initialisation are not included; its learned per-kernel bias (initialised
    to -1 there) is available with ``use_bias=True``.

    **Batch-level op.** ``o`` depends on the whole batch, so at inference it
    depends on what the batch holds, and under `tf.distribute`
    (MirroredStrategy) the statistic is computed over each replica's share
    of the global batch, not the global batch. Feed real and generated
    examples in separate calls (as the paper does) or concatenate them on
    purpose.

    Args:
        num_kernels: ``B``, number of discrimination kernels (outputs added).
        kernel_dim: ``C``, dimension of each kernel's projection.
        kernel_initializer: initializer of ``T`` (default ``N(0, 0.05^2)``, as
            the reference's ``theta``).
        kernel_regularizer: regularizer of ``T``.
        use_bias: add a learned bias to ``o`` (default False: the paper's formula).
        bias_initializer: initializer of the bias.

    Call arguments:
        inputs: ``[N, A]`` features.

    Returns:
        ``[N, A + B]``.

    Reference:
        Salimans, Goodfellow, Zaremba, Cheung, Radford, Chen. "Improved
        Techniques for Training GANs." NeurIPS 2016, arXiv:1606.03498.
    """

    def __init__(
        self,
        num_kernels=100,
        kernel_dim=5,
        kernel_initializer=None,
        kernel_regularizer=None,
        use_bias=False,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("num_kernels", num_kernels), ("kernel_dim", kernel_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_kernels = num_kernels
        self.kernel_dim = kernel_dim
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else keras.initializers.RandomNormal(stddev=0.05)
        )
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.use_bias = bool(use_bias)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"MinibatchDiscrimination expects [N, A] inputs with known A, got shape {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(input_shape[-1]), self.num_kernels, self.kernel_dim),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.num_kernels,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, inputs):
        m = ops.einsum("na,abc->nbc", inputs, ops.cast(self.kernel, inputs.dtype))  # M_i = f(x_i) T
        l1 = ops.sum(ops.abs(m[:, None] - m[None, :]), axis=-1)  # [N, N, B]
        closeness = ops.exp(-l1)
        n = ops.shape(inputs)[0]
        others = 1.0 - ops.eye(n, dtype=inputs.dtype)  # j != i
        o = ops.sum(closeness * others[:, :, None], axis=1)  # [N, B]
        if self.bias is not None:
            o = o + ops.cast(self.bias, o.dtype)
        return ops.concatenate([inputs, o], axis=-1)

    def compute_output_shape(self, input_shape):
        a = input_shape[-1]
        return (input_shape[0], None if a is None else a + self.num_kernels)

    def get_config(self):
        return {
            **super().get_config(),
            "num_kernels": self.num_kernels,
            "kernel_dim": self.kernel_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "use_bias": self.use_bias,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
