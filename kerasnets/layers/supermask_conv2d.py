"""`SupermaskConv2D`: frozen random Conv2D weights under a learned stochastic (Bernoulli) mask."""

from __future__ import annotations

from kerasnets.layers import _subnet
from kerasnets.saving import register


@register
class SupermaskConv2D(_subnet.Conv2DMixin, _subnet.SupermaskLayer):
    """2-D convolution of frozen random weights with a learned Bernoulli supermask (Zhou et al. 2019).

        m ~ Bernoulli(sigmoid(S)),   y = conv(x, W * m)

    in training, with the straight-through gradient ``dm/dS = sigmoid'(S)``;
    at inference the mask is ``eval_mask`` (``"threshold"``: ``sigmoid(S) > 0.5``,
    the default and what `to_pruned_model` exports; ``"sample"``; or
    ``"expected"``). See `SupermaskDense` for the noise and the options.

    Args:
        filters: output channels.
        kernel_size: int or pair.
        strides: int or pair.
        padding: ``"valid"`` or ``"same"``.
        dilation_rate: int or pair.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        eval_mask: ``"threshold"``, ``"sample"`` or ``"expected"``.
        dynamic_scaling: multiply the masked kernel by ``size(m) / sum(m)``.
        activation: activation applied to the output.
        use_bias: add a frozen bias.
        weight_init: ``"kaiming_normal"``, ``"signed_kaiming_constant"`` or
            ``"unsigned_kaiming_constant"`` (std ``sqrt(2/fan_in)``, untruncated).
        scale_fan: use ``fan_in * 0.5`` in the weight std.
        scores_initializer: default zeros (p = 0.5).
        scores_regularizer: regularizer on the logits.
        bias_initializer: initializer of the frozen bias.
        seed: int seed of the weights and of the mask noise.

    Call arguments:
        inputs: rank-4 tensor.
        training: sample the mask (True) or use ``eval_mask``.

    Reference:
        Zhou, Lan, Liu, Yosinski. "Deconstructing Lottery Tickets: Zeros,
        Signs, and the Supermask." NeurIPS 2019, arXiv:1905.01067.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        data_format=None,
        eval_mask="threshold",
        dynamic_scaling=False,
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
            eval_mask=eval_mask,
            dynamic_scaling=dynamic_scaling,
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
