"""`EdgePopupConv2D`: a Conv2D whose random weights are frozen and only a top-k mask is learned."""

from __future__ import annotations

from kerasnets.layers import _subnet
from kerasnets.saving import register


@register
class EdgePopupConv2D(_subnet.Conv2DMixin, _subnet.EdgePopupLayer):
    """2-D convolution of frozen random weights selected by edge-popup (Ramanujan et al. 2020).

    The kernel ``W`` (``kh x kw x cin x cout``) is fixed at its random initial
    value; a trainable score tensor ``S`` of the same shape picks the ``k``
    fraction of weights with the largest ``|S|`` in this layer:

        y = conv(x, W * h(|S|)),   h = 1 on the top-k of |S|, 0 elsewhere,

    with the straight-through gradient ``dh/d|S| = 1`` so every score is
    updated (see `EdgePopupDense`). Exactly ``n - int((1 - k) * n)`` weights
    are used. Only ``scores`` are trainable.

    Args:
        filters: output channels.
        kernel_size: int or pair.
        k: fraction of weights KEPT, in (0, 1].
        strides: int or pair.
        padding: ``"valid"`` or ``"same"``.
        dilation_rate: int or pair.
        data_format: ``"channels_last"`` (default from Keras config) or ``"channels_first"``.
        activation: activation applied to the output.
        use_bias: add a frozen bias (the paper's networks have none).
        weight_init: ``"kaiming_normal"`` (untruncated), ``"signed_kaiming_constant"``
            or ``"unsigned_kaiming_constant"``; std ``sqrt(2/fan_in)`` with
            ``fan_in = kh * kw * cin``.
        scale_fan: use ``fan_in * k`` (the paper's scaled inits).
        scores_initializer: default ``U(±1/sqrt(fan_in))`` (PyTorch kaiming_uniform a=sqrt(5)).
        scores_regularizer: regularizer on the scores (coupled weight decay).
        bias_initializer: initializer of the frozen bias.
        seed: int seed of the initializers.

    Call arguments:
        inputs: rank-4 tensor.
        training: unused (the mask is deterministic).

    Reference:
        Ramanujan et al. "What's Hidden in a Randomly Weighted Neural
        Network?" CVPR 2020, arXiv:1911.13299 (Algorithm 1, Sec. 3).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        k=0.5,
        strides=1,
        padding="valid",
        dilation_rate=1,
        data_format=None,
        activation=None,
        use_bias=False,
        weight_init="kaiming_normal",
        scale_fan=False,
        scores_initializer=None,
        scores_regularizer=None,
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            k=k,
            activation=activation,
            use_bias=use_bias,
            weight_init=weight_init,
            scale_fan=scale_fan,
            scores_initializer=scores_initializer,
            scores_regularizer=scores_regularizer,
            bias_initializer=bias_initializer,
            seed=seed,
            **kwargs,
        )
        self._init_conv(filters, kernel_size, strides, padding, dilation_rate, data_format)

    def get_config(self):
        return {**super().get_config(), **self._conv_config()}
