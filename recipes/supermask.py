"""Supermasks (Zhou, Lan, Liu, Yosinski 2019, arXiv:1905.01067, "Deconstructing Lottery Tickets").

Weights stay at their random initial values; each has a learned mask logit
``s`` and the forward pass samples a Bernoulli mask,

    m ~ Bernoulli(sigmoid(s)),   W_eff = W * m,

with the straight-through estimator ``m = sample + p - stop_gradient(p)``
(``p = sigmoid(s)``), so ``dL/ds = dL/dW_eff * W * sigmoid'(s)``.

Layers: `kerasnets.layers.SupermaskConv2D` / `SupermaskDense`; the same
Conv2/4/6/8 networks as `edge_popup`. Defaults follow the Zhou-sample baseline
config of allenai/hidden-networks (``configs/smallscale_baselines/sample/
conv6/conv6sample_ukn_unsigned.yml``): unscaled Kaiming-normal weights, logits
initialised to 0 (p = 0.5), momentum 0.9, no weight decay, cosine decay, batch
128, with SGD lr 100 (Zhou's own ``train_supermask.py`` example; the allenai
config uses 200; large because ``sigmoid'(s) * W`` is small).

Default architecture: Conv2 (Zhou et al.'s smallest conv net). Measured on
the embedded digits at width 0.5 (200 steps, lr 20-200, scaled or unscaled,
normal or signed-constant weights): Conv4 and Conv6 supermasks stayed at or
near chance (Conv4 best 24%), while Conv2 reaches ~95% in 400 steps. Without
batch norm, a fresh Bernoulli(0.5) mask per step on narrow layers makes the
deep nets' signal too noisy here; the reference trains Conv6 at width 1 for
100 CIFAR epochs. ``depth=4/6`` stay available.

Inference: the reference samples the mask at test time too; the exported and
reported model uses the deterministic mask ``sigmoid(s) > 0.5`` (the
reference's ``round_mask`` option), and `evaluate` also reports the accuracy
with one sampled mask (``sampled_test_accuracy``). A dense baseline (same net,
trained weights) is trained in the same run (``baseline=False`` skips it).

Paper (abstract): masks applied to untrained networks reach 86% on MNIST and
41% on CIFAR-10 (masks chosen at initialisation); learned supermasks reach
more (Conv6 on CIFAR-10 ~ 76% as quoted by Ramanujan et al.; not verified here).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from kerasnets.config import param
from kerasnets.tasks.subnet_classification import SubnetConfig, SubnetRecipeBase


@dataclasses.dataclass
class SupermaskConfig(SubnetConfig):
    depth: int = param(
        2, help="Conv2/4/6/8: 2, 4, 6 or 8 (Conv4/6 at width 0.5 on digits did not learn, see docstring)", min=2, max=8
    )
    learning_rate: float = param(
        100.0, help="initial SGD lr on the mask logits, cosine-decayed (Zhou example 100, allenai config 200)", min=0.0
    )
    weight_decay: float = param(0.0, help="coupled L2 on the mask logits (reference 0)", min=0.0)
    weight_init: Literal["kaiming_normal", "signed_kaiming_constant", "unsigned_kaiming_constant"] = param(
        "kaiming_normal", help="frozen random weights (reference Zhou baseline: unscaled kaiming normal)"
    )
    scale_fan: bool = param(False, help="scale the weight std by 1/sqrt(0.5) (reference: unscaled)")


class SupermaskRecipe(SubnetRecipeBase):
    name = "supermask"
    paper = (
        "Zhou, Lan, Liu, Yosinski 2019. Deconstructing Lottery Tickets: Zeros, Signs, and the "
        "Supermask. arXiv:1905.01067"
    )
    summary = "learn a Bernoulli supermask over a frozen random Conv net vs the same net trained densely"
    config_class = SupermaskConfig
    conv_type = "supermask"

    def subnet_options(self) -> dict:
        return {"eval_mask": "threshold"}

    def subnet_learning_rate(self) -> float:
        return self.config.learning_rate

    def evaluate(self, model) -> dict[str, float]:
        out = super().evaluate(model)
        # The reference's test-time behaviour: one fresh Bernoulli sample of the mask.
        out["sampled_test_accuracy"] = self.accuracy(model.subnet, training=True)
        return out
