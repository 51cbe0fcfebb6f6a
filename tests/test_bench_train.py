"""benchmarks/bench_train.py --quick: the end-to-end benchmark runs on tiny data and its last
line is the JSON that the README's table is read from."""

from __future__ import annotations

import json
import subprocess
import sys

from train_helpers import REPO, env


def test_bench_train_quick_runs_and_reports_ratios():
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--quick"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("train_vs_pytorch_examples", "paper_train_vs_pytorch_examples", "prepare_s"):
        assert summary[key] > 0, key
    assert 0 <= summary["paper_data_stall"] <= 1
