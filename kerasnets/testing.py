"""Shared test helpers (Keras' own `run_layer_test` is internal, so this is ours).

`run_layer_test` checks what every kerasnets layer promises: output shape,
weight counts, `get_config` round trip, `.keras` save/load with equal outputs,
and one `model.fit` step. Usable for your own layers too. `run_recipe_test`
does the same for a recipe: train, resume, evaluate, export and verify.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import keras
import numpy as np


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _spec_of(array):
    array = np.asarray(array)
    return keras.Input(shape=array.shape[1:], batch_size=array.shape[0], dtype=str(array.dtype))


def run_layer_test(
    layer_cls,
    init_kwargs: dict,
    input_data,
    *,
    expected_output_shape=None,
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    call_kwargs: dict | None = None,
    run_training: bool = True,
    atol: float = 1e-6,
):
    """Exercise a layer end to end and return its (inference) output on `input_data`.

    `input_data` is one array or a list of arrays (multi-input layers). The batch
    dimension is fixed from the data, so layers that need it (RoI layers) work.
    """
    call_kwargs = call_kwargs or {}
    inputs = _as_list(input_data)
    single = not isinstance(input_data, (list, tuple))

    layer = layer_cls(**init_kwargs)
    output = layer(inputs[0] if single else inputs, **call_kwargs)
    if expected_output_shape is not None:
        got = tuple(keras.ops.shape(output))
        assert got == tuple(expected_output_shape), f"output shape {got} != {tuple(expected_output_shape)}"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, (
            f"{len(layer.trainable_weights)} trainable weights, expected {expected_num_trainable_weights}"
        )
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
            f"{len(layer.non_trainable_weights)} non-trainable weights, expected {expected_num_non_trainable_weights}"
        )

    # Config round trip: from_config(get_config()) rebuilds an equal config.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, "get_config/from_config round trip changed the config"
    # Registered under the kerasnets package, so .keras files find the class.
    name = keras.saving.get_registered_name(layer_cls)
    assert name.startswith("kerasnets>"), f"{layer_cls.__name__} is not registered (got {name})"

    # .keras round trip inside a functional model.
    symbolic = [_spec_of(a) for a in inputs]
    fresh = layer_cls(**init_kwargs)
    out = fresh(symbolic[0] if single else symbolic, **call_kwargs)
    model = keras.Model(symbolic, out)
    feed = inputs[0] if single else inputs
    before = keras.ops.convert_to_numpy(model(feed, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    after = keras.ops.convert_to_numpy(restored(feed, training=False))
    np.testing.assert_allclose(after, before, atol=atol, err_msg=".keras round trip changed outputs")
    restored_layer = [lyr for lyr in restored.layers if isinstance(lyr, layer_cls)]
    assert restored_layer, f"no {layer_cls.__name__} in the reloaded model"

    if run_training:
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        target = np.zeros(before.shape, dtype="float32")
        history = model.fit(feed, target, batch_size=len(inputs[0]), epochs=1, verbose=0, shuffle=False)
        assert np.isfinite(history.history["loss"][0]), "training step gave a non-finite loss"
    return before


@dataclasses.dataclass
class RecipeTestResult:
    """What `run_recipe_test` produced, for recipe-specific checks on top."""

    first: object  # engine.TrainResult of the 2-step run
    resumed: object  # engine.TrainResult of the resumed 3-step run
    evaluation: dict
    export: object  # kerasnets.export.ExportReport


def run_recipe_test(recipe_cls, *, export_formats=("savedmodel",), export_tolerances=None, workdir=None,
                    **tiny_overrides) -> RecipeTestResult:
    """Round trip every recipe promises, at a tiny size, through the engine.

    1. trains 2 steps in a fresh run directory (one device unless `strategy=` is given);
    2. runs the same config with `steps=3` in the same directory: it must resume from
       the step-2 checkpoint and take exactly one more step;
    3. evaluates the resumed model (the recipe's paper metrics, a non-empty dict);
    4. exports a SavedModel (plus `export_formats`' TFLite modes where the recipe has
       them) and verifies it in a fresh Python process without kerasnets
       (`kerasnets.export.export_run`).

    Args:
        recipe_cls: the `Recipe` subclass.
        export_formats: e.g. `("savedmodel", "tflite")` for recipes with a TFLite model.
        export_tolerances: passed to `export_run(tolerances=...)`.
        workdir: where the run and the export go (default: a new temporary directory).
        **tiny_overrides: config keys making the recipe tiny (`steps` is set here).
    """
    from kerasnets.config import apply_overrides
    from kerasnets.export import export_run
    from kerasnets.training import engine

    workdir = workdir or tempfile.mkdtemp(prefix=f"kn-{recipe_cls.name}-")
    run_dir = os.path.join(str(workdir), "run")
    overrides = {"strategy": "default", **tiny_overrides}
    results = []
    for steps in (2, 3):
        config = apply_overrides(recipe_cls.config_class(), {**overrides, "steps": steps}, parse=False)
        with open(os.devnull, "w") as quiet:
            results.append(engine.train(recipe_cls(config), run_dir, progress_stream=quiet))
    first, resumed = results
    assert first.resumed_from == 0, f"a fresh run resumed from step {first.resumed_from}"
    assert resumed.resumed_from == 2, f"the steps=3 run resumed from step {resumed.resumed_from}, not 2"
    assert [row["step"] for row in resumed.history][-1:] == [3], f"history ends {resumed.history[-1:]}"
    for label, logs in (("first", first.final_logs), ("resumed", resumed.final_logs)):
        assert logs and all(np.isfinite(v) for v in logs.values()), f"{label} run logs {logs}"

    evaluation = getattr(resumed, "evaluation", None)
    if evaluation is None:
        evaluation = resumed.recipe.evaluate(resumed.model)
    assert isinstance(evaluation, dict) and evaluation, f"evaluate() returned {evaluation!r}"

    report = export_run(resumed.recipe, resumed.model, formats=export_formats,
                        export_root=os.path.join(str(workdir), "saved_models"), tolerances=export_tolerances)
    assert "savedmodel" in report.errors, "the SavedModel was not verified"
    for mode in report.tflite:
        assert mode in report.errors, f"{mode} was not verified"
    return RecipeTestResult(first, resumed, evaluation, report)


_collective_key_bases = iter(range(10_000, 10**9, 1_000))


def fresh_mirrored_strategy(devices=("/cpu:0", "/cpu:1")):
    """A `MirroredStrategy` whose collective keys cannot clash with other strategies in this process.

    Every `MirroredStrategy` numbers its collective ops from the same group and
    instance keys, and TF caches a collective's shape process-wide by those
    keys. A second strategy in the same process (the next test) whose first
    `all_reduce` has another shape then aborts with "Shape mismatch in the
    collective instance 100" (tensorflow/tensorflow#62790). TF's test-only
    class attribute `_collective_key_base` moves each new strategy to unused
    group keys.
    """
    import tensorflow as tf

    cls = tf.distribute.MirroredStrategy
    previous = cls._collective_key_base
    cls._collective_key_base = next(_collective_key_bases)
    try:
        return cls(list(devices))
    finally:
        cls._collective_key_base = previous


def run_distributed_train_step(strategy, recipe, watch=None):
    """One step of `recipe`'s `train_step` on every replica of `strategy`, as the engine runs it.

    Builds the model in `strategy.scope()`, takes the first globally batched training batch
    split over the replicas, runs `strategy.run(model.train_step)` once and averages the logs.
    Returns ``(model, logs, changed)``: ``logs`` as floats, ``changed`` whether any of the
    variables ``watch(model)`` (default: all trainable variables) moved.
    """
    import tensorflow as tf

    with strategy.scope():
        model = recipe.build_model()
    batch = next(iter(strategy.experimental_distribute_dataset(recipe.build_dataset("train"))))
    watched = (watch or (lambda m: m.trainable_variables))(model)
    before = [v.numpy() for v in watched]

    @tf.function
    def step(b):
        logs = strategy.run(model.train_step, args=(b,))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

    logs = {k: float(v) for k, v in step(batch).items()}
    changed = any(np.abs(v.numpy() - b).max() > 0 for v, b in zip(watched, before))
    return model, logs, changed


def report_figure(name: str, value) -> None:
    """Record a figure a test asserts on, so `tools/checks/repeat_tests.py` can show its spread.

    When the environment variable ``KERASNETS_FIGURES`` names a file, appends one JSON line
    ``{"test": <pytest node id>, "name": name, "value": float}`` to it; otherwise does nothing,
    so tests call it unconditionally. An array value is reported element-wise as ``name[i]``.
    """
    path = os.environ.get("KERASNETS_FIGURES")
    if not path:
        return
    import json

    values = np.asarray(keras.ops.convert_to_numpy(value), dtype="float64").reshape(-1)
    names = [name] if values.size == 1 and np.ndim(value) == 0 else [f"{name}[{i}]" for i in range(values.size)]
    # "tests/x.py::test_y (call)" -> the node id.
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    with open(path, "a") as out:
        for n, v in zip(names, values):
            out.write(json.dumps({"test": test, "name": n, "value": float(v)}) + "\n")
