"""tools/bench/roi.py and tools/checks/began_samples.py run end to end on tiny settings (no timing asserted)."""

import json
import os
import subprocess
import sys

import pytest

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


def _run(script, *args):
    done = subprocess.run([sys.executable, os.path.join(TOOLS, script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_roi_benchmark_prints_both_ops():
    out = _run("bench/roi.py", "--rois", "16", "--size", "16", "--channels", "8", "--repeats", "1", "--rounds", "2")
    assert "x 2 rounds" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("roi_")}
    assert set(rows) == {"roi_align", "roi_pool"}
    assert all(float(v) > 0 for v in rows["roi_pool"][:2])


@pytest.mark.slow
def test_began_sample_check_reports_scores(tmp_path):
    out_file = tmp_path / "results.jsonl"
    _run("checks/began_samples.py", "steps=3", "checkpoint_every=100", "--samples", "40", "--out", str(out_file))
    report = json.loads(out_file.read_text().splitlines()[0])
    assert report["overrides"] == {"steps": "3", "checkpoint_every": "100"}
    assert len(report["share_per_digit"]) == 10 and abs(sum(report["share_per_digit"]) - 1.0) < 1e-6
    assert 1.0 <= report["inception_score"] <= 10.0 and report["inception_score_real"] > report["inception_score"]
