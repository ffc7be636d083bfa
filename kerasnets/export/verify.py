"""Offline verification of exported artefacts.

* `verify_saved_model` loads the SavedModel in a **fresh Python process that
  does not import kerasnets** (the child asserts it), calls
  `signatures["serving_default"](**inputs)` exactly as TF Serving would, and
  compares with the outputs computed in-process. This proves the artefact is
  standalone: no kerasnets layer, loss or registry is needed to serve it.
* `run_tflite` / `verify_tflite` run a `.tflite` file under the LiteRT
  interpreter (`ai_edge_litert`) through its signature runner, quantizing
  float inputs and dequantizing outputs of int8 models with each tensor's
  scale and zero point.

The real TF Serving binary cannot run in this project's offline CI (no Docker,
no `tensorflow_model_server` on PyPI); these checks plus
`saved_model_cli show --dir <version dir> --tag_set serve --signature_def serving_default`
are the offline validation. Against a running server:

    docker run -p 8501:8501 -v $PWD/saved_models/began:/models/began \\
        -e MODEL_NAME=began tensorflow/serving
    curl -d '{"signature_name":"serving_default","inputs":{"z":[[0.1, ...]]}}' \\
        localhost:8501/v1/models/began:predict
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from kerasnets.export.saved_model import ExportError


class VerificationError(ExportError):
    """An exported artefact's outputs differ from the reference beyond tolerance."""


# The child process: plain TensorFlow + NumPy, no kerasnets. Arguments:
# <saved_model_dir> <job.json>; writes outputs and a report next to job.json.
_CHILD = r"""
import json, os, sys
job_path = sys.argv[2]
job = json.load(open(job_path))
report = {"ok": False}
def finish(code):
    report["kerasnets_imported"] = kerasnets_imported()
    with open(job["report"], "w") as f:
        json.dump(report, f)
    sys.exit(code)
def kerasnets_imported():
    return any(m == "kerasnets" or m.startswith("kerasnets.") for m in sys.modules)
if kerasnets_imported():  # e.g. by a sitecustomize or .pth hook: fail before the TF import
    report["error"] = "kerasnets was imported at interpreter start-up"
    finish(5)
try:
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    report["signatures"] = sorted(loaded.signatures)
    results = {}
    for call in job["calls"]:
        sig = call["signature"]
        if sig not in loaded.signatures:
            report["error"] = f"no signature {sig!r}; the SavedModel has {sorted(loaded.signatures)}"
            finish(3)
        fn = loaded.signatures[sig]
        specs = fn.structured_input_signature[1]
        data = np.load(call["inputs"])
        inputs = {name: data[key] for name, key in call["keys"].items()}
        if set(inputs) != set(specs):
            report["error"] = f"signature {sig!r} takes inputs {sorted(specs)}, got {sorted(inputs)}"
            finish(3)
        outputs = fn(**{name: tf.constant(value, dtype=specs[name].dtype) for name, value in inputs.items()})
        names = sorted(outputs)
        arrays = {}
        for i, n in enumerate(names):
            value = outputs[n].numpy()
            arrays[f"o{i}"] = value.astype(np.bytes_) if value.dtype == object else value  # tf.string outputs
        np.savez(call["outputs"], **arrays)
        results[sig] = {"outputs": {n: f"o{i}" for i, n in enumerate(names)}, "inputs": sorted(specs)}
    report["results"] = results
    report["ok"] = True
except SystemExit:
    raise
except BaseException as e:
    import traceback
    report["error"] = "".join(traceback.format_exception(e))[-4000:]
    finish(4)
if kerasnets_imported():
    report["ok"] = False
    report["error"] = "kerasnets was imported"
    finish(5)
finish(0)
"""


def _strip_tf_logs(text: str) -> str:
    noise = ("I0000 ", "W0000 ", "WARNING: All log messages")
    return "\n".join(line for line in text.splitlines() if not line.startswith(noise))


