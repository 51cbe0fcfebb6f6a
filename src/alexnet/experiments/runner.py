"""Train an experiment's runs as ordinary run directories OUT/runs/<name>/, then gather.

Every way of training (here, `--run I`, `--jobs N`, the `alexnet train` lines of `--plan`)
writes the same OUT/runs/<name>/: a finished run is reused, a checkpoint resumed, a run trained
with another config refused. An experiment with stages plans its later runs once the earlier
ones have finished (`Plan.pending`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import torch

from alexnet.errors import Param, UserError
from alexnet.experiments import result as results
from alexnet.fileio import atomic_write_text
from alexnet.interrupts import interruptible, signal_of, stopped_by
from alexnet.rundir import RunDir, RunResult
from alexnet.train import TrainConfig, fit, make_config

# how a run is carried out, not what it trains: free to differ between invocations
HOW_FIELDS = set(
    "data output_dir resume device workers channels_last compile checkpoint_every "
    "deterministic dist_timeout".split()
)
# a run's state on disk, and how the progress line says what is done with it
DONE = {"finished": "reused", "checkpoint": "resumed", "new": "new"}


class RunStopped(Exception):
    """A training stopped early (a signal): its checkpoint is saved; rerun to resume."""


@dataclass(frozen=True)
class RunSpec:
    """One run: OUT/runs/<name>/, its config, the variant and seed its rows are filed under."""

    name: str
    cfg: TrainConfig
    variant: str
    seed: int


@dataclass
class Plan:
    """An experiment's runs as far as they are known; `pending` says why more will follow."""

    runs: list[RunSpec]
    pending: str = ""


Outcome = tuple[RunSpec, RunResult]  # a finished run: what it trained and what it recorded


@dataclass
class Context:
    """One `alexnet reproduce NAME` call: where the data is, where results go, how much to do."""

    name: str
    data: Path | None  # None: nothing to train (towers --weights)
    out: Path
    budget: str = "quick"
    seeds: int = 3
    device: str = "auto"
    family: str = "small"
    log: TextIO | None = None  # None: sys.stderr
    started: float = field(default_factory=time.perf_counter)
    trained: set[str] = field(default_factory=set)  # the runs this call trained
    outcomes: list[Outcome] = field(default_factory=list)  # what gather reads

    def say(self, message: str) -> None:
        print(message, file=self.log or sys.stderr, flush=True)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / "runs" / spec.name

    def header(self) -> dict[str, Any]:
        """The packed dataset's header.json."""
        return json.loads((Path(self.data) / "header.json").read_text())

    def finish(
        self,
        claims: results.Claim | Sequence[results.Claim],
        rows: list[dict[str, Any]],
        comparisons: list[dict[str, Any]],
        notes: list[str],
        **extra: Any,
    ) -> dict[str, Any]:
        """Write OUT/result.json and OUT/table.md, print the table; return the result."""
        if self.data is None:
            dataset = "no dataset (given weights, nothing trained)"
        else:
            source = self.header().get("input", {}).get("source")
            dataset = f"{source} ({self.data.name})" if source else self.data.name
        one = isinstance(claims, results.Claim)
        result = {
            "format": results.FORMAT,
            "experiment": self.name,
            "claim": claims.to_json() if one else [c.to_json() for c in claims],
            "dataset": dataset,
            "budget": self.budget,
            "runs": rows,
            "summary": results.summarize(rows),
            "comparisons": comparisons,
            "machine": results.machine(),
            "torch": torch.__version__,
            "commit": results.git_commit(),
            "wall_s": round(time.perf_counter() - self.started, 3),
            "family": self.family,
            "runs_planned": len(self.outcomes),
            "runs_reused": sum(s.name not in self.trained for s, _ in self.outcomes),
            "train_s": round(sum(r.train_seconds for _, r in self.outcomes), 1),
            **extra,
            "notes": notes,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=2, allow_nan=False) + "\n"
        atomic_write_text(self.out / "result.json", text)
        atomic_write_text(self.out / "table.md", table := results.table_markdown(result))
        print(table)
        return result


