"""result.json / table.md of an experiment (experiments/result.py)."""

import json
import subprocess

import numpy as np
import pytest

from alexnet.experiments import NAMES, ablations, get
from alexnet.experiments import result as R
from alexnet.experiments.runner import Context

sps = pytest.importorskip("scipy.stats")  # the independent reference (a dev dependency)

RESULT_FIELDS = {"format", "experiment", "claim", "dataset", "budget", "runs", "summary",
                 "comparisons", "machine", "torch", "commit", "wall_s", "family", "runs_planned",
                 "runs_reused", "train_s", "notes"}  # fmt: skip


def fake_runs():
    full = [0.100, 0.120, 0.110]
    runs = []
    for seed, err in enumerate(full):
        runs.append({"variant": "full", "seed": seed, "top1_error": err,
                     "top5_error": err / 3, "run_dir": f"runs/full-s{seed}"})  # fmt: skip
        runs.append({"variant": "no-lrn", "seed": seed, "top1_error": err + 0.02 + 0.001 * seed,
                     "top5_error": None, "run_dir": f"runs/no-lrn-s{seed}"})  # fmt: skip
    return runs


CLAIM = R.Claim("x", "test", "§", "a differs from b", "x", "a", "b")


def claim(key):
    (found,) = [c for c in ablations.CLAIMS if c.key == key]
    return found


def test_result_file_fields_and_recomputable_summary(tmp_path):
    runs = fake_runs()
    lrn, towers = claim("lrn"), claim("towers")
    comparisons = [
        R.compare(runs, lrn.quantity, lrn.a, lrn.b, lrn),
        R.compare(runs, "top5_error", lrn.a, lrn.b, lrn),
        R.compare(runs, towers.quantity, towers.a, towers.b, towers,
                  note="the small model has no towers option yet"),
    ]  # fmt: skip
    ctx = Context("ablations", None, tmp_path)
    ctx.started -= 12.3456  # wall_s: seconds since the call started, in ms
    res = ctx.finish(ablations.CLAIMS, runs, comparisons, [])
    table = (tmp_path / "table.md").read_text()
    assert table == R.table_markdown(res)
    loaded = json.loads((tmp_path / "result.json").read_text())
    assert set(loaded) == RESULT_FIELDS  # exactly these, no more
    assert loaded["summary"] == R.summarize(loaded["runs"])  # recomputable from runs
    full = [r["top1_error"] for r in runs if r["variant"] == "full"]
    (s,) = [s for s in loaded["summary"] if (s["variant"], s["quantity"]) == ("full", "top1_error")]
    ref = sps.t.interval(0.95, 2, loc=np.mean(full), scale=sps.sem(full))
    assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(full))
    assert s["ci95"] == pytest.approx(list(ref))
    # a None value is never dropped silently: no-lrn's top5_error is missing in all 3 runs
    (missing,) = [
        s for s in loaded["summary"] if s["variant"] == "no-lrn" and "top5" in s["quantity"]
    ]
    assert missing == {"variant": "no-lrn", "quantity": "top5_error", "n": 0, "mean": None,
                       "ci95": None, "missing": 3}  # fmt: skip
    lrn, lrn5, towers = loaded["comparisons"]
    assert lrn["estimate"] == pytest.approx(-0.021) and lrn["paired"] is True
    assert lrn["reproduced"] is True and lrn["paper"] == -0.014
    assert lrn5["estimate"] is None and lrn5["reproduced"] is None  # no pairs
    assert towers["reproduced"] is None
    assert "| yes |" in table and "not testable here: the small model has no towers" in table
    assert "-2.10 pts" in table and "-1.40 pts on ImageNet ILSVRC-2012" in table
    assert "11.00%" in table and "[-2.35, -1.85]" in table  # the mean error of `full`, in percent
    assert loaded["wall_s"] >= 12.346 and loaded["wall_s"] == round(loaded["wall_s"], 3)


def test_paired_uses_matching_seeds_only():
    runs = [{"variant": v, "seed": s, "x": x, "run_dir": ""}
            for v, s, x in [("a", 0, 1.0), ("a", 1, 2.0), ("a", 2, 9.0),
                            ("b", 1, 1.5), ("b", 0, 0.5)]]  # fmt: skip
    c = R.compare(runs, "x", "a", "b", CLAIM, direction="greater")
    assert c["n"] == 2 and c["estimate"] == pytest.approx(0.5)  # seed 2 has no partner
    u = R.compare(runs, "x", "a", "b", CLAIM, paired=False)
    assert u["n"] == 5 and u["estimate"] == pytest.approx(4.0 - 1.0)
    ratio = R.Claim("x-ratio", "test", "§", "a takes longer", "x", "a", "b", kind="ratio")
    r = R.compare(runs, "x", "a", "b", ratio, direction="greater")
    assert (r["kind"], r["direction"], r["claim"]) == ("ratio", "greater", "x-ratio")
    assert r["estimate"] == pytest.approx(1.5 / 1.0)
    with pytest.raises(ValueError, match="seed 0 twice"):
        R.compare(runs + [{"variant": "a", "seed": 0, "x": 1.0, "run_dir": ""}], "x", "a", "b",
                  CLAIM)  # fmt: skip


def test_identical_variants_do_not_reproduce():
    runs = [{"variant": v, "seed": s, "e": 0.1 + 0.01 * s, "run_dir": ""}
            for v in ("a", "b") for s in range(4)]  # fmt: skip
    c = R.compare(runs, "e", "a", "b", CLAIM, direction="less")
    assert c["ci95"][0] <= 0 <= c["ci95"][1] and c["reproduced"] is False


def test_machine_and_commit():
    assert "cores" in R.machine()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=R.__file__.rsplit("/", 1)[0]).stdout.strip()  # fmt: skip
    assert R.git_commit() == (head or "unknown")


def test_claims_are_complete_and_consistent():
    modules = [get(name) for name in NAMES]
    claims = [c for m in modules for c in getattr(m, "CLAIMS", None) or (m.CLAIM,)]
    keys = [c.key for c in claims]
    assert len(keys) == len(set(keys))
    assert [m.NAME for m in modules] == list(NAMES)  # the names and the modules agree
    for c in claims:
        assert c.kind in ("difference", "ratio") and c.direction in ("less", "greater", "differ")
        assert c.words and c.section
        for q, v in c.numbers.items():  # the paper's numbers lie on the claimed side
            side = v - c.null
            assert {"less": side < 0, "greater": side > 0, "differ": side != 0}[c.direction], q
        assert c.experiment in NAMES
    assert {c.experiment for c in claims} == set(NAMES)
    assert get("relu-tanh").CLAIM.null == 1.0 and claim("lrn").numbers["top5_error"] == -0.012


def test_run_row(tmp_path):
    row = R.run_row("relu", 2, tmp_path / "runs" / "relu-s2", tmp_path, steps_to_25=120.5)
    assert row == {"variant": "relu", "seed": 2, "steps_to_25": 120.5, "run_dir": "runs/relu-s2"}
    assert R.run_row("a", 0, "/elsewhere/r", tmp_path)["run_dir"] == "/elsewhere/r"
    with pytest.raises(ValueError):
        R.run_row("a", 0, "r", top1_error="high")
