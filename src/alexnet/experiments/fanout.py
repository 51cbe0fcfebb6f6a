"""How an experiment's runs get trained: all in this process, one run only (`--run I`), N at a
time in child processes (`--jobs N`), or listed for a scheduler (`--plan`); then gathered.

Every way trains the same `RunSpec`s into the same OUT/runs/<name>/ directories, so they mix:
runs trained by a SLURM array, by `--jobs` or by `alexnet train` command lines from `--plan`
are found finished by the plain command, which then trains nothing and only gathers. Gathering
reads every run from its directory (never from a training still in memory), so its result is
the same whichever way, and whichever process, trained the runs (up to the per-invocation
fields, `result.PER_INVOCATION`).

An experiment with stages (relu-tanh: a learning-rate sweep, then the seeds at the chosen
rates) plans its later runs only once the earlier ones have finished (`Plan.pending` says so);
the plain command and `--jobs` go on stage by stage.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from alexnet.errors import UserError
from alexnet.experiments.common import Context, Plan
from alexnet.experiments.plan import train_argv
from alexnet.experiments.runner import RunOutcome, RunSpec, default_rundir, run_all, run_state
from alexnet.interrupts import interruptible, stopped_by

TrainFn = Callable[[Context, Plan, list[int]], None]


def _state(ctx: Context, spec: RunSpec) -> str:
    path = ctx.run_dir(spec)
    return run_state(default_rundir(path), path, spec.cfg)


def todo(ctx: Context, plan: Plan) -> list[int]:
    """Indices of the plan's runs that are not finished (new or with a checkpoint)."""
    return [i for i, spec in enumerate(plan.runs) if _state(ctx, spec) != "reused"]


def run_config(ctx: Context, spec: RunSpec) -> Any:
    """The run's config as trained: output_dir its directory OUT/runs/<name>/."""
    return dataclasses.replace(spec.cfg, output_dir=str(ctx.run_dir(spec)), resume=None)


def plan_records(ctx: Context, plan: Plan) -> list[dict[str, Any]]:
    """One record per planned run: index, run name, variant, seed, status ("finished",
    "checkpoint" or "new") and the `alexnet train` command line that trains it (with
    `--resume auto`: the same line starts the run or continues it from its checkpoint)."""
    status = {"reused": "finished", "resumed": "checkpoint", "new": "new"}
    records = []
    for i, spec in enumerate(plan.runs):
        argv = ["alexnet", "train", *train_argv(run_config(ctx, spec)), "--resume", "auto"]
        records.append({
            "index": i,
            "run": spec.name,
            "variant": spec.variant,
            "seed": spec.seed,
            "status": status[_state(ctx, spec)],
            "command": shlex.join(argv),
        })  # fmt: skip
    return records


def train_here(ctx: Context, plan: Plan, indices: list[int]) -> None:
    """Train the runs `indices` of the plan in this process, one after another."""
    specs = [plan.runs[i] for i in indices]
    outcomes = run_all(specs, ctx.out, fit=ctx.fit, log=ctx.log,
                       numbers=[i + 1 for i in indices], total=len(plan.runs))  # fmt: skip
    ctx.trained_here.update(o.name for o in outcomes if o.action != "reused")


def train_one(ctx: Context, module: ModuleType, index: int) -> RunOutcome:
    """`--run I`: train (or resume, or find finished) run I of the plan only."""
    plan = module.plan(ctx)
    if not 0 <= index < len(plan.runs):
        if plan.pending and index >= len(plan.runs):
            raise UserError(f"--run {index}: not planned yet: {plan.pending} (see --plan)")
        raise UserError(f"--run {index}: {ctx.name} has runs 0..{len(plan.runs) - 1} (--plan)")
    spec = plan.runs[index]
    (outcome,) = run_all([spec], ctx.out, fit=ctx.fit, log=ctx.log, numbers=[index + 1],
                         total=len(plan.runs))  # fmt: skip
    return outcome


def reproduce(ctx: Context, module: ModuleType, train: TrainFn = train_here) -> dict[str, Any]:
    """Train every run that is not finished, stage by stage (`train`: in this process by
    default), then gather: the experiment's result."""
    while True:
        plan = module.plan(ctx)
        missing = todo(ctx, plan)
        if not missing:
            break
        train(ctx, plan, missing)
        still = todo(ctx, plan)
        if still:
            names = ", ".join(plan.runs[i].name for i in still[:3])
            raise UserError(f"{len(still)} run(s) did not finish ({names}); rerun to resume")
    if plan.pending:
        raise RuntimeError(f"{ctx.name}: every run finished, yet {plan.pending}")
    return gather(ctx, module, plan)


