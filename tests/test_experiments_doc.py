"""docs/experiments.md is exactly what scripts/experiments_doc.py generates from the committed
results (docs/results/), so the page cannot drift from the result files."""

from __future__ import annotations

import shutil
import subprocess
import sys

from train_helpers import REPO, env


def test_the_committed_page_is_generated_from_the_committed_results(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(REPO / "docs" / "results", results)
    out = tmp_path / "experiments.md"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "experiments_doc.py"), "--results", str(results),
         "--out", str(out)], env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (REPO / "docs" / "experiments.md").read_text()
    text = out.read_text()
    assert "reproduce/NAME-BUDGET`, with `-paper` added" in text
    assert "every experiment above ran its quick budget" not in text
