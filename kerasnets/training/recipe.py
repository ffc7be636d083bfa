"""The Recipe contract: config -> model + data + evaluation + export.

A recipe binds one paper to the engine. It is a thin class (see
`recipes/began.py`): the architecture lives in `kerasnets.models`, the layers
and losses in `kerasnets.layers` / `kerasnets.losses`, the loop in
`kerasnets.training.engine`, the export in `kerasnets.export`.

Contract of the model returned by `build_model` (called inside
`strategy.scope()`):

* every variable and every optimizer is built before it returns (optimizer
  slots created lazily inside `strategy.run` break MirroredStrategy);
* `model.train_step(batch)` runs one replica's step and returns a dict of
  scalar tensors, *unscaled* (the engine averages them over replicas);
  losses used for gradients are divided by `num_replicas_in_sync` inside it
  (`kerasnets.distribute.scale_loss`), since gradients are summed
  over replicas;
* state that replicas update (e.g. BEGAN's `k_t`) uses `aggregation="mean"`;
* noise is drawn with `kerasnets.distribute.replica_seed` so each
  replica draws different noise and a resumed run draws the same noise.
"""

from __future__ import annotations

import functools
import typing
from typing import Any, ClassVar, Iterator

from kerasnets.config import RecipeConfig

if typing.TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf


class Endpoint(typing.NamedTuple):
    """One exported signature: a function of named tensors returning a dict.

    `fn` takes keyword tensors matching `input_signature` (a list of named
    `tf.TensorSpec`) and returns a dict of named output tensors.
    """

    fn: Any
    input_signature: list


class Recipe:
    """Base class of every recipe. Subclass, set the class attributes, override the hooks."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""  # authors, year, title, arXiv id
    summary: ClassVar[str] = ""  # one line for `kerasnets recipes`
    config_class: ClassVar[type[RecipeConfig]] = RecipeConfig
    key_metrics: ClassVar[tuple[str, ...]] = ("loss",)  # shown in the progress bar
    #: Name of the endpoint converted to TFLite (must have only builtin ops).
    tflite_endpoint: ClassVar[str] = "serving_default"
    #: Endpoint per TFLite mode where it differs from `tflite_endpoint`, e.g.
    #: `{"tflite-int8": "raw"}` when post-processing (NMS) cannot be quantized.
    tflite_endpoints: ClassVar[dict[str, str]] = {}
    #: Recipe-specific verification tolerances (`{format: atol or None}`), e.g. a looser
    #: SavedModel bound for outputs in pixels; the caller's `tolerances=` still win.
    export_tolerances: ClassVar[dict[str, float | None]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "evaluate" in cls.__dict__:
            cls.evaluate = _reuse_final_evaluation(cls.__dict__["evaluate"])

    def __init__(self, config: RecipeConfig | None = None):
        self.config = config if config is not None else self.config_class()
        #: Set by the engine before training: the run directory (None on non-chief workers).
        self.run_dir: str | None = None

    # ------------------------------------------------------------------ model
    def build_model(self) -> "keras.Model":
        """Build the model, its optimizers and recipe state. Called in `strategy.scope()`."""
        raise NotImplementedError

    def tflite_endpoint_for(self, mode: str) -> str:
        """The endpoint converted for TFLite `mode` (`tflite_endpoints`, else `tflite_endpoint`)."""
        return self.tflite_endpoints.get(mode, self.tflite_endpoint)

    def checkpoint_items(self, model) -> dict[str, Any]:
        """Trackables saved in checkpoints besides the step counter."""
        items = {"model": model}
        for attr in ("optimizer", "g_optimizer", "d_optimizer"):
            opt = getattr(model, attr, None)
            if opt is not None:
                items[attr] = opt
        return items

    # ------------------------------------------------------------------- data
    def build_dataset(self, split: str = "train", start_step: int = 0) -> "tf.data.Dataset":
        """Globally batched dataset (`config.batch_size`).

        For `split="train"`: infinite and deterministic given `config.seed`,
        positioned `start_step` batches in, so a resumed run sees the same
        data as an uninterrupted one.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def on_log(self, model, step: int, writer) -> None:
        """Called every `log_every` steps with an active summary writer (images)."""

    def post_train(self, model) -> dict[str, Any] | None:
        """Non-gradient training after the last step (R-CNN's SVMs), before the final checkpoint.

        Runs on every worker when this invocation trained at least one step; whatever it
        changes in the model's variables goes into the final checkpoint. Returns a dict
        merged into `summary.json` (or None).
        """
        return None

    def on_train_end(self, model, run_dir: str, history: list[dict[str, float]]) -> dict[str, Any]:
        """Plots and final artefacts (chief only, after the final checkpoint); returns a summary dict stored in `summary.json`."""
        return {}

    def evaluate(self, model) -> dict[str, float]:
        """The paper's metric(s) on the evaluation split."""
        return {}

    # ----------------------------------------------------------------- export
    def export_endpoints(self, model) -> dict[str, Endpoint]:
        """Named endpoints for the SavedModel; must include `serving_default`."""
        raise NotImplementedError(f"recipe '{self.name}' does not define an export yet")

    def representative_dataset(self, num_samples: int = 64) -> Iterator[dict[str, Any]]:
        """Calibration inputs (dicts keyed like the TFLite endpoint's inputs) for int8."""
        raise NotImplementedError(f"recipe '{self.name}' has no int8 calibration data")


_NO_MODEL = object()


def _reuse_final_evaluation(evaluate):
    """Wrap a recipe's `evaluate` so the trained model is evaluated once per training run.

    Many recipes put their evaluation into `summary.json` from `on_train_end`, and
    `kerasnets train` then writes `eval.json` from `evaluate` again. The engine marks the
    model it returns (`_final_model`); the first complete evaluation of that model is kept
    and a copy returned on later calls. Calls nested in an evaluation (`super().evaluate`)
    and calls with any other model are never served from the memo.
    """

    @functools.wraps(evaluate)
    def wrapper(self, *args, **kwargs):
        outermost = not getattr(self, "_evaluating", False)
        # Only the plain `evaluate(model)` form; other arguments (a split, ...) always evaluate.
        if len(args) == 1 and not kwargs:
            model = args[0]
        elif not args and list(kwargs) == ["model"]:
            model = kwargs["model"]
        else:
            model = _NO_MODEL
        final = outermost and model is not _NO_MODEL and model is getattr(self, "_final_model", _NO_MODEL)
        if final and getattr(self, "_final_evaluation", None) is not None:
            return dict(self._final_evaluation)
        self._evaluating = True
        try:
            result = evaluate(self, *args, **kwargs)
        finally:
            if outermost:
                self._evaluating = False
        if final:
            self._final_evaluation = dict(result)
        return result

    return wrapper
