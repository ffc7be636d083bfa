"""Adversarial attacks on trained classifiers (logits models, inputs in a box such as [0, 1]).

* `fgsm` (Goodfellow et al. 2015): one signed-gradient step.
* `lbfgs_attack` (Szegedy et al. 2013): box-constrained L-BFGS with a search over c.
* `quantization`: 8-bit symmetric per-layer weight quantization (Rakin et al. 2019).
* `bit_flip`: progressive bit search on the quantized weights (Rakin et al. 2019).
"""

from kerasnets.attacks.fgsm import fgsm, fgsm_accuracy
from kerasnets.attacks.lbfgs import LBFGSResult, lbfgs_attack
from kerasnets.attacks.quantization import QuantizedModel, dequantize, quantize_symmetric

__all__ = [
    "fgsm",
    "fgsm_accuracy",
    "LBFGSResult",
    "lbfgs_attack",
    "QuantizedModel",
    "dequantize",
    "quantize_symmetric",
]
