"""TFLite conversion of an exported SavedModel: float32, float16 and full int8.

`export_tflite(recipe, saved_model_dir, mode)` converts the SavedModel's
`recipe.tflite_endpoint` signature (default `serving_default`) with
`tf.lite.TFLiteConverter.from_saved_model(..., signature_keys=[...])`, the
path Keras' own `format="litert"` export and Model Garden take. Only TFLite
builtin ops are allowed (never `SELECT_TF_OPS`: the stock LiteRT interpreter
has no Flex delegate), so an endpoint with a non-builtin op -- in-graph random
sampling is the usual one; export generators with `z` as an input -- fails
with an `ExportError` naming the ops.

Modes:

* `tflite`: float32 weights and I/O.
* `tflite-fp16`: float16 weights (dequantized at load), float32 I/O.
* `tflite-int8`: full integer post-training quantization
  (`TFLITE_BUILTINS_INT8`), int8 inputs and outputs for float tensors;
  calibrated on `recipe.representative_dataset()`, whose dicts are fed by
  input name to the signature. `kerasnets.export.verify.run_tflite` does the
  (de)quantization with each tensor's scale and zero point.

Default output: `<export_root>/<recipe>/tflite/<recipe>_v<version>_<kind>.tflite`
with kind `float32`, `fp16` or `int8`. The `tflite/` folder is not an integer,
so TF Serving, which watches `<export_root>/<recipe>/`, ignores it.

Running it on a device: copy the file and use the LiteRT interpreter
(`ai_edge_litert.interpreter.Interpreter(model_path=...)
.get_signature_runner("serving_default")(z=...)`). For the SavedModel itself:

    docker run -p 8501:8501 -v $PWD/saved_models/began:/models/began \\
        -e MODEL_NAME=began tensorflow/serving
    curl -d '{"signature_name":"serving_default","inputs":{"z":[[0.1, ...]]}}' \\
        localhost:8501/v1/models/began:predict

(The real server cannot run in this project's offline CI; `kerasnets.export.verify`
is the offline check.)
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from kerasnets.export.saved_model import ExportArgumentError
from kerasnets.export.saved_model import ExportError
from kerasnets.export.saved_model import atomic_write_bytes

#: mode -> file-name kind.
TFLITE_MODES = {"tflite": "float32", "tflite-fp16": "fp16", "tflite-int8": "int8"}


def check_mode(mode) -> str:
    if mode not in TFLITE_MODES:
        raise ExportArgumentError(f"unknown TFLite mode {mode!r}; expected one of {', '.join(TFLITE_MODES)}")
    return mode


def default_tflite_path(recipe_name: str, saved_model_dir, mode: str) -> str:
    """`<model base dir>/tflite/<recipe>_v<version>_<kind>.tflite` for a versioned SavedModel dir."""
    check_mode(mode)
    saved_model_dir = os.path.abspath(os.fspath(saved_model_dir))
    version = os.path.basename(saved_model_dir.rstrip(os.sep))
    if not version.isdigit():
        raise ExportArgumentError(
            f"{saved_model_dir} is not a versioned SavedModel directory (<base>/<int>); pass out_path="
        )
    base = os.path.dirname(saved_model_dir.rstrip(os.sep))
    return os.path.join(base, "tflite", f"{recipe_name}_v{int(version)}_{TFLITE_MODES[mode]}.tflite")


def signature_inputs(saved_model_dir, signature_key: str) -> dict:
    """Input name -> `tf.TensorSpec` of one signature of a SavedModel."""
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(saved_model_dir))
    if signature_key not in loaded.signatures:
        raise ExportError(
            f"SavedModel {saved_model_dir} has no signature {signature_key!r}; it has {sorted(loaded.signatures)}"
        )
    return dict(loaded.signatures[signature_key].structured_input_signature[1])


def batched_inputs(sample: dict, specs: dict, where: str = "inputs") -> dict:
    """Check a dict of arrays against named specs; cast dtypes and add a batch axis if missing."""
    if not isinstance(sample, dict):
        raise ExportError(f"{where} must be a dict keyed by input name, got {type(sample).__name__}")
    missing = sorted(set(specs) - set(sample))
    extra = sorted(set(sample) - set(specs))
    if missing or extra:
        raise ExportError(
            f"{where} keys {sorted(sample)} do not match the signature inputs {sorted(specs)}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    out = {}
    for name, spec in specs.items():
        array = np.asarray(sample[name], dtype=spec.dtype.as_numpy_dtype)
        rank = spec.shape.rank
        if rank is not None and array.ndim == rank - 1:
            array = array[None]
        if rank is not None and array.ndim != rank:
            raise ExportError(
                f"{where}[{name!r}] has shape {array.shape}; the signature expects {spec.shape} (batched)"
            )
        for got, want in zip(array.shape, spec.shape.as_list() if rank is not None else []):
            if want is not None and got != want:
                raise ExportError(f"{where}[{name!r}] has shape {array.shape}; the signature expects {spec.shape}")
        out[name] = array
    return out


_FLEX_OP_RE = re.compile(r"'tf\.([A-Za-z0-9_]+)' op is neither a custom op nor a flex op")


def _converter_error(err, endpoint) -> ExportError:
    text = str(err)
    ops = sorted(set(_FLEX_OP_RE.findall(text)))
    if ops or "ops are not supported by the native TFLite runtime" in text:
        return ExportError(
            f"endpoint {endpoint!r} uses ops that are not TFLite builtins: {', '.join(ops) or 'see below'}. "
            "kerasnets exports builtin ops only (no SELECT_TF_OPS: the stock LiteRT interpreter cannot run "
            "them). Move such ops out of the exported function (e.g. take the noise z as an input instead "
            "of sampling it in the graph).\n" + text[:2000]
        )
    return ExportError(f"TFLite conversion of endpoint {endpoint!r} failed: {text[:2000]}")


def convert_saved_model(saved_model_dir, mode, signature_key="serving_default", representative_dataset=None) -> bytes:
    """Convert one signature of a SavedModel to a TFLite flatbuffer (builtin ops only)."""
    import tensorflow as tf

    check_mode(mode)
    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved_model_dir), signature_keys=[signature_key])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "tflite-int8":
        if representative_dataset is None:
            raise ExportArgumentError("tflite-int8 needs a representative_dataset for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # int8 calibration uses TF's own (deprecated) tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            return converter.convert()
    except ExportError:  # raised by our representative_dataset: already clear
        raise
    except Exception as err:  # ConverterError lives in a private module
        raise _converter_error(err, signature_key) from err


def tflite_endpoint_name(recipe, mode: str) -> str:
    """The endpoint `recipe` converts for TFLite `mode` (`Recipe.tflite_endpoint_for`, else `tflite_endpoint`)."""
    pick = getattr(recipe, "tflite_endpoint_for", None)
    return pick(mode) if pick is not None else recipe.tflite_endpoint


def export_tflite(recipe, saved_model_dir, mode, out_path=None, num_calibration_samples=None) -> str:
    """Convert the recipe's TFLite endpoint for `mode` of `saved_model_dir` to a `.tflite` file.

    Args:
        recipe: the recipe that exported the SavedModel (name, `tflite_endpoint_for(mode)`
            / `tflite_endpoint`, `representative_dataset` for int8).
        saved_model_dir: a SavedModel version directory from `export_saved_model`.
        mode: `"tflite"` (float32), `"tflite-fp16"` or `"tflite-int8"`.
        out_path: output file; defaults to `default_tflite_path(...)`.
        num_calibration_samples: int8 only; passed to
            `recipe.representative_dataset` (its default when None).

    Returns:
        The path of the written file (written atomically).
    """
    check_mode(mode)
    if out_path is None:
        out_path = default_tflite_path(recipe.name, saved_model_dir, mode)
    endpoint = tflite_endpoint_name(recipe, mode)
    representative = None
    if mode == "tflite-int8":
        specs = signature_inputs(saved_model_dir, endpoint)
        kwargs = {} if num_calibration_samples is None else {"num_samples": num_calibration_samples}

        def representative():
            count = 0
            for sample in recipe.representative_dataset(**kwargs):
                # A dict keyed by input name: the calibrator maps it onto the
                # signature's inputs by name, whatever their tensor order.
                yield batched_inputs(sample, specs, where=f"{recipe.name}.representative_dataset item")
                count += 1
            if count == 0:
                raise ExportError(f"{recipe.name}.representative_dataset yielded no samples")

    flatbuffer = convert_saved_model(saved_model_dir, mode, endpoint, representative)
    return atomic_write_bytes(out_path, flatbuffer)
