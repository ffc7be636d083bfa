"""Edge-popup (Ramanujan, Wortsman, Kembhavi, Farhadi, Rastegari 2020, arXiv:1911.13299).

"What's hidden in a randomly weighted neural network?": keep every weight at
its random initial value and learn only *which* weights to use. Each weight
``w_uv`` has a score ``s_uv``; a layer uses the ``k`` fraction of its weights
with the largest ``|s_uv|``,

    I_v = sum_u w_uv Z_u h(s_uv),   h = 1 on the top-k of |s| in the layer, else 0,

and the scores are updated as if ``h`` were the identity (straight-through):

    s_uv <- s_uv - lr * dL/dI_v * w_uv * Z_u.

Layers: `kerasnets.layers.EdgePopupConv2D` / `EdgePopupDense`; architecture:
Conv2/4/6/8 of Frankle & Carbin (`kerasnets.models.conv_subnet`), no biases,
no batch norm. Defaults follow the reference's CIFAR configs
(``configs/smallscale/conv6/*.yml``): k = 0.5, scaled signed Kaiming constant
weights, scores ``U(±1/sqrt(fan_in))``, SGD lr 0.1 with cosine decay,
momentum 0.9, coupled weight decay 1e-4 on the scores, batch 128. The dense
baseline (the same Conv net with trained weights, the reference's
``smallscale_baselines/dense`` config: lr 0.01, same schedule and decay) is
trained in the same run on the same batches (``baseline=False`` skips it), so
one command reports both accuracies. On CPU the default is Conv6 at width 0.25
on scikit-learn digits upscaled to 16x16; ``data=cifar10 width_mult=1.0
steps=39100`` is the reference setting (100 epochs).

Paper (CIFAR-10, Fig. 3-5, read from plots): with k ~ 0.5 and the scaled
signed constant init the Conv4-Conv8 random-weight subnetworks roughly match
their dense-trained counterparts (Conv6 around 80%+).

Export: `serving_default` is the plain pruned network (`to_pruned_model`):
Conv2D/Dense kernels ``W * mask``; SavedModel and TFLite need no custom op.
"""

from __future__ import annotations

import dataclasses

from kerasnets.config import param
from kerasnets.tasks.subnet_classification import SubnetConfig, SubnetRecipeBase


@dataclasses.dataclass
class EdgePopupConfig(SubnetConfig):
    k: float = param(
        0.5, help="fraction of weights KEPT per layer (the paper's k; repo --prune-rate)", min=0.0, max=1.0
    )
    learning_rate: float = param(0.1, help="initial SGD lr on the scores, cosine-decayed (reference 0.1)", min=0.0)

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.k <= 1.0:
            from kerasnets.errors import ConfigError

            raise ConfigError(f"bad value for 'k': {self.k!r}; expected a fraction kept in (0, 1]")


class EdgePopupRecipe(SubnetRecipeBase):
    name = "edge_popup"
    paper = (
        "Ramanujan, Wortsman, Kembhavi, Farhadi, Rastegari 2020. What's Hidden in a Randomly "
        "Weighted Neural Network? arXiv:1911.13299"
    )
    summary = "learn a top-k subnetwork of a frozen random Conv net (edge-popup) vs the same net trained densely"
    config_class = EdgePopupConfig
    conv_type = "edge_popup"

    def subnet_options(self) -> dict:
        return {"k": self.config.k}

    def subnet_learning_rate(self) -> float:
        return self.config.learning_rate