def run_state(cfg: TrainConfig, path: Path) -> str:
    """What `path` holds: "finished", "checkpoint" or "new"; UserError when a run there was
    trained with another config than `cfg` (naming the difference)."""
    rd = RunDir(path)
    state = "finished" if rd.is_finished() else "checkpoint" if rd.has_checkpoint() else "new"
    if state != "new" and rd.config.is_file():  # no config.json: died before; the engine checks
        try:
            saved = rd.read_config()["config"]
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: unreadable config.json ({exc})") from None
        now = json.loads(json.dumps(cfg.to_json()))
        differences = [
            f"{k} {saved.get(k)!r} there, {v!r} now"
            for k, v in now.items()
            if k not in HOW_FIELDS and saved.get(k) != v
        ]
        if differences:
            raise UserError(
                f"{path}: this run was trained with another config "
                f"({'; '.join(differences[:3])}); give another ",
                Param("out"),
                ", or remove that run directory to retrain it",
            )
    return state


def todo(ctx: Context, plan: Plan) -> list[int]:
    """The indices of the plan's runs that have not finished."""
    return [i for i, s in enumerate(plan.runs) if run_state(s.cfg, ctx.run_dir(s)) != "finished"]


def run_config(ctx: Context, spec: RunSpec, resume_auto: bool = False) -> TrainConfig:
    """The run's config as trained: output_dir OUT/runs/<name>/; with `resume_auto`, continued
    from the checkpoint there when it holds one (`alexnet train --resume auto`)."""
    values = {**spec.cfg.to_json(), "output_dir": str(ctx.run_dir(spec))}
    values.pop("resume", None)
    return make_config(values.pop("recipe"), resume="auto" if resume_auto else None, **values)


def recipe_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """The fields of `cfg` (but recipe and resume) that differ from its recipe's values."""
    base = make_config(cfg.recipe).to_json()
    skip = ("recipe", "resume")
    return {k: v for k, v in cfg.to_json().items() if k not in skip and v != base[k]}


def train_here(ctx: Context, plan: Plan, indices: Sequence[int]) -> None:
    """Train the plan's runs `indices` in this process, one progress line each; RunStopped when
    a signal stopped a training."""
    for i in indices:
        spec, path = plan.runs[i], ctx.run_dir(plan.runs[i])
        state = run_state(spec.cfg, path)
        ctx.say(f"run {i + 1}/{len(plan.runs)}: {spec.variant} seed {spec.seed} ({DONE[state]})")
        if state == "finished":
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f" {ctx.out}: cannot create {path.parent}: {exc.strerror}"
            raise UserError(Param("out"), msg) from None
        if fit(run_config(ctx, spec, resume_auto=True)).status == "stopped":
            raise RunStopped(
                f"run {spec.name} stopped; its checkpoint is in {path}: rerun to resume"
            )
        ctx.trained.add(spec.name)


def train_one(ctx: Context, module: ModuleType, index: int) -> None:
    """`--run I`: train (or resume, or find finished) run I of the plan only."""
    plan = module.plan(ctx)
    if index >= len(plan.runs):
        if plan.pending:
            why = f"not planned yet: {plan.pending} (see "
        else:
            why = f"{ctx.name} has runs 0..{len(plan.runs) - 1} ("
        raise UserError(Param("run"), f" {index}: {why}", Param("plan"), ")")
    train_here(ctx, plan, [index])


def reproduce(
    ctx: Context, module: ModuleType, jobs: int = 0, devices: Sequence[str] = ()
) -> dict[str, Any]:
    """Train every unfinished run, stage by stage (here, or `jobs` child processes at a time),
    then gather: the result."""
    while missing := todo(ctx, plan := module.plan(ctx)):
        if jobs:
            train_jobs(ctx, plan, missing, jobs, devices)
        else:
            train_here(ctx, plan, missing)
        if still := [plan.runs[i].name for i in todo(ctx, plan)]:
            names = ", ".join(still[:3])
            raise UserError(f"{len(still)} run(s) did not finish ({names}); rerun to resume")
    ctx.outcomes = [(s, RunDir(ctx.run_dir(s)).result()) for s in plan.runs]
    return module.gather(ctx, list(ctx.outcomes))


# ------------------------------------------------------------------ --jobs N
POLL = 0.2  # seconds between looks at the running jobs