def _savable(value):
    """Arrays `np.savez` can write and the child can load without pickle (strings -> bytes)."""
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind == "U":
        array = np.char.encode(array.astype(str), "utf-8") if array.dtype.kind == "U" else array.astype(np.bytes_)
    return array


def run_saved_model_in_subprocess(path, calls: dict, timeout: float = 600) -> dict:
    """Run signatures of a SavedModel in a fresh Python without kerasnets.

    Args:
        path: SavedModel directory.
        calls: `{signature_name: {input_name: array}}`.
        timeout: seconds before the child is killed.

    Returns:
        `{signature_name: {output_name: np.ndarray}}`.
    """
    path = os.path.abspath(os.fspath(path))
    with tempfile.TemporaryDirectory(prefix="kerasnets-verify-") as tmp:
        job = {"report": os.path.join(tmp, "report.json"), "calls": []}
        for i, (signature, inputs) in enumerate(calls.items()):
            names = list(inputs)
            in_path = os.path.join(tmp, f"in{i}.npz")
            np.savez(in_path, **{f"i{j}": _savable(inputs[n]) for j, n in enumerate(names)})
            job["calls"].append(
                {
                    "signature": signature,
                    "inputs": in_path,
                    "keys": {n: f"i{j}" for j, n in enumerate(names)},
                    "outputs": os.path.join(tmp, f"out{i}.npz"),
                }
            )
        job_path = os.path.join(tmp, "job.json")
        with open(job_path, "w") as f:
            json.dump(job, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        # -P: don't put the working directory on sys.path; cwd=tmp: nothing
        # importable next to the script either.
        flags = ["-P"] if sys.version_info >= (3, 11) else []
        proc = subprocess.run(
            [sys.executable, *flags, "-c", _CHILD, path, job_path],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        report = {}
        if os.path.exists(job["report"]):
            with open(job["report"]) as f:
                report = json.load(f)
        if report.get("kerasnets_imported"):
            raise VerificationError(f"the verification process imported kerasnets while loading {path}")
        if proc.returncode != 0 or not report.get("ok"):
            detail = report.get("error") or _strip_tf_logs(proc.stderr)[-3000:]
            raise VerificationError(f"loading {path} in a fresh process failed (exit {proc.returncode}): {detail}")
        results = {}
        for call in job["calls"]:
            info = report["results"][call["signature"]]
            data = np.load(call["outputs"])
            results[call["signature"]] = {name: data[key] for name, key in info["outputs"].items()}
        return results


def _as_bytes(array):
    """Object / bytes / str array as a bytes array (str encoded as UTF-8), same shape."""
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in np.asarray(array, dtype=object).ravel()]
    return np.array(flat, dtype=object).reshape(np.shape(array))


def output_errors(outputs: dict, expected: dict, where: str = "outputs") -> dict:
    """Max absolute error per output name (NaN where both are NaN counts as equal; strings: 0 or inf)."""
    if set(outputs) != set(expected):
        raise VerificationError(f"{where} keys {sorted(outputs)} differ from the expected keys {sorted(expected)}")
    errors = {}
    for name in sorted(expected):
        got = np.asarray(outputs[name])
        want = np.asarray(expected[name])
        if got.shape != want.shape:
            raise VerificationError(f"{where}[{name!r}] has shape {got.shape}, expected {want.shape}")
        if got.size == 0:
            errors[name] = 0.0
            continue
        if got.dtype.kind in "OSU" or want.dtype.kind in "OSU":  # strings: equal (0) or not (inf)
            errors[name] = 0.0 if np.array_equal(_as_bytes(got), _as_bytes(want)) else float("inf")
            continue
        got64 = got.astype(np.float64)
        want64 = want.astype(np.float64)
        diff = np.abs(got64 - want64)
        diff = np.where(np.isnan(got64) & np.isnan(want64), 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        errors[name] = float(diff.max())
    return errors


def _check_tolerance(errors: dict, atol: float, what: str) -> None:
    bad = {k: v for k, v in errors.items() if not v <= atol}
    if bad:
        detail = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(bad.items()))
        raise VerificationError(f"{what} differs from the reference beyond atol={atol:g} ({detail})")


def verify_saved_model(path, inputs: dict, expected: dict, atol: float = 1e-5, signature="serving_default") -> dict:
    """Reload `path` in a fresh process without kerasnets and compare one signature's outputs.

    Returns the max absolute error per output; raises `VerificationError` if
    any exceeds `atol`, the keys or shapes differ, or the load fails.
    """
    outputs = run_saved_model_in_subprocess(path, {signature: inputs})[signature]
    errors = output_errors(outputs, expected, where=f"SavedModel {signature!r} outputs")
    _check_tolerance(errors, atol, f"SavedModel {path} signature {signature!r}")
    return errors


# ------------------------------------------------------------------------ LiteRT


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=os.fspath(path))


