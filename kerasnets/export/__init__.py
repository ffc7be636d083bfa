"""Export a trained recipe model for TF Serving and LiteRT, and verify what was written.

`export_run(recipe, model, formats=...)` is what `kerasnets export` calls:

1. SavedModel of `recipe.export_endpoints(model)` in TF Serving layout
   `<export_root>/<recipe>/<version>/` (written to a `.tmp-*` sibling and
   renamed into place), and `<export_root>/models.config`
   (`kerasnets.export.saved_model`);
2. the SavedModel reloaded in a fresh Python process without kerasnets and its
   `serving_default` outputs compared with the model's (<= 1e-5);
3. each requested TFLite mode (`tflite`, `tflite-fp16`, `tflite-int8`) converted
   from the SavedModel with builtin ops only (`kerasnets.export.tflite`), run
   under LiteRT and compared with the SavedModel's outputs (float32 <= 1e-4;
   fp16 and int8 errors are reported).

Serving the result (TF Serving loads the highest integer version):

    docker run -p 8501:8501 -v $PWD/saved_models/began:/models/began \\
        -e MODEL_NAME=began tensorflow/serving
    curl -d '{"signature_name":"serving_default","inputs":{"z":[[0.1, ...]]}}' \\
        localhost:8501/v1/models/began:predict

The real server cannot run in this project's offline CI; step 2 and
`saved_model_cli show --dir <version dir> --tag_set serve --signature_def serving_default`
are the offline validation. Importing this package does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from kerasnets.export.saved_model import ExportArgumentError
from kerasnets.export.saved_model import ExportError
from kerasnets.export.saved_model import VersionExistsError
from kerasnets.export.saved_model import existing_versions
from kerasnets.export.saved_model import export_saved_model
from kerasnets.export.saved_model import models_config_text
from kerasnets.export.saved_model import resolve_export_root
from kerasnets.export.saved_model import write_models_config
from kerasnets.export.tflite import TFLITE_MODES
from kerasnets.export.tflite import batched_inputs
from kerasnets.export.tflite import export_tflite
from kerasnets.export.tflite import tflite_endpoint_name
from kerasnets.export.verify import VerificationError
from kerasnets.export.verify import output_errors
from kerasnets.export.verify import run_saved_model_in_subprocess
from kerasnets.export.verify import run_tflite
from kerasnets.export.verify import tflite_output_errors
from kerasnets.export.verify import verify_saved_model
from kerasnets.export.verify import verify_tflite

__all__ = [
    "ExportArgumentError",
    "ExportError",
    "ExportReport",
    "FORMATS",
    "TOLERANCES",
    "VerificationError",
    "VersionExistsError",
    "existing_versions",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "models_config_text",
    "output_errors",
    "resolve_export_root",
    "run_saved_model_in_subprocess",
    "run_tflite",
    "tflite_output_errors",
    "verify_saved_model",
    "verify_tflite",
    "write_models_config",
]

FORMATS = ("savedmodel", *TFLITE_MODES)
#: Max absolute error allowed against the reference; None = reported only.
TOLERANCES = {"savedmodel": 1e-5, "tflite": 1e-4, "tflite-fp16": None, "tflite-int8": None}
#: Batch size of the verification inputs drawn from `representative_dataset`.
SAMPLE_BATCH = 4


@dataclasses.dataclass
class ExportReport:
    """What `export_run` wrote and how well each artefact matched its reference.

    `errors[format][output]` is the max absolute error: the SavedModel against
    the in-process model, each TFLite file against the SavedModel.
    """

    recipe: str
    version: int
    saved_model_dir: str
    models_config: str
    signatures: dict[str, list[str]]
    tflite: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    tolerances: dict[str, float | None] = dataclasses.field(default_factory=dict)
    output_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def max_error(self, fmt: str) -> float:
        return max(self.errors[fmt].values())

    def _error_text(self, fmt: str, reference: str) -> str:
        if fmt not in self.errors:
            return "not verified"
        per_output = ", ".join(f"{k} {v:.2g}" for k, v in sorted(self.errors[fmt].items()))
        tol = self.tolerances.get(fmt)
        bound = f"<= {tol:g}" if tol is not None else "reported, not asserted"
        return f"max |err| {self.max_error(fmt):.3g} vs {reference} ({bound}) [{per_output}]"

    def lines(self) -> list[str]:
        """Human-readable summary, one item per line."""
        sigs = "; ".join(f"{name}({', '.join(inputs)})" for name, inputs in sorted(self.signatures.items()))
        out = [
            f"SavedModel {self.saved_model_dir}",
            f"  signatures: {sigs}",
            f"  reloaded without kerasnets: {self._error_text('savedmodel', 'Keras model')}",
            f"models.config {self.models_config}",
        ]
        for mode, path in self.tflite.items():
            size_kb = os.path.getsize(path) / 1024 if os.path.exists(path) else float("nan")
            out.append(f"TFLite {mode}: {path} ({size_kb:.1f} KB)")
            out.append(f"  LiteRT: {self._error_text(mode, 'SavedModel')}")
        if self.output_ranges:
            ranges = ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in sorted(self.output_ranges.items()))
            out.append(f"reference output ranges: {ranges}")
        base = os.path.dirname(os.path.abspath(self.saved_model_dir))
        out.append(
            f"serve: docker run -p 8501:8501 -v {base}:/models/{self.recipe} "
            f"-e MODEL_NAME={self.recipe} tensorflow/serving"
        )
        example = ",".join(f'"{name}":[...]' for name in self.signatures.get("serving_default", []))
        out.append(
            f"""predict: curl -d '{{"signature_name":"serving_default","inputs":{{{example}}}}}' """
            f"localhost:8501/v1/models/{self.recipe}:predict"
        )
        return out


def _normalize_formats(formats) -> list[str]:
    if isinstance(formats, str):
        formats = [formats]
    out = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ExportArgumentError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if fmt not in out:
            out.append(fmt)
    return out


def _specs(signature) -> dict:
    return {spec.name: spec for spec in signature}


def _sample_inputs(recipe, specs: dict, endpoint_name: str) -> dict:
    """A verification batch for one endpoint from `recipe.representative_dataset`."""
    dynamic_batch = all(spec.shape.rank and spec.shape[0] is None for spec in specs.values())
    want = SAMPLE_BATCH if dynamic_batch else 1
    where = f"{recipe.name}.representative_dataset item"
    batches = []
    for sample in recipe.representative_dataset(want):
        batches.append(batched_inputs(sample, specs, where=where))
        if not dynamic_batch or sum(len(next(iter(b.values()))) for b in batches) >= want:
            break
    if not batches:
        raise ExportError(f"{recipe.name}.representative_dataset yielded no samples for {endpoint_name!r}")
    if not dynamic_batch:
        return batches[0]
    return {name: np.concatenate([b[name] for b in batches])[:want] for name in specs}


def _call_endpoint(fn, inputs: dict, specs: dict) -> dict:
    import tensorflow as tf

    outputs = fn(**{name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()})
    return {name: np.asarray(value) for name, value in outputs.items()}


def export_run(
    recipe,
    model,
    formats=("savedmodel",),
    export_root=None,
    version=None,
    sample_inputs=None,
    tolerances=None,
    serving_base="/models",
):
    """Export `model` for TF Serving (and LiteRT) and verify every artefact.

    Args:
        recipe: the `Recipe` whose `export_endpoints(model)` defines the signatures.
        model: the trained model.
        formats: any of `"savedmodel"`, `"tflite"`, `"tflite-fp16"`,
            `"tflite-int8"` (a string or a sequence). The SavedModel is always
            written: TFLite files are converted from it.
        export_root: see `export_saved_model` (default `$KERASNETS_EXPORT_ROOT`
            or `saved_models`).
        version: SavedModel version; default next free integer.
        sample_inputs: dict of arrays keyed by `serving_default`'s input names
            used for verification; default a batch from
            `recipe.representative_dataset`.
        tolerances: overrides of `TOLERANCES` (`{format: atol or None}`),
            e.g. `{"tflite": 1e-3}` for a model whose activations are so large
            that float32 rounding alone exceeds 1e-4 (untrained BatchNorm
            statistics on raw pixels do this).
        serving_base: where `export_root` is mounted in the serving container
            (the `base_path` prefix written to `models.config`).

    Returns:
        An `ExportReport`. Raises `VerificationError` if the SavedModel or the
        float32 TFLite model is off beyond tolerance (the files stay on disk
        for inspection).
    """
    from kerasnets.export.saved_model import check_endpoints

    formats = _normalize_formats(formats)
    limits = dict(TOLERANCES)
    for fmt, tol in {**getattr(recipe, "export_tolerances", {}), **(tolerances or {})}.items():
        if fmt not in limits:
            raise ExportArgumentError(f"tolerances: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        if tol is not None and not (isinstance(tol, (int, float)) and tol >= 0):
            raise ExportArgumentError(f"tolerances[{fmt!r}] must be a non-negative number or None, got {tol!r}")
        limits[fmt] = tol
    tflite_modes = [f for f in formats if f in TFLITE_MODES]
    endpoints = check_endpoints(recipe.export_endpoints(model))
    serving_fn, serving_sig = endpoints["serving_default"]
    serving_specs = _specs(serving_sig)
    tflite_names = {mode: tflite_endpoint_name(recipe, mode) for mode in tflite_modes}
    for mode, name in tflite_names.items():
        if name not in endpoints:
            raise ExportError(f"recipe {recipe.name!r}: the {mode} endpoint {name!r} is not among {sorted(endpoints)}")

    # Verification inputs, checked before anything is written.
    if sample_inputs is not None:
        serving_inputs = batched_inputs(sample_inputs, serving_specs, where="sample_inputs")
    else:
        serving_inputs = _sample_inputs(recipe, serving_specs, "serving_default")
    calls = {"serving_default": serving_inputs}
    for name in sorted(set(tflite_names.values()) - {"serving_default"}):
        calls[name] = _sample_inputs(recipe, _specs(endpoints[name][1]), name)
    expected = _call_endpoint(serving_fn, serving_inputs, serving_specs)

    saved_model_dir = export_saved_model(
        recipe, model, export_root=export_root, version=version, serving_base=serving_base
    )
    root = resolve_export_root(export_root)
    report = ExportReport(
        recipe=recipe.name,
        version=int(os.path.basename(saved_model_dir)),
        saved_model_dir=saved_model_dir,
        models_config=os.path.join(root, "models.config"),
        signatures={name: [spec.name for spec in sig] for name, (_, sig) in endpoints.items()},
        tolerances={fmt: limits[fmt] for fmt in ["savedmodel", *tflite_modes]},
    )
    saved_outputs = run_saved_model_in_subprocess(saved_model_dir, calls)
    report.errors["savedmodel"] = output_errors(saved_outputs["serving_default"], expected, "SavedModel outputs")
    report.output_ranges = {  # numeric outputs only (not strings)
        k: (float(np.min(v)), float(np.max(v))) for k, v in expected.items() if np.size(v) and v.dtype.kind in "biuf"
    }
    _enforce(report, "savedmodel")

    for mode in tflite_modes:
        name = tflite_names[mode]
        path = export_tflite(recipe, saved_model_dir, mode)
        report.tflite[mode] = path
        report.errors[mode] = tflite_output_errors(path, calls[name], saved_outputs[name], signature=name)
        _enforce(report, mode)
    return report


def _enforce(report: ExportReport, fmt: str) -> None:
    tol = report.tolerances.get(fmt)
    if tol is None:
        return
    bad = {k: v for k, v in report.errors[fmt].items() if not v <= tol}
    if bad:
        where = report.saved_model_dir if fmt == "savedmodel" else report.tflite[fmt]
        detail = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(bad.items()))
        raise VerificationError(
            f"{fmt} export at {where} differs from its reference beyond atol={tol:g} ({detail}); "
            "the files are kept for inspection"
            + (
                ". If the model's activations are very large (e.g. untrained BatchNorm statistics), float32 "
                "rounding alone can exceed this; pass tolerances={'tflite': ...} to accept it"
                if fmt == "tflite"
                else ""
            )
        )
