"""`RecipeModel`: the base of every model a recipe trains, so it also trains under Keras `fit`.

The engine drives a recipe model's `train_step` itself. A user who prefers
Keras's own loop (callbacks, their own data pipeline) can run the same step:

    model = recipe.build_model()
    model.compile()                      # keeps the model's own optimizer(s)
    model.fit(recipe.build_dataset("train"), steps_per_epoch=100, epochs=1)

Plain `keras.Model.compile()` would replace the optimizer with RMSprop (and a
GAN's `g_optimizer`/`d_optimizer` would not be touched at all, so the step
would run with the wrong one for `optimizer`). Here `compile()` with no
`optimizer` keeps the one the recipe built (with its learning-rate schedule and
slots, the one the checkpoints save). The loss lives in `train_step`, so
`loss=`/`metrics=` are refused rather than silently ignored.
"""

from __future__ import annotations

import keras


def own_optimizers(model) -> dict:
    """The optimizers a model holds as attributes (directly or in a dict), by attribute name."""
    found = {}
    for name, value in vars(model).items():
        if name.startswith("_"):
            continue
        if isinstance(value, keras.optimizers.Optimizer):
            found[name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, keras.optimizers.Optimizer) for v in value.values()):
            found.update({f"{name}[{k!r}]": v for k, v in value.items()})
    return found


class RecipeModel(keras.Model):
    """A `keras.Model` whose `train_step` is a recipe's; `compile()` keeps its own optimizers."""

    def compile(self, optimizer=None, loss=None, metrics=None, *, jit_compile=False, auto_scale_loss=False,
                **kwargs):
        """Configure `fit`: by default with the model's own optimizer(s) and no XLA.

        Args:
            optimizer: leave `None` to train with the optimizer(s) the recipe built.
                Only a model with one optimizer (its `optimizer` attribute) accepts
                another one; the step then uses it.
            loss, metrics: must be `None`: the recipe's `train_step` computes its loss.
            jit_compile: `False` by default: not every recipe's ops compile with XLA.
            auto_scale_loss: `False` by default: the recipe's optimizers already carry
                its loss scaling (`precision=mixed_float16`).
            **kwargs: passed to `keras.Model.compile` (`steps_per_execution`, `run_eagerly`).
        """
        name = type(self).__name__
        if loss is not None or metrics is not None:
            raise ValueError(f"{name} trains on its recipe's own loss in train_step; compile() takes no loss/metrics")
        own = own_optimizers(self)
        if optimizer is None:
            optimizer = own.get("optimizer")
        elif set(own) - {"optimizer"}:
            raise ValueError(
                f"{name} trains with its own optimizers ({', '.join(sorted(own))}); "
                "call compile() without an optimizer"
            )
        super().compile(optimizer=optimizer, jit_compile=jit_compile, auto_scale_loss=auto_scale_loss, **kwargs)
