"""An experiment's runs trained elsewhere (`reproduce NAME --run I` in other processes, `--jobs
N`, the `alexnet train` lines of `--plan`) and then gathered give the one-process result."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

import pytest
from reproduce_tiny import shrink
from train_helpers import REPO, env, write_packed

from alexnet.cli import build_parser, main
from alexnet.commands import reproduce
from alexnet.experiments import FAMILIES_OF, get, runner
from alexnet.experiments.result import PER_INVOCATION
from alexnet.experiments.runner import Context
from alexnet.train.config import make_config


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("gray"), n_train=64, n_val=32, gray=True,
                        classes=10)  # fmt: skip


@pytest.fixture
def counted(monkeypatch):
    """Budgets of seconds, one CPU thread (as the child processes), trainings counted."""
    shrink(monkeypatch.setattr, monkeypatch.setitem)
    calls = []
    real = runner.fit

    def fit(cfg):
        calls.append(cfg.output_dir)
        return real(cfg)

    monkeypatch.setattr(runner, "fit", fit)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(threads)


def _args(data, out, *more):
    return ["reproduce", "depth", "--data", str(data), "--seeds", "1", "--device", "cpu",
            "--output-dir", str(out), *more]  # fmt: skip


def _same_runs(a: dict, b: dict) -> None:
    """Equal, bit for bit, in every field but the per-invocation ones (and the commit, which
    moves when someone commits between the two invocations)."""
    skip = {*PER_INVOCATION, "commit"}
    drop = lambda r: {k: v for k, v in r.items() if k not in skip}  # noqa: E731
    assert json.dumps(drop(a), sort_keys=True) == json.dumps(drop(b), sort_keys=True)


def test_runs_in_separate_processes_then_gather_equal_one_process(gray, tmp_path, counted,
                                                                 capsys):  # fmt: skip
    # one process: depth with one seed trains its 2 runs (full, no-conv2), then gathers
    assert main(_args(gray, tmp_path / "one")) == 0
    assert len(counted) == 2
    # the plan of a fresh OUT: 2 runs, one JSON line each
    capsys.readouterr()
    assert main(_args(gray, tmp_path / "fan", "--plan")) == 0
    plan = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["index"], p["run"], p["variant"], p["seed"], p["status"]) for p in plan] == [
        (0, "full-seed0", "full", 0, "new"),
        (1, "no-conv2-seed0", "no-conv2", 0, "new"),
    ]
    assert all(p["command"].startswith("alexnet train --recipe ablation --data ") for p in plan)
    # --run 0 and --run 1, each in its own process, at the same time
    procs = [
        subprocess.Popen([sys.executable, str(REPO / "tests" / "reproduce_tiny.py"),
                          *_args(gray, tmp_path / "fan", "--run", str(i))], env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (0, 1)
    ]  # fmt: skip
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
    assert not (tmp_path / "fan" / "result.json").exists()  # --run trains, never gathers
    # the plain command finds both finished: it trains nothing and only gathers
    assert main(_args(gray, tmp_path / "fan")) == 0
    assert len(counted) == 2
    one, fan = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "fan"))
    _same_runs(one, fan)
    assert fan["runs_reused"] == 2 and one["runs_reused"] == 0


def test_run_index_errors_and_staged_plans(gray, tmp_path, counted, capsys):
    # relu-tanh plans its seeds only once the sweep has finished: before, --plan lists the
    # sweep and says what follows, and --run past the sweep is refused in one line
    args = ["reproduce", "relu-tanh", "--data", str(gray), "--seeds", "1", "--device", "cpu",
            "--output-dir", str(tmp_path)]  # fmt: skip
    assert main([*args, "--plan"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["run"] for line in out.splitlines()] == [
        "sweep-relu-lr0.01",
        "sweep-relu-lr0.1",
        "sweep-tanh-lr0.01",
        "sweep-tanh-lr0.1",
    ]
    assert "the 2 runs of the seeds follow once the learning-rate sweep (runs 0-3)" in err
    assert main([*args, "--run", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the header line, then the error
    assert err[-1].startswith("alexnet reproduce: error: --run 4: not planned yet: the 2 runs")
    assert len(err) == 2
    assert main(_args(gray, tmp_path / "d", "--run", "7")) == 2
    assert "--run 7: depth has runs 0..1" in capsys.readouterr().err
    assert counted == []


def _train_resolved(argv: list[str]):
    """What `alexnet train ARGV` resolves to (the real parser; no training)."""
    from alexnet.commands.train import overrides_of

    args = build_parser().parse_args(["train", *argv])
    return make_config(args.recipe or "paper", **overrides_of(args))


def _train_flags() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices["train"]._actions for s in action.option_strings}


@pytest.mark.parametrize("name", ["relu-tanh", "ablations", "depth", "paper-net"])
def test_plan_command_lines_resolve_to_the_runs_configs(name, gray, tmp_path):
    ctx = Context(name, gray, tmp_path, "full", 2, "cpu", family=FAMILIES_OF[name][0])
    plan = get(name).plan(ctx)
    records = reproduce.plan_records(ctx, plan)
    assert [r["index"] for r in records] == list(range(len(plan.runs)))
    flags = _train_flags()
    for spec, record in zip(plan.runs, records):
        cfg = runner.run_config(ctx, spec)
        rendered = reproduce.train_argv(cfg.recipe, runner.recipe_overrides(cfg))
        assert shlex.split(record["command"]) == ["alexnet", "train", *rendered, "--resume",
                                                  "auto"]  # fmt: skip
        missing = sorted({a for a in rendered if a.startswith("--")} - flags)
        if missing:
            pytest.skip(f"needs a train flag for every TrainConfig field (lead): {missing}")
        start = 2 if rendered[:1] == ["--recipe"] else 0  # the experiments' recipe, named
        assert rendered[start : start + 2] == ["--data", str(gray)]
        assert cfg.output_dir == str(tmp_path / "runs" / spec.name)
        assert _train_resolved(rendered) == cfg, spec.name


def _fake_jobs(monkeypatch, tmp_path, code, count):
    """A plan of `count` runs whose `--jobs` children are `python -c code FILE DEVICE`."""
    ctx = Context("depth", None, tmp_path, log=__import__("io").StringIO())
    plan = runner.Plan(
        [runner.RunSpec(f"r{k}", make_config("paper"), "a", 0) for k in range(count)]
    )
    monkeypatch.setattr(runner, "POLL", 0.05)
    monkeypatch.setattr(runner, "child_argv", lambda ctx, index, device: [
        sys.executable, "-c", code, str(tmp_path / f"{index}.json"), device])  # fmt: skip
    return ctx, plan


def test_jobs_run_at_most_n_at_a_time_on_their_slots_devices(tmp_path, monkeypatch):
    # fake children: each records its start, end, device and thread count, and sleeps
    code = ("import json,os,sys,time; t=time.time(); time.sleep(0.3); "
            "open(sys.argv[1],'w').write(json.dumps([t,time.time(),sys.argv[2],"
            "os.environ.get('OMP_NUM_THREADS')]))")  # fmt: skip
    ctx, plan = _fake_jobs(monkeypatch, tmp_path, code, 5)
    runner.train_jobs(ctx, plan, list(range(5)), 2, ["cuda:0", "cuda:1"])
    assert ctx.trained == {f"r{k}" for k in range(5)}
    spans = [json.loads((tmp_path / f"{k}.json").read_text()) for k in range(5)]
    for t in sorted(s[0] for s in spans):  # never more than 2 running at any start
        assert sum(s[0] <= t < s[1] for s in spans) <= 2
    # at every moment the two running jobs hold different devices
    for a in spans:
        for b in spans:
            if a is not b and a[0] < b[1] and b[0] < a[1]:
                assert a[2] != b[2]
    assert {s[3] for s in spans} == {None}  # GPU jobs keep the machine's thread count
    assert runner.slot_device(0, 2, [], "cpu")[1]["OMP_NUM_THREADS"] == str(
        max(1, (__import__("os").cpu_count() or 1) // 2))  # fmt: skip
    assert ctx.log.getvalue().count("job started") == 5


@pytest.mark.timeout(120)  # the child fails at once: waiting on it would be a hang
def test_a_failed_job_is_named_and_nothing_is_gathered(tmp_path, monkeypatch):
    ctx = Context("depth", None, tmp_path, log=__import__("io").StringIO())
    plan = runner.Plan([runner.RunSpec("a-seed0", make_config("paper"), "a", 0)])
    fail = [sys.executable, "-c", "raise SystemExit(3)"]
    monkeypatch.setattr(runner, "child_argv", lambda ctx, index, device: fail)
    with pytest.raises(Exception, match=r"1 run\(s\) failed: a-seed0"):
        runner.train_jobs(ctx, plan, [0], 2, [])
    assert "exit 3" in ctx.log.getvalue()


def test_a_jobs_child_is_the_same_experiment_with_run_i(gray, tmp_path):
    parent = build_parser().parse_args(_args(gray, tmp_path, "--jobs", "2", "--budget", "full",
                                             "--seeds", "2"))  # fmt: skip
    ctx = reproduce._context(parent)
    argv = runner.child_argv(ctx, 3, "cuda:1")
    assert argv[:3] == [sys.executable, "-m", "alexnet"]
    child = build_parser().parse_args(argv[3:])
    assert (child.run, child.device, child.jobs) == (3, "cuda:1", None)
    again = reproduce._context(child)
    assert (again.name, again.data, again.out, again.budget, again.seeds, again.family) == (
        ctx.name, ctx.data, ctx.out, "full", 2, "small")  # fmt: skip


def test_ctrl_c_in_the_parent_stops_every_running_child_after_it_saves(tmp_path):
    # fake children: on SIGINT each writes its "checkpoint" and exits 130, as a training does
    child = ("import signal,sys,time\n"
             "def stop(*a):\n open(sys.argv[1],'w').write('saved'); sys.exit(130)\n"
             "signal.signal(signal.SIGINT, stop); open(sys.argv[1]+'.up','w').close()\n"
             "time.sleep(60)")  # fmt: skip
    parent = (
        "import sys\nfrom pathlib import Path\nfrom alexnet.experiments import runner\n"
        "from alexnet.train.config import make_config\n"
        f"d = Path({str(tmp_path)!r})\n"
        "runner.POLL = 0.05\n"
        f"runner.child_argv = lambda ctx, k, device: [sys.executable, '-c', {child!r}, "
        "str(d / f'{k}.ck')]\n"
        "ctx = runner.Context('depth', None, d)\n"
        "plan = runner.Plan([runner.RunSpec(f'r{k}', make_config('paper'), 'a', 0) "
        "for k in range(3)])\n"
        "try:\n runner.train_jobs(ctx, plan, [0, 1, 2], 2, [])\n"
        "except KeyboardInterrupt as exc:\n print('parent:', exc); sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{k}.ck.up").exists() for k in (0, 1)):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(__import__("signal").SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert [(tmp_path / f"{k}.ck").read_text() for k in (0, 1)] == ["saved", "saved"]
    assert not (tmp_path / "2.ck.up").exists()  # the queued job never started
    assert "2 running job(s) stopped after saving" in out
