"""`fit()` from Python is `alexnet train`: the same run gives the same config.json and the
same metrics, `fit` applies the process settings a run needs and restores them, and a resume
from Python layers its overrides on the run's saved config as `--resume` does."""

from __future__ import annotations

import json

import torch
from data_helpers import synthetic_data

from alexnet import cli, malloc
from alexnet.runtime import denormals_flushed
from alexnet.train import fit, make_config

TIMES = {"time", "elapsed", "images_per_sec", "data_stall"}


def _tiny(data, out, **extra):
    values = {"data": str(data), "output_dir": str(out), "epochs": 1, "batch_size": 16,
              "device": "cpu", "log_every": 2, **extra}  # fmt: skip
    return values


def _metrics(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMES} for r in rows]


def _config(run) -> dict:
    saved = json.loads((run / "config.json").read_text())
    saved["config"].pop("output_dir")
    return {k: saved[k] for k in ("config", "model", "geometry", "preprocess", "classes")}


def test_fit_writes_what_the_command_line_writes(tmp_path, capsys):
    data = synthetic_data(tmp_path / "data", count=40)
    argv = ["train", "--recipe", "fast", "--model", "small"]
    for flag, value in _tiny(data, tmp_path / "cli").items():
        argv += [f"--{flag.replace('_', '-')}", str(value)]
    assert cli.main(argv) == 0
    before = denormals_flushed()
    torch.set_flush_denormal(False)
    was_tuned = malloc.is_tuned()
    malloc.reset_allocator()
    try:
        result = fit(make_config("fast", model="small", **_tiny(data, tmp_path / "py")))
        assert not denormals_flushed() and not malloc.is_tuned()  # both restored
    finally:
        torch.set_flush_denormal(before)
        if was_tuned:
            malloc.tune_allocator()
    assert result.status == "finished"
    assert _config(tmp_path / "cli") == _config(tmp_path / "py")
    assert _metrics(tmp_path / "cli") == _metrics(tmp_path / "py")


def test_fit_flushes_denormals_while_it_runs(tmp_path):
    data = synthetic_data(tmp_path / "data", count=40)
    seen = []
    torch.set_flush_denormal(False)
    fit(
        make_config("fast", model="small", max_steps=1, **_tiny(data, tmp_path / "r")),
        callbacks=[lambda step: seen.append(denormals_flushed())],
    )
    assert seen == [True] and not denormals_flushed()


def test_a_resume_from_python_keeps_the_runs_config(tmp_path):
    data = synthetic_data(tmp_path / "data", count=40)
    run = tmp_path / "run"
    fit(make_config("fast", model="small", **_tiny(data, run, log_every=3, lr=0.05)))
    cfg = make_config(resume=str(run), epochs=2)
    assert (cfg.epochs, cfg.log_every, cfg.lr, cfg.recipe) == (2, 3, 0.05, "fast")
    assert fit(cfg).status == "finished"
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]
