"""`EdgePopupDense`: a Dense layer whose random weights are frozen and only a top-k mask is learned."""

from __future__ import annotations

from kerasnets.layers import _subnet
from kerasnets.saving import register


@register
class EdgePopupDense(_subnet.DenseMixin, _subnet.EdgePopupLayer):
    """Dense layer of frozen random weights selected by edge-popup (Ramanujan et al. 2020).

    Each weight ``w_uv`` is fixed at its random initial value and has a
    trainable score ``s_uv``. The forward pass uses the subnetwork of the
    ``k`` fraction of weights with the largest ``|s_uv|`` in this layer:

        y = x @ (W * h(|S|)),   h = 1 on the top-k of |S|, 0 elsewhere

    and the backward pass treats ``h`` as the identity (straight-through), so
    every score, also of unused weights, gets ``dL/ds_uv = dL/dW~_uv * w_uv *
    sign(s_uv)`` and can "pop up" into the subnetwork. Exactly
    ``n - int((1 - k) * n)`` of the ``n`` weights are used (the reference
    ``GetSubnet`` rule). The weights are non-trainable variables: they never
    change and are not in ``trainable_weights``; only ``scores`` train.

    Args:
        units: output dimension.
        k: fraction of weights KEPT, in (0, 1] (the paper's k; the repo's
            ``--prune-rate``).
        activation: activation applied to the output (default none).
        use_bias: add a frozen bias (the paper's networks have none).
        weight_init: ``"kaiming_normal"`` (untruncated ``N(0, 2/fan_in)``),
            ``"signed_kaiming_constant"`` (``±sqrt(2/fan_in)`` with random sign)
            or ``"unsigned_kaiming_constant"``.
        scale_fan: scale the fan by ``k`` (std ``sqrt(2/(k*fan_in))``), the
            paper's "scaled" inits. The repo scales by ``1 - prune_rate``
            (allenai/hidden-networks issue #9); both agree at ``k = 0.5``.
        scores_initializer: initializer of the scores; default PyTorch's
            ``kaiming_uniform_(a=sqrt(5))`` = ``U(±1/sqrt(fan_in))``.
        scores_regularizer: e.g. ``keras.regularizers.L2(wd / 2)`` to mirror
            PyTorch SGD's coupled weight decay ``wd`` on the scores.
        bias_initializer: initializer of the frozen bias.
        seed: int seed of the weight and score initializers (None: global).

    Call arguments:
        inputs: tensor ``[..., in]``.
        training: unused (the mask is deterministic).

    Reference:
        Ramanujan, Wortsman, Kembhavi, Farhadi, Rastegari. "What's Hidden in a
        Randomly Weighted Neural Network?" CVPR 2020, arXiv:1911.13299.
    """

    def __init__(
        self,
        units,
        k=0.5,
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
        self._init_dense(units)

    def get_config(self):
        return {**super().get_config(), **self._dense_config()}