def _pick_signature(interpreter, signature, path):
    available = interpreter.get_signature_list()
    if signature is None:
        if "serving_default" in available:
            return "serving_default"
        if len(available) == 1:
            return next(iter(available))
        raise VerificationError(f"{path} has signatures {sorted(available)}; pass signature=")
    if signature not in available:
        raise VerificationError(f"{path} has no signature {signature!r}; it has {sorted(available)}")
    return signature


def _quantized(detail) -> tuple[float, int] | None:
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(detail["dtype"], np.integer):
        return float(scale), int(zero_point)
    return None


def run_tflite(path, inputs: dict, signature=None) -> dict:
    """Run a `.tflite` file under LiteRT; float in, float out, whatever the model's I/O types.

    Inputs of quantized (int8/uint8/int16) tensors are quantized with the
    tensor's scale and zero point (`q = round(x / scale) + zero_point`, clipped
    to the dtype's range); quantized outputs are dequantized
    (`x = (q - zero_point) * scale`). Other inputs are cast to the tensor's dtype.
    The batch dimension may differ from the converted shape (the runner resizes).
    """
    interpreter = _interpreter(path)
    key = _pick_signature(interpreter, signature, path)
    runner = interpreter.get_signature_runner(key)
    input_details = runner.get_input_details()
    if set(inputs) != set(input_details):
        raise VerificationError(f"{path} signature {key!r} takes inputs {sorted(input_details)}, got {sorted(inputs)}")
    feed = {}
    for name, detail in input_details.items():
        value = np.asarray(inputs[name])
        dtype = detail["dtype"]
        quant = _quantized(detail)
        if quant is not None and not np.issubdtype(value.dtype, np.integer):
            scale, zero_point = quant
            info = np.iinfo(dtype)
            value = np.clip(np.round(value / scale) + zero_point, info.min, info.max)
        feed[name] = value.astype(dtype)
    raw = runner(**feed)
    output_details = runner.get_output_details()
    outputs = {}
    for name, value in raw.items():
        quant = _quantized(output_details[name])
        if quant is not None:
            scale, zero_point = quant
            value = (value.astype(np.float32) - zero_point) * np.float32(scale)
        outputs[name] = np.asarray(value)
    return outputs


def tflite_output_errors(path, inputs: dict, expected: dict, signature=None) -> dict:
    """Max absolute error per output of a `.tflite` file against `expected`."""
    outputs = run_tflite(path, inputs, signature=signature)
    return output_errors(outputs, expected, where=f"TFLite {os.path.basename(os.fspath(path))} outputs")


def verify_tflite(path, inputs: dict, expected: dict, atol: float | None = None, signature=None) -> float:
    """Run under LiteRT and return the max absolute error over all outputs.

    With `atol` (use 1e-4 for float32 models) a larger error raises
    `VerificationError`; without it the error is only reported (int8, fp16).
    """
    errors = tflite_output_errors(path, inputs, expected, signature=signature)
    if atol is not None:
        _check_tolerance(errors, atol, f"TFLite model {path}")
    return max(errors.values())
