"""tools/bench/engine.py runs end to end and prints the engine/bare ratio (no timing asserted)."""

import importlib.util
import os
import re

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "bench", "engine.py")


@pytest.mark.slow
def test_engine_benchmark_prints_the_ratio(capsys):
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--depth", "8", "--batch", "2", "--steps", "3", "--warmup", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"engine / bare steps/s \(median of 1\): ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) > 0.0
    assert re.search(r"round 1: bare [0-9.]+ step/s  engine [0-9.]+ step/s", out)
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
