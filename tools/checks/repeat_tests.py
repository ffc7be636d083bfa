"""Flakiness check: run chosen tests N times, each in a fresh process, and show what varies.

    nice -n 5 python tools/checks/repeat_tests.py -n 5 \\
        tests/detection/test_ssd_recipe.py::test_overfits_a_few_images_then_exports_for_serving_and_tflite

Every run is `python -m pytest -q -p no:cacheprovider NODEID` in its own process (so TF,
thread pools and global RNGs start fresh, as in CI). Tests report the figures they assert on
with `kerasnets.testing.report_figure(name, value)`; this script points `KERASNETS_FIGURES` at a
per-run file and prints, per test, passes/N and min/median/max of every reported figure.
`--json FILE` also writes the raw runs. Exit status: 0 when every run of every test passed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(node: str, python: str, timeout: float, extra_env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        figures_path = os.path.join(tmp, "figures.jsonl")
        env = {**os.environ, **extra_env, "KERASNETS_FIGURES": figures_path}
        start = time.monotonic()
        try:
            proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                                  capture_output=True, text=True, timeout=timeout, env=env)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            out = err.stdout or ""
            rc, output = "timeout", (out.decode(errors="replace") if isinstance(out, bytes) else out) + "\ntimeout"
        seconds = time.monotonic() - start
        figures = []
        if os.path.exists(figures_path):
            with open(figures_path) as f:
                figures = [json.loads(line) for line in f if line.strip()]
    # pytest exits 0 only when the test ran and passed (5 = nothing collected, a typo in the id).
    lines = [ln for ln in output.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    passed = rc == 0 and " passed" in last and "skipped" not in last
    why = "" if passed else next((ln for ln in lines if ln.startswith("E ")), lines[-1] if lines else str(rc))
    return {"passed": passed, "rc": rc, "seconds": seconds, "figures": figures, "why": why.strip()[:300]}


def spread(runs: list[dict]) -> dict[str, list[float]]:
    by_name: dict[str, list[float]] = {}
    for run in runs:
        for fig in run["figures"]:
            by_name.setdefault(fig["name"], []).append(fig["value"])
    return by_name


def summary(node: str, runs: list[dict]) -> str:
    passes = sum(r["passed"] for r in runs)
    secs = statistics.median(r["seconds"] for r in runs)
    lines = [f"{node}: {passes}/{len(runs)} passed (median {secs:.0f} s per run)"]
    for name, values in spread(runs).items():
        lo, mid, hi = min(values), statistics.median(values), max(values)
        lines.append(f"    {name}: min {lo:.4g}  median {mid:.4g}  max {hi:.4g}  (n={len(values)})"
                     + ("  identical in every run" if lo == hi and len(values) > 1 else ""))
    for i, r in enumerate(runs):
        if not r["passed"]:
            lines.append(f"    run {i + 1} failed: {r['why']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nodes", nargs="+", help="pytest node ids (file::test[param])")
    parser.add_argument("-n", "--repeat", type=int, default=5, help="processes per test (default 5)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run before it counts as failed")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the runs (repeatable)")
    parser.add_argument("--json", help="write every run (figures, time, outcome) to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("-n must be >= 1")
    extra_env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env {item!r}: expected KEY=VALUE")
        extra_env[key] = value

    results = {}
    for node in args.nodes:
        runs = []
        for i in range(args.repeat):
            run = run_once(node, args.python, args.timeout, extra_env)
            runs.append(run)
            figs = ", ".join(f"{f['name']}={f['value']:.4g}" for f in run["figures"])
            print(f"  [{i + 1}/{args.repeat}] {'pass' if run['passed'] else 'FAIL'} {run['seconds']:.0f} s  {node}"
                  + (f"  {figs}" if figs else ""), flush=True)
        results[node] = runs
        print(summary(node, runs), flush=True)
    if len(args.nodes) > 1:
        print("\n== summary ==")
        for node, runs in results.items():
            print(summary(node, runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["passed"] for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
