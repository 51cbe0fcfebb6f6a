"""Resumable experiment runs (experiments/runner.py), with the training engine replaced by a
fake that writes a run directory's files (`runner.fit` monkeypatched)."""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from alexnet.errors import UserError
from alexnet.experiments import runner
from alexnet.experiments.runner import Context, Plan, RunSpec
from alexnet.train.config import config_json, make_config


class FakeFit:
    """Writes what a training writes: checkpoint.pt and config.json at the start, then (unless
    interrupted or stopped) weights.safetensors and eval.json."""

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
        return SimpleNamespace(status="finished", output_dir=run)


def specs(epochs=None, data="DATA", device=None):
    configs = [make_config("fast", seed=s, data=data, epochs=epochs, device=device)
               for s in range(4)]  # fmt: skip
    return [RunSpec(f"relu-s{s}", cfg, "relu", s) for s, cfg in enumerate(configs)]


def reproduce(tmp_path, monkeypatch, fit, items):
    """`runner.reproduce` of an experiment planning `items`; its gather returns the outcomes."""
    monkeypatch.setattr(runner, "fit", fit)
    ctx = Context("test", None, tmp_path, log=io.StringIO())
    experiment = SimpleNamespace(plan=lambda ctx: Plan(items), gather=lambda ctx, out: out)
    return ctx, runner.reproduce(ctx, experiment)


def test_interrupted_experiment_resumes(tmp_path, monkeypatch):
    first = FakeFit(interrupt="relu-s2")
    with pytest.raises(KeyboardInterrupt):
        reproduce(tmp_path, monkeypatch, first, specs())
    assert [c[0] for c in first.calls] == ["relu-s0", "relu-s1", "relu-s2"]
    assert all(resume is None for _, resume in first.calls)

    second = FakeFit()
    ctx, outcomes = reproduce(tmp_path, monkeypatch, second, specs())
    run2 = str(tmp_path / "runs" / "relu-s2")
    assert second.calls == [("relu-s2", run2), ("relu-s3", None)]  # 2 trainings, not 4
    assert ctx.trained == {"relu-s2", "relu-s3"}
    assert [r.final["seed"] for _, r in outcomes] == [0, 1, 2, 3]  # read from the runs
    assert [r.output_dir for _, r in outcomes] == [
        tmp_path / "runs" / f"relu-s{s}" for s in range(4)
    ]
    assert ctx.log.getvalue().splitlines() == [  # the runs it trains, numbered in the plan
        "run 3/4: relu seed 2 (resumed)",
        "run 4/4: relu seed 3 (new)",
    ]

    third = FakeFit()
    ctx, _ = reproduce(tmp_path, monkeypatch, third, specs())
    runner.train_one(ctx, SimpleNamespace(plan=lambda ctx: Plan(specs())), 1)  # `--run 1`
    assert third.calls == [] and ctx.trained == set()
    assert ctx.log.getvalue().splitlines() == ["run 2/4: relu seed 1 (reused)"]


def test_configs_are_copied_with_output_dir(tmp_path, monkeypatch):
    items = specs()[:1]
    reproduce(tmp_path, monkeypatch, FakeFit(), items)
    assert items[0].cfg.output_dir == "" and items[0].cfg.resume is None  # caller's config intact
    saved = json.loads((tmp_path / "runs" / "relu-s0" / "config.json").read_text())["config"]
    assert saved["output_dir"] == str(tmp_path / "runs" / "relu-s0")


def test_stopped_training_raises(tmp_path, monkeypatch):
    with pytest.raises(runner.RunStopped, match="relu-s0 stopped"):
        reproduce(tmp_path, monkeypatch, FakeFit(status="stopped"), specs())


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_of_another_config_is_refused_not_reused(tmp_path, monkeypatch, finished):
    # OUT holds runs of a quick budget (3 epochs); a call with another budget (5 epochs) must
    # neither reuse nor resume them, and says which field differs.
    fit = FakeFit(interrupt=None if finished else "relu-s0")
    try:
        reproduce(tmp_path, monkeypatch, fit, specs(epochs=3)[:2])
    except KeyboardInterrupt:
        pass
    again = FakeFit()
    with pytest.raises(UserError, match=r"relu-s0: .*another config \(epochs 3 there, 5 now\)"):
        reproduce(tmp_path, monkeypatch, again, specs(epochs=5)[:2])
    assert again.calls == []
    # where and on what it runs may change: another device and data path reuse the runs
    reproduce(tmp_path, monkeypatch, again, specs(epochs=3, data="ELSEWHERE", device="cpu")[:2])
    assert [name for name, _ in again.calls] == ([] if finished else ["relu-s0", "relu-s1"])
