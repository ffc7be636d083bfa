"""Generative Adversarial Trainer (Lee, Han, Lee 2017, "Generative Adversarial Trainer: Defense to
Adversarial Perturbations with GAN", arXiv:1705.03387).

A generator `G` maps the classifier's input gradient `Delta = grad_x L_F(x, y)`
to a bounded perturbation (tanh output, `BoundedPerturbation`: |G_i| <= epsilon
per pixel for `norm="linf"`, ||G||_2 <= epsilon for `norm="l2"`). Per batch,
alternately (`kerasnets.models.gat.GATTrainer`):

    generator:   min_G  c_g * ||G(Delta)||_2^2 - L_F(x + G(Delta), y)
    classifier:  min_F  alpha * L_F(x, y) + (1 - alpha) * L_F(x + G(Delta), y)

(`kerasnets.losses.gat`). A baseline classifier of the same architecture and
initial weights is trained on `L_F(x, y)` alone in the same steps. After
training both are attacked:

* FGSM (Goodfellow et al. 2015) at each `fgsm_eps`: accuracy on
  `clip(x + eps * sign(grad_x L))` over the whole test set;
* the L-BFGS attack of Szegedy et al. (`kerasnets.attacks.lbfgs`, untargeted
  by default) on the first `num_attack` test images each model gets right:
  mean minimal distortion `sqrt(sum r^2 / n)` (larger = more robust).

The paper evaluates on CIFAR-10/100 against FGSM; its alpha, c_g and numbers
could not be checked here (see the project notes), so the defaults
(alpha = 0.5, c_g = 0.01, epsilon = 0.1) are ours, tuned on the digits.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import numpy as np

from kerasnets.attacks import lbfgs as lbfgs_lib
from kerasnets.attacks.fgsm import fgsm, fgsm_accuracy
from kerasnets.attacks.plots import plot_adversarial_rows
from kerasnets.tasks.adversarial import NUM_CLASSES, AttackRecipeBase, AttackRecipeConfig
from kerasnets.config import param
from kerasnets.errors import ConfigError
from kerasnets.models.gat import GATTrainer, build_gat_generator
from kerasnets.models.small_classifiers import accuracy, build_classifier, predict_labels


@dataclasses.dataclass
class GATConfig(AttackRecipeConfig):
    classifier: Literal["mlp", "cnn"] = param("cnn", help="classifier architecture (GAT and baseline)")
    generator_filters: tuple[int, ...] = param((32, 32), help="3x3 conv widths of the generator", min=1)
    epsilon: float = param(0.1, help="perturbation bound of the generator", min=1e-6)
    norm: Literal["linf", "l2"] = param("linf", help="linf: epsilon * tanh; l2: tanh projected on the L2 ball")
    alpha: float = param(0.5, help="classifier loss weight of clean images", min=0.0, max=1.0)
    c_g: float = param(0.01, help="generator penalty on ||G||_2^2", min=0.0)
    generator_learning_rate: float = param(1e-3, help="Adam learning rate of the generator", min=0.0)
    baseline: bool = param(True, help="train a normal classifier alongside for the comparison")
    fgsm_eps: tuple[float, ...] = param((0.05, 0.1, 0.2), help="FGSM step sizes evaluated", min=0.0)
    lbfgs_target: Literal["untargeted", "random"] = param("untargeted", help="L-BFGS attack used to measure distortion")
    lbfgs_search_steps: int = param(6, help="c values tried per example", min=1)

    def validate(self) -> None:
        super().validate()
        if not self.fgsm_eps:
            raise ConfigError("bad value for 'fgsm_eps': give at least one step size")


class GATRecipe(AttackRecipeBase):
    name = "gat"
    paper = "Lee, Han, Lee 2017. Generative Adversarial Trainer: Defense to Adversarial Perturbations with GAN. arXiv:1705.03387"
    summary = "Classifier trained against a gradient-to-perturbation generator; FGSM and L-BFGS robustness vs a normal classifier"
    config_class = GATConfig
    key_metrics = ("loss_classifier", "loss_generator", "acc_clean", "perturbation_l2")

    def __init__(self, config=None):
        super().__init__(config)
        self._results = None

    def build_model(self):
        import keras

        c = self.config
        keras.utils.set_random_seed(c.seed)
        shape = self.image_shape()
        clf = build_classifier(c.classifier, shape, NUM_CLASSES, l2=c.weight_decay / 2, name="gat_classifier")
        base = None
        if c.baseline:
            base = build_classifier(c.classifier, shape, NUM_CLASSES, l2=c.weight_decay / 2, name="baseline_classifier")
            base.set_weights(clf.get_weights())  # same start: the training rule is the only difference
        gen = build_gat_generator(shape, c.generator_filters, epsilon=c.epsilon, norm=c.norm)
        return GATTrainer(
            clf, gen, base, alpha=c.alpha, c_g=c.c_g, learning_rate=c.learning_rate,
            generator_learning_rate=c.generator_learning_rate,
        )

    def optimizers(self, model):
        opts = {"optimizer_classifier": model.optimizer_c, "g_optimizer": model.g_optimizer}
        if model.optimizer_b is not None:
            opts["optimizer_baseline"] = model.optimizer_b
        return opts

    def exported_classifier(self, model):
        return model.classifier

    # ---------------------------------------------------------- evaluation
    def _robustness(self, classifier, prefix):
        c = self.config
        (_, _), (x_te, y_te) = self.data()
        out = {f"{prefix}_test_accuracy": accuracy(classifier, x_te, y_te)}
        for eps in c.fgsm_eps:
            out[f"{prefix}_fgsm_accuracy_eps{eps:g}"] = fgsm_accuracy(classifier, x_te, y_te, eps)
        x, y = self.attack_set(classifier)
        targets = None if c.lbfgs_target == "untargeted" else lbfgs_lib.choose_targets(classifier, x, y, "random", c.seed)
        res = lbfgs_lib.lbfgs_attack(classifier, x, y, targets, search_steps=c.lbfgs_search_steps)
        out.update({f"{prefix}_lbfgs_{k}": v for k, v in res.summary().items()})
        return out, res

    def run_evaluation(self, model):
        if self._results is not None and self._results[0] is model:
            return self._results[1], self._results[2]
        metrics, res = self._robustness(model.classifier, "gat")
        details = {"gat_lbfgs": res}
        if model.baseline is not None:
            base_metrics, base_res = self._robustness(model.baseline, "baseline")
            metrics.update(base_metrics)
            details["baseline_lbfgs"] = base_res
        self._results = (model, metrics, details)
        return metrics, details

    def evaluate(self, model):
        return self.run_evaluation(model)[0]

    def on_train_end(self, model, run_dir, history):
        metrics, details = self.run_evaluation(model)
        c = self.config
        k = c.num_plot
        (_, _), (x_te, y_te) = self.data()
        x, y = x_te[:k], y_te[:k]
        plots = {}
        pert = model.perturbation(x, y).numpy()
        adv = np.clip(x + pert, 0.0, 1.0)
        plots["generator"] = plot_adversarial_rows(
            x, adv, os.path.join(run_dir, "plots", "gat_generator.png"), labels=y,
            predictions=predict_labels(model.classifier, adv), title="GAT generator perturbations (GAT classifier)",
        )
        eps = max(c.fgsm_eps)
        for name, clf in (("gat", model.classifier), ("baseline", model.baseline)):
            if clf is None:
                continue
            adv = fgsm(clf, x, y, eps).numpy()
            plots[f"fgsm_{name}"] = plot_adversarial_rows(
                x, adv, os.path.join(run_dir, "plots", f"fgsm_{name}.png"), labels=y,
                predictions=predict_labels(clf, adv), title=f"FGSM eps={eps:g} on the {name} classifier",
            )
            res = details[f"{name}_lbfgs"]
            idx = np.flatnonzero(res.success)[:k]
            if len(idx):
                plots[f"lbfgs_{name}"] = plot_adversarial_rows(
                    res.images[idx], res.adversarial[idx], os.path.join(run_dir, "plots", f"lbfgs_{name}.png"),
                    labels=res.labels[idx], predictions=res.predictions[idx],
                    title=f"L-BFGS minimal perturbations, {name} classifier",
                )
        return {**metrics, "plots": plots}


RECIPE = GATRecipe