def gather(ctx: Context, module: ModuleType, plan: Plan) -> dict[str, Any]:
    """Measure the finished runs, each read from its directory, and write the result."""
    ctx.outcomes = []
    for spec in plan.runs:
        path = ctx.run_dir(spec)
        action = "new" if spec.name in ctx.trained_here else "reused"
        ctx.outcomes.append(RunOutcome(spec, path, action, default_rundir(path).result()))
    return module.gather(ctx, list(ctx.outcomes))


# ------------------------------------------------------------------ --jobs N
@dataclasses.dataclass
class Job:
    """One child process: its name, command line, environment and log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path


def slot_device(slot: int, slots: int, devices: Sequence[str], default: str):
    """The device and extra environment of job slot `slot` (of `slots`): the listed devices in
    turn, else `default`; a CPU slot gets an equal share of the cores as its thread count."""
    device = devices[slot % len(devices)] if devices else default
    if device not in ("cpu", "auto"):
        return device, {}
    threads = str(max(1, (os.cpu_count() or 1) // slots))
    return device, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def run_processes(
    count: int, slots: int, make: Callable[[int, int], Job], say: Callable[[str], None],
    poll: float = 0.2,
) -> dict[int, int]:  # fmt: skip
    """Run jobs 0..count-1, at most `slots` at a time; `make(job, slot)` builds each job for
    the slot it starts in (so a slot keeps its device). Output goes to each job's log file.
    Returns each job's exit status."""
    running: dict[int, tuple[subprocess.Popen, Job, int]] = {}
    try:
        with interruptible():
            return _run_queue(count, slots, make, say, poll, running)
    except KeyboardInterrupt as exc:  # each running child saves a checkpoint and stops
        for proc, _, _ in running.values():
            proc.send_signal(getattr(exc, "signum", signal.SIGINT))
        for proc, _, _ in running.values():
            proc.wait()
        exc.args = (f"{stopped_by(exc)}; {len(running)} running job(s) stopped after saving a "
                    "checkpoint: rerun the command to resume",)  # fmt: skip
        raise


def _run_queue(
    count: int, slots: int, make: Callable[[int, int], Job], say: Callable[[str], None],
    poll: float, running: dict[int, tuple[subprocess.Popen, Job, int]],
) -> dict[int, int]:  # fmt: skip
    queue, free = list(range(count)), list(range(slots))
    done: dict[int, int] = {}
    while queue or running:
        while queue and free:
            index, slot = queue.pop(0), free.pop(0)
            job = make(index, slot)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with open(job.log, "ab") as log:
                proc = subprocess.Popen(job.argv, env={**os.environ, **job.env}, stdout=log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
            running[index] = (proc, job, slot)
            say(f"job started: {job.name} (log {job.log})")
        for index, (proc, job, slot) in list(running.items()):
            if proc.poll() is None:
                continue
            done[index] = proc.returncode
            free.append(slot)
            del running[index]
            ok = proc.returncode == 0
            say(f"job {'finished' if ok else 'FAILED'}: {job.name}"
                + ("" if ok else f" (exit {proc.returncode}; see {job.log})"))  # fmt: skip
        if running:
            time.sleep(poll)
    return done


def jobs_trainer(
    argv_of: Callable[[int, str], list[str]], jobs: int, devices: Sequence[str],
    default: str = "auto",
) -> TrainFn:  # fmt: skip
    """A `train` for `reproduce`: the runs as `--run I` children, `jobs` at a time, each on its
    slot's device (`slot_device`), each child's output in OUT/jobs/<run>.log."""

    def train(ctx: Context, plan: Plan, indices: list[int]) -> None:
        def make(k: int, slot: int) -> Job:
            i = indices[k]
            device, env = slot_device(slot, jobs, devices, default)
            name = plan.runs[i].name
            return Job(f"run {i} {name} on {device}", argv_of(i, device), env,
                       ctx.out / "jobs" / f"{name}.log")  # fmt: skip

        status = run_processes(len(indices), min(jobs, len(indices)), make, ctx.say)
        ctx.trained_here.update(plan.runs[indices[k]].name for k, rc in status.items() if rc == 0)
        failed = [plan.runs[indices[k]].name for k, rc in status.items() if rc != 0]
        if failed:
            raise UserError(f"{len(failed)} run(s) failed: {', '.join(failed[:3])}; see "
                            f"{ctx.out / 'jobs'}/<run>.log, then rerun to resume")  # fmt: skip

    return train