def slot_device(slot: int, slots: int, devices: Sequence[str], default: str) -> tuple[str, dict]:
    """Slot `slot`'s device (`devices` in turn, else `default`) and extra environment: a CPU
    slot's thread count is its share of the cores."""
    device = devices[slot % len(devices)] if devices else default
    if device not in ("cpu", "auto"):
        return device, {}
    threads = str(max(1, (os.cpu_count() or 1) // slots))
    return device, {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def child_argv(ctx: Context, index: int, device: str) -> list[str]:
    """The command line of the child process that trains run `index` on `device` (--jobs)."""
    argv = [sys.executable, "-m", "alexnet", "reproduce", ctx.name, "--data", str(ctx.data)]
    argv += ["--budget", ctx.budget, "--seeds", str(ctx.seeds), "--family", ctx.family]
    return argv + ["--output-dir", str(ctx.out), "--run", str(index), "--device", device]


def train_jobs(
    ctx: Context, plan: Plan, indices: list[int], jobs: int, devices: Sequence[str]
) -> None:
    """Train the plan's runs `indices` as `child_argv` processes, `jobs` at a time (each slot
    on its device), each child's output in OUT/jobs/<run>.log. Ctrl-C or SIGTERM goes on to
    every running child (it saves and stops), then up."""
    queue, free, status = list(indices), list(range(min(jobs, len(indices)))), {}
    running: dict[int, tuple[subprocess.Popen, str, Path, int]] = {}
    try:
        with interruptible():
            while queue or running:
                while queue and free:
                    index, slot = queue.pop(0), free.pop(0)
                    device, env = slot_device(slot, jobs, devices, ctx.device)
                    name = f"run {index} {plan.runs[index].name} on {device}"
                    log = ctx.out / "jobs" / f"{plan.runs[index].name}.log"
                    log.parent.mkdir(parents=True, exist_ok=True)
                    with open(log, "ab") as out:
                        proc = subprocess.Popen(
                            child_argv(ctx, index, device),
                            env={**os.environ, **env},
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    running[index] = (proc, name, log, slot)
                    ctx.say(f"job started: {name} (log {log})")
                for index, (proc, name, log, slot) in list(running.items()):
                    if (rc := proc.poll()) is not None:
                        status[index] = rc
                        free.append(slot)
                        del running[index]
                        failed = f"job FAILED: {name} (exit {rc}; see {log})"
                        ctx.say(f"job finished: {name}" if rc == 0 else failed)
                if running:
                    time.sleep(POLL)
    except KeyboardInterrupt as exc:
        for proc, *_ in running.values():
            proc.send_signal(signal_of(exc))
        for proc, *_ in running.values():
            proc.wait()
        exc.args = (
            f"{stopped_by(exc)}; {len(running)} running job(s) stopped after saving a "
            "checkpoint: rerun the command to resume",
        )
        raise
    ctx.trained.update(plan.runs[i].name for i, rc in status.items() if rc == 0)
    if failed := [plan.runs[i].name for i, rc in status.items() if rc != 0]:
        raise UserError(
            f"{len(failed)} run(s) failed: {', '.join(failed[:3])}; see "
            f"{ctx.out / 'jobs'}/<run>.log, then rerun to resume"
        )


# ------------------------------------------------------------------ notes
def training_words(cfg: TrainConfig) -> str:
    """A config's optimization in words, for notes."""
    step = f" x {cfg.lr_factor:g} every {cfg.lr_step_size} epochs"
    schedule = {
        "cosine": f"cosine decay from {cfg.lr:g} ({cfg.warmup_epochs:g} warm-up epochs)",
        "plateau": f"lr {cfg.lr:g} divided by {1 / cfg.lr_factor:g} on a validation plateau",
        "step": f"lr {cfg.lr:g}" + (step if cfg.lr_step_size < cfg.epochs else " (constant)"),
    }[cfg.schedule]
    return (
        f"SGD momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g}, batch "
        f"{cfg.batch_size}, {schedule}"
    )


def data_words(cfg: TrainConfig) -> str:
    """How many epochs on how many images, in words."""
    images = f"the first {cfg.train_limit:,} training images" if cfg.train_limit else None
    return (
        f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} on {images or 'all training images'}"
    )
