"""benchmarks/bench_scale.py --quick: every stage of every size and the tar index measured, in
seconds (run in this process: the suite has paid for torch's import already)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_quick_scale_benchmark(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", "--quick"])
    bench.main()
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    runs = summary["runs"]
    assert [(r["encoding"], r["n"]) for r in runs] == [
        (e, n) for n in bench.QUICK_SIZES for e in ("raw", "jpeg")
    ]
    for r in runs:
        for stage in ("prepare", "open", "epoch"):
            seconds, grew, cpu = r[stage]
            assert seconds > 0 and cpu >= 0 and isinstance(grew, int)
    raw = [r["stored_bytes_per_image"] for r in runs if r["encoding"] == "raw"]
    assert all(b > 8 * 8 * 3 for b in raw)  # the pixels + labels + checksums
    assert [t["members"] for t in summary["tar"]] == list(bench.QUICK_TAR_SIZES)
    assert set(summary["growth"]) >= {"raw_prepare", "jpeg_epoch", "tar_flat", "tar_nested"}
    assert any("tar index" in line for line in out)
