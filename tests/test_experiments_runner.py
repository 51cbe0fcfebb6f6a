"""Resumable experiment runs (experiments/runner.py) with a fake training engine."""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from alexnet.errors import UserError
from alexnet.experiments.runner import RunSpec, RunStopped, run_all
from alexnet.train.config import config_json, make_config


class FakeRunDir:
    """The RunDir contract: finished = eval.json and weights exist; checkpoint.pt = resumable."""

    def __init__(self, path):
        self.path = Path(path)

    def is_finished(self):
        return (self.path / "eval.json").exists() and (self.path / "weights.safetensors").exists()

    def has_checkpoint(self):
        return (self.path / "checkpoint.pt").exists()

    def read_config(self):
        return json.loads((self.path / "config.json").read_text())

    def result(self):
        return SimpleNamespace(status="finished", output_dir=self.path,
                               final=json.loads((self.path / "eval.json").read_text()))  # fmt: skip


class FakeFit:
    def __init__(self, interrupt=None, status="finished"):
        self.calls, self.interrupt, self.status = [], interrupt, status

    def __call__(self, cfg):
        run = Path(cfg.output_dir)
        self.calls.append((run.name, cfg.resume))
        run.mkdir(parents=True, exist_ok=True)
        (run / "checkpoint.pt").write_text("step 5")
        (run / "config.json").write_text(config_json(cfg))
        if run.name == self.interrupt:
            raise KeyboardInterrupt
        if self.status == "stopped":
            return SimpleNamespace(status="stopped", output_dir=run)
        (run / "weights.safetensors").write_text("w")
        (run / "eval.json").write_text(json.dumps({"top1_error": 0.1, "seed": cfg.seed}))
        return SimpleNamespace(status="finished", output_dir=run, final={"seed": cfg.seed})


def spec(name, cfg, label=""):
    return RunSpec(name, cfg, "relu", cfg.seed, label)


def specs():
    return [spec(f"relu-s{s}", make_config("fast", seed=s, data="DATA"), f"relu lr=0.05 seed {s}")
            for s in range(4)]  # fmt: skip


def test_interrupted_experiment_resumes(tmp_path):
    first = FakeFit(interrupt="relu-s2")
    with pytest.raises(KeyboardInterrupt):
        run_all(specs(), tmp_path, fit=first, rundir=FakeRunDir, log=io.StringIO())
    assert [c[0] for c in first.calls] == ["relu-s0", "relu-s1", "relu-s2"]
    assert all(resume is None for _, resume in first.calls)

    second, log = FakeFit(), io.StringIO()
    outcomes = run_all(specs(), tmp_path, fit=second, rundir=FakeRunDir, log=log)
    assert [o.action for o in outcomes] == ["reused", "reused", "resumed", "new"]
    run2 = str(tmp_path / "runs" / "relu-s2")
    assert second.calls == [("relu-s2", run2), ("relu-s3", None)]  # 2 trainings, not 4
    assert [o.result.final["seed"] for o in outcomes] == [0, 1, 2, 3]
    assert log.getvalue().splitlines() == [
        "run 1/4: relu lr=0.05 seed 0 (reused)",
        "run 2/4: relu lr=0.05 seed 1 (reused)",
        "run 3/4: relu lr=0.05 seed 2 (resumed)",
        "run 4/4: relu lr=0.05 seed 3 (new)",
    ]

    third = FakeFit()
    run_all(specs(), tmp_path, fit=third, rundir=FakeRunDir, log=io.StringIO())
    assert third.calls == []


def test_configs_are_copied_with_output_dir(tmp_path):
    items = specs()[:1]
    fit = FakeFit()
    (o,) = run_all(items, tmp_path, fit=fit, rundir=FakeRunDir, log=io.StringIO())
    assert items[0].cfg.output_dir == "" and items[0].cfg.resume is None  # caller's config intact
    assert o.run_dir == tmp_path / "runs" / "relu-s0" and o.action == "new"


def test_stopped_training_raises(tmp_path):
    with pytest.raises(RunStopped, match="relu-s0 stopped"):
        run_all(specs(), tmp_path, fit=FakeFit(status="stopped"), rundir=FakeRunDir,
                log=io.StringIO())  # fmt: skip


def test_bad_run_names(tmp_path):
    cfg = make_config("fast")
    for bad in (["a/b"], ["x", "x"], [".."]):
        with pytest.raises(ValueError):
            run_all([spec(n, cfg) for n in bad], tmp_path, fit=FakeFit(), rundir=FakeRunDir)


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_of_another_config_is_refused_not_reused(tmp_path, finished):
    # OUT holds runs of a quick budget (3 epochs); a call with another budget (5 epochs) must
    # neither reuse nor resume them, and says which field differs.
    quick = [
        spec(f"relu-s{s}", make_config("fast", seed=s, data="DATA", epochs=3)) for s in range(2)
    ]
    fit = FakeFit(interrupt=None if finished else "relu-s0")
    try:
        run_all(quick, tmp_path, fit=fit, rundir=FakeRunDir, log=io.StringIO())
    except KeyboardInterrupt:
        pass
    full = [spec(q.name, make_config("fast", seed=q.seed, data="DATA", epochs=5)) for q in quick]
    again = FakeFit()
    with pytest.raises(UserError, match=r"relu-s0: .*another config \(epochs 3 there, 5 now\)"):
        run_all(full, tmp_path, fit=again, rundir=FakeRunDir, log=io.StringIO())
    assert again.calls == []
    # where and on what it runs may change: another device and data path reuse the runs
    moved = [spec(q.name, make_config("fast", seed=q.seed, data="ELSEWHERE", device="cpu",
                                      epochs=3)) for q in quick]  # fmt: skip
    run_all(moved, tmp_path, fit=again, rundir=FakeRunDir, log=io.StringIO())
    assert [name for name, _ in again.calls] == ([] if finished else ["relu-s0", "relu-s1"])
