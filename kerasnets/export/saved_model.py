"""SavedModel export in TF Serving's versioned layout, plus `models.config`.

`export_saved_model(recipe, model)` writes the recipe's endpoints
(`Recipe.export_endpoints`) with `keras.export.ExportArchive` to

    <export_root>/<recipe.name>/<version>/      saved_model.pb, variables/, ...
    <export_root>/models.config                 text-format ModelServerConfig

`export_root` defaults to `$KERASNETS_EXPORT_ROOT`, else `saved_models` (relative
to the working directory); `version` defaults to the highest existing integer
version + 1, starting at 1.

Atomicity: TF Serving watches `<export_root>/<recipe>/` and loads any child
whose name is an integer. The SavedModel is therefore written to a sibling
directory named `.tmp-<pid>-<hex>` (not an integer, so the server ignores it)
and `os.rename`d to `<version>` only once it is complete. A killed export
leaves at most a `.tmp-*` directory, which the next export into the same
model directory removes (only if the process that wrote it is gone).

Serving it (the real `tensorflow_model_server` cannot run in this project's
offline CI, so the checks in `kerasnets.export.verify` -- reload in a fresh
process without kerasnets, `saved_model_cli show` -- are the offline
validation):

    docker run -p 8501:8501 -v $PWD/saved_models/began:/models/began \\
        -e MODEL_NAME=began tensorflow/serving
    curl -d '{"signature_name":"serving_default","inputs":{"z":[[0.1, ...]]}}' \\
        localhost:8501/v1/models/began:predict

Several models at once, through the generated `models.config` (its
`base_path`s are paths inside the container, `/models/<name>` by default):

    docker run -p 8501:8501 -v $PWD/saved_models:/models tensorflow/serving \\
        --model_config_file=/models/models.config
"""

from __future__ import annotations

import os
import re
import shutil
import uuid

from kerasnets.errors import KerasnetsError
from kerasnets.errors import UsageError

#: Environment variable overriding the default export root.
EXPORT_ROOT_ENV = "KERASNETS_EXPORT_ROOT"
DEFAULT_EXPORT_ROOT = "saved_models"
#: Prefix of in-progress export directories (never an integer: TF Serving skips them).
TMP_PREFIX = ".tmp-"
MODELS_CONFIG = "models.config"

