"""Bit-Flip Attack on an 8-bit quantized classifier (Rakin, He, Fan, ICCV 2019, "Bit-Flip Attack:
Crushing Neural Network with Progressive Bit Search", arXiv:1903.12269). Written from the paper;
the reference code (CC BY-NC-SA) was not used.

1. Train a small classifier (float32).
2. Quantize every Dense/Conv kernel to 8 bits, per layer, symmetric
   (`kerasnets.attacks.quantization`):

       step = max|W| / 127,   q = round(W / step) in [-127, 127] (int8),   W_q = q * step

   The quantized model (kernels = `W_q`) is what this recipe exports, and
   `quantized_weights.npz` in the run directory holds the int8 codes and steps.
3. Progressive bit search (`kerasnets.attacks.bit_flip`): per iteration,
   in-layer search over the top-k weights by |dL/dW| (bit gradients
   `dL/db_i = dL/dW * step * v_i`, v = 1, 2, ..., 64, -128), cross-layer
   selection of the layer whose flip raises the attack-batch loss most; stop
   once the test accuracy is at chance (`target_accuracy`) or `max_flips`.
4. Random baseline: bits drawn uniformly over all weight bits, flipped one
   at a time on fresh copies of the quantized model (`random_trials` runs):
   the accuracy after as many flips as BFA needed, and the number of flips
   each run needs to reach the same accuracy (capped at `random_max_flips`).

Paper: ResNet-18 on ImageNet goes from 69.8 % to 0.1 % top-1 with 13 flips
out of ~93 M bits; 100 random flips cost < 1 % accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Literal

import numpy as np

from kerasnets.attacks.bit_flip import make_accuracy_fn, progressive_bit_search, random_bit_flips
from kerasnets.attacks.plots import plot_curves
from kerasnets.attacks.quantization import QuantizedModel
from kerasnets.tasks.adversarial import NUM_CLASSES, AttackRecipeBase, AttackRecipeConfig
from kerasnets.config import param
from kerasnets.models.small_classifiers import JointClassifierTrainer, accuracy, build_classifier, predict_labels


@dataclasses.dataclass
class BitFlipAttackConfig(AttackRecipeConfig):
    classifier: Literal["mlp", "cnn"] = param("cnn", help="architecture of the attacked classifier")
    attack_batch: int = param(128, help="training images in the attack batch (paper: 128)", min=1)
    attack_labels: Literal["predicted", "true"] = param(
        "predicted", help="labels of the attack loss: the clean model's predictions (paper) or the true labels"
    )
    k_top: int = param(10, help="weights per layer in the in-layer search (paper: 10)", min=1)
    max_bits_per_step: int = param(4, help="bits tried per layer when one bit does not raise the loss", min=1)
    max_flips: int = param(200, help="bit budget of the attack", min=1)
    target_accuracy: float = param(0.11, help="stop when test accuracy <= this (chance = 0.1)", min=0.0, max=1.0)
    random_trials: int = param(5, help="random-flip baseline runs", min=1)
    random_max_flips: int = param(2000, help="flip budget of each random run", min=1)


class BitFlipAttackRecipe(AttackRecipeBase):
    name = "bit_flip_attack"
    paper = "Rakin, He, Fan 2019. Bit-Flip Attack: Crushing Neural Network with Progressive Bit Search. ICCV 2019, arXiv:1903.12269"
    summary = "8-bit quantized classifier, progressive bit search to chance accuracy vs random bit flips"
    config_class = BitFlipAttackConfig
    key_metrics = ("loss_net", "acc_net")

    def __init__(self, config=None):
        super().__init__(config)
        self._results = None

    def build_model(self):
        import keras

        c = self.config
        keras.utils.set_random_seed(c.seed)
        net = build_classifier(c.classifier, self.image_shape(), NUM_CLASSES, l2=c.weight_decay / 2, name="classifier")
        return JointClassifierTrainer({"net": net}, learning_rate=c.learning_rate)

    def optimizers(self, model):
        return {f"optimizer_{k}": v for k, v in model.optimizers.items()}

    def quantized(self, model) -> QuantizedModel:
        """A fresh 8-bit copy of the trained classifier."""
        return QuantizedModel.from_model(model.classifiers["net"])

    def exported_classifier(self, model):
        """The 8-bit model (kernels are the dequantized int8 codes), not the attacked one."""
        return self.quantized(model).model

    # -------------------------------------------------------------- attack
    def run_attack(self, model):
        if self._results is not None and self._results[0] is model:
            return self._results[1], self._results[2]
        c = self.config
        (x_tr, _), (x_te, y_te) = self.data()
        float_acc = accuracy(model.classifiers["net"], x_te, y_te)
        qmodel = self.quantized(model)
        clean_codes = qmodel.snapshot()
        acc_fn = make_accuracy_fn(qmodel, x_te, y_te)
        quant_acc = acc_fn()
        rng = np.random.default_rng(c.seed)
        idx = np.sort(rng.choice(len(x_tr), size=min(c.attack_batch, len(x_tr)), replace=False))
        xa = x_tr[idx]
        ya = predict_labels(qmodel.model, xa) if c.attack_labels == "predicted" else self.data()[0][1][idx]
        bfa = progressive_bit_search(
            qmodel, xa, ya, accuracy_fn=acc_fn, target_accuracy=c.target_accuracy, max_flips=c.max_flips,
            k_top=c.k_top, max_bits_per_step=c.max_bits_per_step,
        )
        # random baseline on fresh copies
        rand_curves, rand_to_target = [], []
        for t in range(c.random_trials):
            qmodel.restore(clean_codes)
            accs, _ = random_bit_flips(
                qmodel, acc_fn, max_flips=c.random_max_flips, target_accuracy=c.target_accuracy, seed=c.seed + 1 + t
            )
            rand_curves.append(accs)
            rand_to_target.append(len(accs) - 1 if accs[-1] <= c.target_accuracy else None)
        qmodel.restore(clean_codes)
        n = bfa.num_flips
        at_n = [a[min(n, len(a) - 1)] for a in rand_curves]
        reached = [r for r in rand_to_target if r is not None]
        metrics = {
            "test_accuracy_float": float_acc,
            "test_accuracy_8bit": quant_acc,
            "num_weight_bits": qmodel.num_bits,
            "bfa_flips": n,
            "bfa_stopped": bfa.stopped,
            "bfa_final_accuracy": bfa.accuracy[-1],
            "bfa_reached_target": bfa.stopped == "target_accuracy",
            "bfa_loss_first_last": [bfa.loss[0], bfa.loss[-1]],
            "random_accuracy_after_bfa_flips_mean": float(np.mean(at_n)),
            "random_accuracy_after_bfa_flips_min": float(np.min(at_n)),
            "random_accuracy_after_budget_mean": float(np.mean([a[-1] for a in rand_curves])),
            "random_budget": c.random_max_flips,
            "random_runs_reaching_target": len(reached),
            "random_flips_to_target_mean": float(np.mean(reached)) if reached else None,
        }
        details = {"bfa": bfa, "random_curves": rand_curves, "clean_codes": clean_codes, "qmodel": qmodel}
        self._results = (model, metrics, details)
        return metrics, details

    def evaluate(self, model):
        return self.run_attack(model)[0]

    def on_train_end(self, model, run_dir, history):
        metrics, details = self.run_attack(model)
        bfa = details["bfa"]
        os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
        qmodel = details["qmodel"]
        qmodel.restore(details["clean_codes"])
        qmodel.save(os.path.join(run_dir, "quantized_weights.npz"))
        with open(os.path.join(run_dir, "bit_flips.json"), "w") as f:
            json.dump(
                {
                    "flips": [dict(zip(("layer", "index", "bit", "old", "new"), fl)) for fl in bfa.flips],
                    "loss": bfa.loss,
                    "accuracy": bfa.accuracy,
                    "stopped": bfa.stopped,
                },
                f,
                indent=1,
            )
        # BFA may commit more than one bit in an iteration: plot against cumulative flips
        counts = bfa.cumulative_flips
        series = {"BFA (progressive bit search)": (counts, bfa.accuracy)}
        for t, curve in enumerate(details["random_curves"][:3]):
            series[f"random flips #{t + 1}"] = (np.arange(len(curve)), curve)
        plots = {
            "accuracy": plot_curves(
                series, os.path.join(run_dir, "plots", "bfa_accuracy.png"), xlabel="bits flipped",
                ylabel="test accuracy", title="Bit-Flip Attack vs random flips", hline=self.config.target_accuracy,
            ),
            "loss": plot_curves(
                {"attack-batch loss": (counts, bfa.loss)}, os.path.join(run_dir, "plots", "bfa_loss.png"),
                xlabel="bits flipped", ylabel="cross-entropy", title="BFA loss per iteration",
            ),
        }
        return {**metrics, "plots": plots}


RECIPE = BitFlipAttackRecipe
