"""benchmarks/gpu_check.sh on a CPU: the dry run, the same stages and files as on a lent GPU.

What must hold there (a 15-minute window, at most 8 files kept from $OUT, no folders): the
script ends in time, writes exactly its files, each JSON parses and says how its stage ended,
the junit file parses, and no stage fails for a reason other than running out of time (a
loaded machine may cut a stage short; a broken flag or a crash fails here)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
from train_helpers import REPO, env

JSONS = ["smoke.json", "smoke_compile.json", "smoke_jpeg.json", "bench_train.json",
         "bench_model.json", "bench_lrn.json"]  # fmt: skip
FILES = {"results.txt", "tests.xml", *JSONS}


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA it is the real 6-minute run")
def test_dry_run_writes_its_files(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")],
        env=env(OUT=str(out), PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    found = list(out.iterdir())
    assert {p.name for p in found} == FILES and len(found) <= 8
    assert all(p.is_file() for p in found)  # no folders: only plain files come back
    results = (out / "results.txt").read_text()
    for name in JSONS:
        stage = json.loads((out / name).read_text())["stage"]
        assert stage["ok"] or stage["timed_out"] or "skipped" in stage, (name, stage, results)
        assert f"== stage {stage['name']}:" in results
    ET.parse(out / "tests.xml")
    assert "== stage tests:" in results
    ends = [line for line in results.splitlines() if line.startswith("== stage ")]
    assert (done.returncode == 0) == all(": ok (" in line for line in ends), ends
