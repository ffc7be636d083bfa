"""`SupermaskDense`: frozen random Dense weights under a learned stochastic (Bernoulli) mask."""

from __future__ import annotations

from kerasnets.layers import _subnet
from kerasnets.saving import register


@register
class SupermaskDense(_subnet.DenseMixin, _subnet.SupermaskLayer):
    """Dense layer of frozen random weights with a learned Bernoulli supermask (Zhou et al. 2019).

    Each weight has a trainable mask logit ``s``; in training the mask is
    sampled,

        m ~ Bernoulli(sigmoid(s)),   y = x @ (W * m),

    and the gradient flows straight through the sample to the probability
    (``m = sample + p - stop_gradient(p)``, so ``dm/ds = sigmoid'(s)``). The
    noise comes from a `keras.random.SeedGenerator` folded with the replica
    id (`kerasnets.distribute.replica_seed`): distinct per replica
    under MirroredStrategy, reproducible from the seed and the checkpointed
    generator state.

    At inference (``training=False``) the mask is ``eval_mask``:
    ``"threshold"`` (default, deterministic: ``sigmoid(s) > 0.5``, the
    reference's ``round_mask`` option and what `to_pruned_model` exports),
    ``"sample"`` (a fresh Bernoulli sample, the reference's default at test
    time) or ``"expected"`` (``W * sigmoid(s)``, not binary).

    Args:
        units: output dimension.
        eval_mask: ``"threshold"``, ``"sample"`` or ``"expected"`` (see above).
        dynamic_scaling: multiply the masked kernel by ``size(m) / sum(m)``
            (Zhou et al.'s dynamic weight rescaling; scale factor not differentiated).
        activation: activation applied to the output.
        use_bias: add a frozen bias.
        weight_init: ``"kaiming_normal"`` (untruncated), ``"signed_kaiming_constant"``
            or ``"unsigned_kaiming_constant"`` (std ``sqrt(2/fan_in)``).
        scale_fan: use ``fan_in * 0.5`` (the expected kept fraction at
            ``sigmoid(0)``) in the weight std.
        scores_initializer: initializer of the mask logits; default zeros
            (Zhou's ``sigmoid_bias = 0``, every weight kept with p = 0.5).
        scores_regularizer: regularizer on the logits.
        bias_initializer: initializer of the frozen bias.
        seed: int seed of the weights and of the mask noise.

    Call arguments:
        inputs: tensor ``[..., in]``.
        training: sample the mask (True) or use ``eval_mask``.

    Reference:
        Zhou, Lan, Liu, Yosinski. "Deconstructing Lottery Tickets: Zeros,
        Signs, and the Supermask." NeurIPS 2019, arXiv:1905.01067.
    """

    def __init__(
        self,
        units,
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
        self._init_dense(units)

    def get_config(self):
        return {**super().get_config(), **self._dense_config()}
