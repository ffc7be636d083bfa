"""Adversarial examples by box-constrained L-BFGS (Szegedy et al. 2013, "Intriguing properties of
neural networks", arXiv:1312.6199, section 4).

Two classifiers are trained independently on the same data (model A:
`classifier`, Szegedy's FC100-100-10 MLP by default; model B:
`transfer_classifier`, a small CNN by default). After training, on the first
`num_attack` test images A classifies correctly:

* targeted attack on A (paper, 4.1): for a target `l != y`, minimise

      c * |r|_2 + loss_A(x + r, l)   subject to  x + r in [0, 1]^m

  with SciPy's L-BFGS-B (per-pixel bounds) and a search over c for the
  smallest distortion that still reaches `l` (`kerasnets.attacks.lbfgs`);
* untargeted attack on A (any label but y; not in the paper);
* transfer (paper, 4.3 "cross-model generalization"): the share of A's
  targeted adversarial examples that B misclassifies (among images B gets
  right unperturbed), and the share B assigns to the same target.

Reported distortion is the paper's `sqrt(sum r^2 / n)` (RMS pixel change,
pixels in [0, 1]) averaged over successful examples; `mean_l2` is ||r||_2.
Paper (MNIST, 100 % success): average minimum distortion 0.062 (FC10,
lambda=1e-4), 0.058 (FC100-100-10), 0.065 (FC200-200-10) [figures from the
notes, unverified against the paper text].
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import numpy as np

from kerasnets.attacks import lbfgs as lbfgs_lib
from kerasnets.attacks.plots import plot_adversarial_rows
from kerasnets.tasks.adversarial import NUM_CLASSES, AttackRecipeBase, AttackRecipeConfig
from kerasnets.config import param
from kerasnets.models.small_classifiers import JointClassifierTrainer, accuracy, build_classifier, predict_labels


@dataclasses.dataclass
class LBFGSAttackConfig(AttackRecipeConfig):
    classifier: Literal["mlp", "cnn"] = param("mlp", help="attacked model A (mlp = FC100-100-10)")
    transfer_classifier: Literal["mlp", "cnn"] = param("cnn", help="model B for the transfer rate")
    norm: Literal["l2", "l2_squared"] = param("l2", help="distortion term: c*|r|_2 (paper) or c*|r|_2^2")
    target: Literal["random", "next_likely"] = param("random", help="target label of the targeted attack")
    untargeted: bool = param(True, help="also run the untargeted attack (any label but the true one)")
    initial_c: float = param(1.0, help="first c of the search", min=1e-12)
    search_steps: int = param(8, help="L-BFGS-B runs per example in the search over c", min=1)
    max_iterations: int = param(200, help="L-BFGS-B iterations per run", min=1)


class LBFGSAttackRecipe(AttackRecipeBase):
    name = "lbfgs_attack"
    paper = "Szegedy, Zaremba, Sutskever, Bruna, Erhan, Goodfellow, Fergus 2013. Intriguing properties of neural networks. arXiv:1312.6199"
    summary = "Box-constrained L-BFGS adversarial examples: success rate, minimal distortion, cross-model transfer"
    config_class = LBFGSAttackConfig
    key_metrics = ("loss_A", "acc_A", "loss_B", "acc_B")

    def __init__(self, config=None):
        super().__init__(config)
        self._results = None

    def build_model(self):
        c = self.config
        shape = self.image_shape()
        import keras

        keras.utils.set_random_seed(c.seed)
        model_a = build_classifier(c.classifier, shape, NUM_CLASSES, l2=c.weight_decay / 2, name="model_A")
        model_b = build_classifier(c.transfer_classifier, shape, NUM_CLASSES, l2=c.weight_decay / 2, name="model_B")
        return JointClassifierTrainer({"A": model_a, "B": model_b}, learning_rate=c.learning_rate)

    def optimizers(self, model):
        return {f"optimizer_{k}": v for k, v in model.optimizers.items()}

    def exported_classifier(self, model):
        return model.classifiers["A"]

    # -------------------------------------------------------------- attack
    def run_attacks(self, model):
        """Attack model A; returns `(metrics, examples for the plots)` (cached per model)."""
        if self._results is not None and self._results[0] is model:
            return self._results[1], self._results[2]
        c = self.config
        model_a, model_b = model.classifiers["A"], model.classifiers["B"]
        (_, _), (x_te, y_te) = self.data()
        metrics = {"test_accuracy_A": accuracy(model_a, x_te, y_te), "test_accuracy_B": accuracy(model_b, x_te, y_te)}
        x, y = self.attack_set(model_a)
        targets = lbfgs_lib.choose_targets(model_a, x, y, c.target, seed=c.seed)
        common = dict(norm=c.norm, initial_c=c.initial_c, search_steps=c.search_steps, max_iterations=c.max_iterations)
        targeted = lbfgs_lib.lbfgs_attack(model_a, x, y, targets, **common)
        metrics.update({f"targeted_{k}": v for k, v in targeted.summary().items()})
        # transfer to B: only images B classifies correctly when clean
        ok = targeted.success & (predict_labels(model_b, x) == y)
        pred_b = predict_labels(model_b, targeted.adversarial)
        metrics["transfer_num"] = int(ok.sum())
        metrics["transfer_error_rate_B"] = float(np.mean(pred_b[ok] != y[ok])) if ok.any() else float("nan")
        metrics["transfer_target_rate_B"] = float(np.mean(pred_b[ok] == targets[ok])) if ok.any() else float("nan")
        examples = {"targeted": targeted}
        if c.untargeted:
            untargeted = lbfgs_lib.lbfgs_attack(model_a, x, y, None, **common)
            metrics.update({f"untargeted_{k}": v for k, v in untargeted.summary().items()})
            examples["untargeted"] = untargeted
        self._results = (model, metrics, examples)
        return metrics, examples

    def evaluate(self, model):
        return self.run_attacks(model)[0]

    def on_train_end(self, model, run_dir, history):
        metrics, examples = self.run_attacks(model)
        plots = {}
        k = self.config.num_plot
        for kind, res in examples.items():
            idx = np.flatnonzero(res.success)[:k]
            if len(idx):
                path = os.path.join(run_dir, "plots", f"lbfgs_{kind}.png")
                plots[kind] = plot_adversarial_rows(
                    res.images[idx], res.adversarial[idx], path, labels=res.labels[idx],
                    predictions=res.predictions[idx], title=f"L-BFGS {kind} attack on model A",
                )
        return {**metrics, "plots": plots}


RECIPE = LBFGSAttackRecipe
