"""The `kerasnets` command.

    kerasnets recipes
    kerasnets show     recipe=NAME [key=value ...]
    kerasnets train    recipe=NAME [run=NAME_OR_DIR] [key=value ...]
    kerasnets evaluate recipe=NAME run=DIR
    kerasnets export   recipe=NAME run=DIR [format=savedmodel|tflite|tflite-fp16|tflite-int8]
                       [version=N] [export_root=DIR]

Arguments are `key=value` pairs. Values are parsed as literals (never
evaluated). Usage errors (unknown recipe or key, wrong type, out of range)
exit with code 2 before anything is written. This module imports TensorFlow
only once a command needs it, so `kerasnets --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys

import click

from kerasnets import __version__
from kerasnets import config as config_lib
from kerasnets import registry
from kerasnets.errors import KerasnetsError, UsageError

EXPORT_FORMATS = ("savedmodel", "tflite", "tflite-fp16", "tflite-int8")
_ARGS = dict(context_settings={"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]})


def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _split(args, command: str, allowed_extra: tuple[str, ...]):
    """-> (recipe class, {extra key: value}, {config key: raw value})."""
    pairs = config_lib.split_overrides(args)
    name = pairs.pop("recipe", None)
    if not name:
        raise UsageError(
            f"'kerasnets {command}' needs recipe=NAME. Valid recipes: {', '.join(sorted(registry.available()))}"
        )
    extra = {k: pairs.pop(k) for k in list(pairs) if k in allowed_extra}
    _quiet_tf()
    return registry.get(name), extra, pairs


def _resolve_config(recipe_cls, overrides):
    return config_lib.apply_overrides(recipe_cls.config_class(), overrides)


def _run_dir_arg(recipe_cls, extra, required: bool) -> str | None:
    from kerasnets.training import run_dir as run_dir_lib

    run = extra.get("run")
    if run is None:
        if required:
            raise UsageError("this command needs run=DIR (a run directory written by 'kerasnets train')")
        return None
    path = run_dir_lib.resolve(recipe_cls.name, run, extra.get("runs_dir"))
    if required and not os.path.isdir(path):
        raise UsageError(f"run directory '{path}' does not exist")
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kerasnets")
def cli():
    """Classic deep-learning papers as Keras 3 recipes: train, evaluate, export.

    Every argument is key=value; `kerasnets show recipe=NAME` lists a recipe's keys.
    """


@cli.command("recipes")
def recipes_cmd():
    """List the recipes: name, paper, one line."""
    _quiet_tf()
    rows = []
    for name in sorted(registry.available()):
        try:
            cls = registry.get(name)
            rows.append((name, cls.paper, cls.summary))
        except Exception as exc:  # one broken plugin must not hide the others
            rows.append((name, "(unavailable)", f"{type(exc).__name__}: {exc}"))
    width = max(len(r[0]) for r in rows)
    for name, paper, summary in rows:
        click.echo(f"{name.ljust(width)}  {paper}")
        click.echo(f"{''.ljust(width)}  {summary}")


@cli.command("show", **_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="print the resolved config as JSON")
def show_cmd(args, as_json):
    """Print the resolved config of recipe=NAME with key=value overrides applied."""
    recipe_cls, _, overrides = _split(args, "show", ())
    config = _resolve_config(recipe_cls, overrides)
    if as_json:
        click.echo(config_lib.to_json(config))
        return
    click.echo(f"# {recipe_cls.name}: {recipe_cls.paper}")
    resolved = config_lib.to_dict(config)
    for key, type_name, _default, help_text in config_lib.describe_keys(type(config)):
        value = resolved
        for part in key.split("."):
            value = value[part]
        click.echo(f"{key} = {json.dumps(value)}    # {type_name}. {help_text}")


@cli.command("train", **_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_cmd(args):
    """Train recipe=NAME; run=NAME resumes that run from its last checkpoint."""
    recipe_cls, extra, overrides = _split(args, "train", ("run", "runs_dir"))
    config = _resolve_config(recipe_cls, overrides)
    run_dir = _run_dir_arg(recipe_cls, extra, required=False)
    from kerasnets.training import engine
    from kerasnets.training import run_dir as run_dir_lib

    if run_dir is None:
        run_dir = run_dir_lib.resolve(recipe_cls.name, None, extra.get("runs_dir"))
    run_dir_lib.check_resume(run_dir, recipe_cls.name, config)  # usage error before any write
    recipe = recipe_cls(config)
    click.echo(f"kerasnets: training '{recipe_cls.name}' into {run_dir}", err=True)
    result = engine.train(recipe, run_dir)
    if result.summary or result.final_logs:
        evaluation = recipe.evaluate(result.model)
        if evaluation:
            with open(os.path.join(run_dir, "eval.json"), "w") as f:
                json.dump(engine._jsonable(evaluation), f, indent=2, sort_keys=True)
        click.echo(f"run directory: {run_dir}")
        for key, value in sorted(result.final_logs.items()):
            click.echo(f"  final {key}: {value:.6g}")
        for key, value in sorted(evaluation.items()):
            click.echo(f"  eval  {key}: {value:.6g}" if isinstance(value, float) else f"  eval  {key}: {value}")


@cli.command("evaluate", **_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def evaluate_cmd(args):
    """Evaluate the last checkpoint of run=DIR with the recipe's metrics."""
    recipe_cls, extra, overrides = _split(args, "evaluate", ("run", "runs_dir"))
    run_dir = _run_dir_arg(recipe_cls, extra, required=True)
    from kerasnets.training import engine
    from kerasnets.training import run_dir as run_dir_lib

    config = run_dir_lib.load_config(run_dir, recipe_cls, overrides)
    recipe = recipe_cls(config)
    model, step = engine.build_and_restore(recipe, run_dir)
    results = recipe.evaluate(model)
    with open(os.path.join(run_dir, "eval.json"), "w") as f:
        json.dump(engine._jsonable({"step": step, **results}), f, indent=2, sort_keys=True)
    click.echo(f"{recipe_cls.name} @ step {step} ({run_dir})")
    for key, value in sorted(results.items()):
        click.echo(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")


@cli.command("export", **_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def export_cmd(args):
    """Export run=DIR as a versioned SavedModel (TF Serving) and optionally TFLite."""
    recipe_cls, extra, overrides = _split(args, "export", ("run", "runs_dir", "format", "version", "export_root"))
    if overrides:
        keys = ", ".join(sorted(overrides))
        raise UsageError(f"export takes recipe, run, format, version, export_root; unknown key(s): {keys}")
    fmt = extra.get("format", "savedmodel")
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"bad value for 'format': {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    version = extra.get("version")
    if version is not None:
        if not version.isdigit() or int(version) < 1:
            raise UsageError(f"bad value for 'version': {version!r}; expected a positive integer")
        version = int(version)
    run_dir = _run_dir_arg(recipe_cls, extra, required=True)
    from kerasnets import export as export_lib
    from kerasnets.training import engine
    from kerasnets.training import run_dir as run_dir_lib

    config = run_dir_lib.load_config(run_dir, recipe_cls)
    recipe = recipe_cls(config)
    model, step = engine.build_and_restore(recipe, run_dir)
    formats = ["savedmodel"] if fmt == "savedmodel" else ["savedmodel", fmt]
    report = export_lib.export_run(
        recipe, model, formats=formats, export_root=extra.get("export_root"), version=version
    )
    click.echo(f"exported {recipe_cls.name} @ step {step}")
    for line in report.lines():
        click.echo(f"  {line}")


def main(argv=None):
    """Console entry point: map kerasnets errors to messages and exit codes."""
    try:
        cli.main(args=argv, prog_name="kerasnets", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KerasnetsError as exc:
        click.echo(f"kerasnets: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        click.echo(f"kerasnets: error: {exc}", err=True)
        sys.exit(1)
    except NotImplementedError as exc:
        click.echo(f"kerasnets: not implemented: {exc}", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