_VERSION_RE = re.compile(r"^[0-9]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class ExportError(KerasnetsError):
    """An export could not be written or did not verify."""


class ExportArgumentError(UsageError, ValueError):
    """A bad argument to an export function (unknown format, bad version, ...)."""


class VersionExistsError(ExportError, FileExistsError):
    """The requested SavedModel version already exists; versions are never overwritten."""


# ----------------------------------------------------------------------------- paths


def resolve_export_root(export_root=None) -> str:
    """`export_root`, else `$KERASNETS_EXPORT_ROOT`, else `saved_models` (cwd-relative)."""
    if export_root is None:
        export_root = os.environ.get(EXPORT_ROOT_ENV) or DEFAULT_EXPORT_ROOT
    return os.fspath(export_root)


def model_base_dir(recipe_name: str, export_root=None) -> str:
    """`<export_root>/<recipe_name>`: TF Serving's `base_path` for this model."""
    _check_model_name(recipe_name)
    return os.path.join(resolve_export_root(export_root), recipe_name)


def existing_versions(base_dir) -> list[int]:
    """Sorted integer versions under `base_dir` that hold a complete SavedModel."""
    if not os.path.isdir(base_dir):
        return []
    versions = []
    for name in os.listdir(base_dir):
        path = os.path.join(base_dir, name)
        if _VERSION_RE.match(name) and os.path.isdir(path):
            versions.append(int(name))
    return sorted(versions)


def _check_model_name(name) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ExportArgumentError(
            f"recipe name {name!r} cannot be a model directory name: use letters, digits, "
            "'_', '-' or '.', starting with a letter or digit"
        )


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportArgumentError(f"version must be a positive integer, got {version!r}")
    return version


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_TMP_RE = re.compile(r"^\.tmp-([0-9]+)-[0-9a-f]{32}$")


def clean_stale_tmp_dirs(directory) -> list[str]:
    """Remove `.tmp-<pid>-<hex>` leftovers (dirs or files) of exports whose process is gone.

    Only names of exactly that form are touched. In-progress writes of live
    processes (this one included) are left alone, so concurrent exports into
    the same model directory don't break each other. Returns the removed paths.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        match = _TMP_RE.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            _unlink(path)
        removed.append(path)
    return removed


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _new_tmp_path(directory) -> str:
    return os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}")


def atomic_write_bytes(path, data: bytes) -> str:
    """Write `data` to `path` via a temp file in the same directory and `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    clean_stale_tmp_dirs(directory)  # leftovers of killed writes
    tmp = _new_tmp_path(directory)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    return path


# -------------------------------------------------------------------- endpoints


def check_endpoints(endpoints) -> dict:
    """Validate `Recipe.export_endpoints` output; returns {name: (fn, [TensorSpec])}."""
    import tensorflow as tf

    if not isinstance(endpoints, dict) or not endpoints:
        raise ExportError(f"export_endpoints must return a non-empty dict of Endpoint, got {type(endpoints).__name__}")
    if "serving_default" not in endpoints:
        raise ExportError(
            f"export_endpoints has no 'serving_default' (TF Serving's default signature); got {sorted(endpoints)}"
        )
    checked = {}
    for name, endpoint in endpoints.items():
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ExportError(f"endpoint name {name!r} is not a valid signature name")
        try:
            fn, signature = endpoint
        except (TypeError, ValueError):
            raise ExportError(f"endpoint {name!r} must be an Endpoint(fn, input_signature), got {endpoint!r}") from None
        if not callable(fn):
            raise ExportError(f"endpoint {name!r}: fn is not callable")
        if not isinstance(signature, (list, tuple)) or not signature:
            raise ExportError(f"endpoint {name!r}: input_signature must be a non-empty list of tf.TensorSpec")
        seen = set()
        for spec in signature:
            if not isinstance(spec, tf.TensorSpec):
                raise ExportError(f"endpoint {name!r}: input_signature items must be tf.TensorSpec, got {spec!r}")
            if not spec.name:
                raise ExportError(
                    f"endpoint {name!r}: every TensorSpec needs a name (it becomes the serving input key), got {spec}"
                )
            if spec.name in seen:
                raise ExportError(f"endpoint {name!r}: duplicate input name {spec.name!r}")
            seen.add(spec.name)
        checked[name] = (fn, list(signature))
    return checked


def keyword_function(name, fn, signature):
    """Wrap `fn(**named_tensors) -> dict` as a positional function (tf.function input order)."""
    names = [spec.name for spec in signature]

    def call(*args):
        outputs = fn(**dict(zip(names, args)))
        if not isinstance(outputs, dict) or not outputs:
            raise ExportError(
                f"endpoint {name!r} must return a non-empty dict of named tensors (TF Serving output keys), "
                f"got {type(outputs).__name__}"
            )
        for key in outputs:
            if not isinstance(key, str):
                raise ExportError(f"endpoint {name!r}: output keys must be strings, got {key!r}")
        return outputs

    call.__name__ = name
    return call


# -------------------------------------------------------------------- export


def _built_sublayers(model) -> list:
    """The outermost built layers under an unbuilt `model` (depth first, each layer once)."""
    found, seen = [], set()

    def visit(layer):
        for child in getattr(layer, "_layers", None) or []:
            if id(child) in seen:
                continue
            seen.add(id(child))
            if child.built:
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def export_saved_model(recipe, model, export_root=None, version=None, serving_base="/models") -> str:
    """Export `recipe.export_endpoints(model)` as `<export_root>/<recipe.name>/<version>/`.

    Args:
        recipe: a `kerasnets.training.recipe.Recipe`; its `name` is the model name.
        model: the trained model passed to `recipe.export_endpoints`.
        export_root: directory holding one sub-directory per model; defaults to
            `$KERASNETS_EXPORT_ROOT`, else `saved_models`.
        version: positive integer; defaults to the highest existing version + 1
            (1 for the first export). An existing version is never overwritten.
        serving_base: where `export_root` is mounted inside the serving
            container; used for the `base_path`s written to `models.config`.

    Returns:
        The path of the new version directory.
    """
    import keras

    root = resolve_export_root(export_root)
    base = model_base_dir(recipe.name, root)
    if version is not None:
        _check_version(version)
    endpoints = check_endpoints(recipe.export_endpoints(model))

    os.makedirs(base, exist_ok=True)
    clean_stale_tmp_dirs(base)
    if version is None:
        version = (existing_versions(base) or [0])[-1] + 1
    final = os.path.join(base, str(version))
    if os.path.exists(final):
        raise VersionExistsError(
            f"{final} already exists; SavedModel versions are never overwritten "
            f"(existing versions: {existing_versions(base)}). Omit version= to export the next one."
        )

    is_layer = isinstance(model, keras.layers.Layer)
    before = {id(v) for v in model.variables} if is_layer else set()
    tmp = _new_tmp_path(base)
    try:
        archive = keras.export.ExportArchive()
        # Variables the endpoints use are tracked automatically; tracking the
        # model adds its other resources (lookup tables). A subclassed model
        # whose own call was never run is not "built" though its sub-networks
        # are: track those built sub-layers (their tables) instead, and check
        # below that tracing did not create (untrained) variables.
        if not is_layer or model.built:
            archive.track(model)
        else:
            for layer in _built_sublayers(model):
                archive.track(layer)
        for name, (fn, signature) in endpoints.items():
            traced = archive.add_endpoint(name, keyword_function(name, fn, signature), input_signature=signature)
            traced.get_concrete_function()  # trace now: errors surface here, variables get checked below
        if is_layer:
            created = [v.path for v in model.variables if id(v) not in before]
            if created:
                raise ExportError(
                    f"tracing the endpoints created {len(created)} new variable(s) ({', '.join(created[:4])}"
                    f"{', ...' if len(created) > 4 else ''}): they would be exported untrained. "
                    f"{type(recipe).__name__}.build_model must build every variable (call the model once)."
                )
        archive.write_out(tmp, verbose=False)
        _write_hook(tmp)
        try:
            # rename(2) onto an existing non-empty directory fails: a concurrent
            # export that took the same version wins, this one reports it.
            os.rename(tmp, final)
        except OSError as e:
            raise VersionExistsError(f"could not move the export into {final}: {e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_models_config(root, serving_base=serving_base)
    return final


def _write_hook(tmp_dir) -> None:
    """Called between writing and renaming; tests patch it to simulate a crash."""


# -------------------------------------------------------------- models.config


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exported_models(export_root=None) -> list[str]:
    """Names of the model directories under `export_root` holding at least one version."""
    root = resolve_export_root(export_root)
    if not os.path.isdir(root):
        return []
    names = []
    for name in sorted(os.listdir(root)):
        base = os.path.join(root, name)
        if not os.path.isdir(base) or name.startswith("."):
            continue
        if any(
            os.path.isfile(os.path.join(base, str(v), "saved_model.pb")) for v in existing_versions(base)
        ):
            names.append(name)
    return names


def models_config_text(names, serving_base="/models") -> str:
    """Text-format `ModelServerConfig` with one `config` per model name.

    `base_path` is `<serving_base>/<name>`: the path inside the serving
    container (mount `<export_root>` at `serving_base`), excluding the version
    directory, as TF Serving expects. The server loads the latest version.
    """
    serving_base = serving_base.rstrip("/") or "/"
    lines = ["model_config_list {"]
    for name in names:
        _check_model_name(name)
        base_path = serving_base + ("" if serving_base.endswith("/") else "/") + name
        lines.append("  config {")
        lines.append(f"    name: {_quote(name)}")
        lines.append(f"    base_path: {_quote(base_path)}")
        lines.append('    model_platform: "tensorflow"')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(export_root=None, serving_base="/models") -> str:
    """(Re)write `<export_root>/models.config` listing every exported model; atomic."""
    root = resolve_export_root(export_root)
    path = os.path.join(root, MODELS_CONFIG)
    atomic_write_bytes(path, models_config_text(exported_models(root), serving_base).encode("utf-8"))
    return path
