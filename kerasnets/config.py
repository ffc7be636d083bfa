"""Typed recipe configs and strict `key=value` overrides.

Every recipe declares its config as a dataclass that extends `RecipeConfig`.
Fields are declared with `param(...)`, which carries the help text and the
allowed range. Overrides from the command line are parsed as Python literals
with `ast.literal_eval` (never evaluated as code), checked against the field's
type and range, and rejected with a message that names the key, the value and
what was expected. Unknown keys are rejected with the list of valid keys and
the closest match.

This module does not import TensorFlow: `kerasnets show` and the CLI's error
paths stay fast.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any, Literal, Optional

from kerasnets.errors import ConfigError

_MISSING = dataclasses.MISSING


def param(default=_MISSING, *, help="", min=None, max=None, default_factory=_MISSING):
    """A config field with help text and an optional closed range [min, max]."""
    metadata = {"help": help, "min": min, "max": max}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class RecipeConfig:
    """Keys shared by every recipe. Recipes subclass this and add their own."""

    steps: int = param(1000, help="number of training steps (global batches)", min=1)
    batch_size: int = param(32, help="global batch size, split over replicas", min=1)
    seed: int = param(0, help="seed for weights, data order and noise", min=0)
    data: str = param("embedded", help="data source: 'embedded' (no download) or a real loader")
    data_dir: Optional[str] = param(None, help="tensorflow-datasets data_dir or the paper's files")
    download: bool = param(False, help="let tensorflow-datasets download missing data")
    checkpoint_every: int = param(200, help="save a checkpoint every N steps (and at the end)", min=1)
    keep_checkpoints: int = param(3, help="checkpoints kept on disk", min=1)
    log_every: int = param(10, help="write TensorBoard scalars every N steps", min=1)
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = param(
        "auto",
        help="auto: multi_worker if TF_CONFIG is set, mirrored if >1 local device, else default",
    )

    def validate(self) -> None:
        """Cross-field checks; subclasses extend and raise `ConfigError`."""


# --------------------------------------------------------------------------- types


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or None" if len(args) < len(typing.get_args(tp)) else inner
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"tuple of {_type_name(args[0])}"
        return "tuple(" + ", ".join(_type_name(a) for a in args) + ")"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, tp) -> Any:
    """Return `value` as type `tp`, or raise `_Mismatch`. No implicit lossy casts."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice and type(value) is type(choice):
                return choice
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is tuple:
        if isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, tuple):
            value = (value,)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(args) != len(value):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if dataclasses.is_dataclass(tp):
        raise _Mismatch
    if isinstance(value, tp):
        return value
    raise _Mismatch


def parse_literal(text: str) -> Any:
    """Parse a command-line value as a Python/JSON literal, else keep the string.

    `ast.literal_eval` only accepts literals: nothing is executed.
    """
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


# ----------------------------------------------------------------------- fields


def _fields(cls_or_obj) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls_or_obj)}


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(config_cls, prefix: str = "") -> list[str]:
    """All settable keys, nested dataclass fields as dotted keys."""
    keys = []
    hints = _hints(config_cls)
    for name in _fields(config_cls):
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            keys.extend(valid_keys(tp, prefix + name + "."))
        else:
            keys.append(prefix + name)
    return keys


def describe_keys(config_cls) -> list[tuple[str, str, Any, str]]:
    """(key, type, default, help) for every key, for `kerasnets show --help`-like output."""
    rows = []
    default = config_cls()

    def walk(cls, obj, prefix):
        hints = _hints(cls)
        for name, f in _fields(cls).items():
            tp = hints[name]
            value = getattr(obj, name)
            if dataclasses.is_dataclass(tp):
                walk(tp, value, prefix + name + ".")
            else:
                rows.append((prefix + name, _type_name(tp), value, f.metadata.get("help", "")))

    walk(config_cls, default, "")
    return rows


def _unknown_key_error(key: str, config_cls) -> ConfigError:
    keys = valid_keys(config_cls)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown key '{key}' for {config_cls.__name__}.{hint} Valid keys: {', '.join(sorted(keys))}"
    )


def _check_value(owner_cls, name: str, key: str, value: Any) -> Any:
    field = _fields(owner_cls)[name]
    tp = _hints(owner_cls)[name]
    try:
        value = _coerce(value, tp)
    except _Mismatch:
        raise ConfigError(
            f"bad value for '{key}': {value!r} ({type(value).__name__}); expected {_type_name(tp)}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"bad value for '{key}': {value!r}; expected a finite number")
    lo, hi = field.metadata.get("min"), field.metadata.get("max")
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if (lo is not None and item < lo) or (hi is not None and item > hi):
                rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
                raise ConfigError(f"bad value for '{key}': {value!r}; expected a value in {rng}")
    return value


def _set(config, key: str, value: Any, config_cls) -> Any:
    """Return a copy of `config` with dotted `key` set to `value` (checked)."""
    head, _, rest = key.partition(".")
    if head not in _fields(config):
        raise _unknown_key_error(key, config_cls)
    tp = _hints(type(config))[head]
    if dataclasses.is_dataclass(tp):
        if not rest:
            raise ConfigError(f"'{key}' is a section; set one of its keys, e.g. '{key}.{next(iter(_fields(tp)))}'")
        return dataclasses.replace(config, **{head: _set(getattr(config, head), rest, config_cls)})
    if rest:
        raise _unknown_key_error(key, config_cls)
    return dataclasses.replace(config, **{head: _check_value(type(config), head, key, value)})


def split_overrides(args: typing.Iterable[str]) -> dict[str, str]:
    """`["a=1", "b.c=x"]` -> `{"a": "1", "b.c": "x"}`; rejects malformed and repeated keys."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected key=value, got '{arg}'")
        if key in out:
            raise ConfigError(f"key '{key}' given twice")
        out[key] = value
    return out


def apply_overrides(config, overrides: dict[str, Any], *, parse: bool = True):
    """Return a new config with `overrides` applied and validated.

    With `parse=True` the values are command-line strings parsed as literals;
    a string field keeps the raw text when it is not a literal (`data=tfds`).
    """
    cls = type(config)
    for key, raw in overrides.items():
        value = parse_literal(raw) if parse and isinstance(raw, str) else raw
        try:
            config = _set(config, key, value, cls)
        except ConfigError:
            # `name=123` for a str field: keep the text the user typed.
            if parse and isinstance(raw, str) and not isinstance(value, str):
                try:
                    config = _set(config, key, raw, cls)
                    continue
                except ConfigError:
                    pass
            raise
    config.validate()
    return config


def to_dict(config) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(config_cls, data: dict[str, Any]):
    """Rebuild a config from `to_dict` output, strictly (unknown keys are errors)."""
    flat: dict[str, Any] = {}

    def flatten(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                flatten(v, prefix + k + ".")
            else:
                flat[prefix + k] = v

    flatten(data, "")
    return apply_overrides(config_cls(), flat, parse=False)


def to_json(config) -> str:
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def diff(a, b) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs of the same class."""
    da, db = to_dict(a), to_dict(b)
    out = {}

    def walk(x, y, prefix):
        for k in x:
            if isinstance(x[k], dict):
                walk(x[k], y[k], prefix + k + ".")
            elif x[k] != y[k]:
                out[prefix + k] = (x[k], y[k])

    walk(da, db, "")
    return out
