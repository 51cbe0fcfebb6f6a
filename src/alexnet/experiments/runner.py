"""Run an experiment's trainings as ordinary run directories under OUT/runs/, resumably.

`run_all(specs, out)` trains each `RunSpec(name, cfg, variant, seed)` into OUT/runs/<name>/:
- a finished run (RunDir.is_finished: eval.json and weights exist) is reused, not retrained;
- a run with a checkpoint resumes from it (cfg.resume = its directory);
- anything else starts fresh.
A run found on disk must have been trained with the same config (what it trains: model, recipe,
budget, seed; not where or on what device): otherwise one UserError names the difference, so a
`--budget full` call never reuses the runs of a `--budget quick` one in the same OUT.
One line on stderr per run: "run 3/12: relu lr=0.05 seed 1 (resumed|reused|new)".
The spec carries the run's variant and seed, so what a run measures is never parsed back out
of its name.
Rerunning the same command after a kill therefore redoes only what was not finished.
The fit function and the run-directory type are parameters (defaults: the training engine's
`alexnet.train.engine.fit` and `alexnet.rundir.RunDir`, imported when first needed), so
tests can count trainings and simulate interruptions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from alexnet.errors import UserError
from alexnet.rundir import RunDir
from alexnet.train.config import TrainConfig
from alexnet.train.loop import fit as engine_fit
from alexnet.train.recipes import recipe_model_options

RUNS = "runs"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


class RunDirLike(Protocol):
    """What the runner needs of a run directory (alexnet.rundir.RunDir)."""

    def is_finished(self) -> bool: ...
    def has_checkpoint(self) -> bool: ...
    def result(self) -> Any: ...
    def read_config(self) -> dict[str, Any]: ...


FitFn = Callable[[TrainConfig], Any]
RunDirFactory = Callable[[Path], RunDirLike]


# how a run is carried out, not what it trains: free to differ between invocations
_HOW_FIELDS = frozenset(
    {"data", "output_dir", "resume", "device", "workers", "channels_last", "compile",
     "checkpoint_every", "deterministic", "dist_timeout"}
)  # fmt: skip


class RunStopped(Exception):
    """A training stopped early (a signal): its checkpoint is saved; rerun to resume."""


def default_fit(cfg: TrainConfig) -> Any:
    """The training engine's fit."""
    return engine_fit(cfg)


def default_rundir(path: Path) -> RunDirLike:
    return RunDir(path)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment: OUT/runs/<name>/, its config, and what it stands
    for (the variant and seed its measurements are filed under; label: the progress line)."""

    name: str
    cfg: TrainConfig
    variant: str
    seed: int
    label: str = ""

    @property
    def text(self) -> str:
        return self.label or f"{self.variant} seed {self.seed}"


@dataclasses.dataclass
class RunOutcome:
    """One run of `run_all`: its spec, directory, what was done, and the engine's RunResult."""

    spec: RunSpec
    run_dir: Path
    action: str  # "reused" | "resumed" | "new"
    result: Any

    @property
    def name(self) -> str:
        return self.spec.name


def check_specs(specs: Sequence[RunSpec]) -> list[RunSpec]:
    """The specs, checked: every name a plain file name, no name twice (ValueError)."""
    seen: set[str] = set()
    for spec in specs:
        if not _NAME.match(spec.name) or spec.name in seen:
            raise ValueError(f"run name {spec.name!r} is not a unique plain file name")
        seen.add(spec.name)
    return list(specs)


def run_all(
    specs: Sequence[RunSpec],
    out: str | os.PathLike,
    *,
    fit: FitFn | None = None,
    rundir: RunDirFactory | None = None,
    log: TextIO | None = None,
    numbers: Sequence[int] | None = None,
    total: int | None = None,
) -> list[RunOutcome]:
    """Train (or reuse, or resume) every run into OUT/runs/<name>/, in order.

    Each config is copied with output_dir set (and resume set when resuming); the caller's
    objects are not changed. Raises RunStopped when a training reports status "stopped".
    `numbers` and `total`: how the progress lines count the runs (default 1..len(specs)).
    """
    fit = fit or default_fit
    rundir = rundir or default_rundir
    log = log or sys.stderr
    items = check_specs(specs)
    numbers = list(numbers) if numbers is not None else list(range(1, len(items) + 1))
    root = runs_root(out)
    outcomes = []
    for number, spec in zip(numbers, items):
        path = root / spec.name
        rd = rundir(path)
        action = run_state(rd, path, spec.cfg)
        cfg = dataclasses.replace(spec.cfg, output_dir=str(path), resume=None)
        if action == "resumed":
            cfg = dataclasses.replace(cfg, resume=str(path))
        print(f"run {number}/{total or len(items)}: {spec.text} ({action})", file=log, flush=True)
        result = rd.result() if action == "reused" else fit(cfg)
        if getattr(result, "status", None) == "stopped":
            raise RunStopped(
                f"run {spec.name} stopped; its checkpoint is in {path}: rerun to resume"
            )
        outcomes.append(RunOutcome(spec, path, action, result))
    return outcomes


def runs_root(out: str | os.PathLike) -> Path:
    """OUT/runs/, created (UserError naming --output-dir when it cannot be)."""
    root = Path(out) / RUNS
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output-dir {out}: cannot create {root}: {exc.strerror}") from None
    return root


def run_state(rd: RunDirLike, path: Path, cfg: TrainConfig) -> str:
    """What training the run at `path` needs: "reused" (finished), "resumed" (a checkpoint) or
    "new"; a run on disk trained with another config is refused (UserError)."""
    if rd.is_finished() or rd.has_checkpoint():
        _check_same_training(rd, path, cfg)
    if rd.is_finished():
        return "reused"
    return "resumed" if rd.has_checkpoint() else "new"


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The training-defining fields in which `cfg` differs from a run's saved config (a field
    that an earlier version did not save means its default). The recipe's name is not such a
    field: a recipe acts through the field values (compared one by one) and the model options
    it brings, so two names that give this model the same options train the same run (the
    experiments' runs were recipe `paper` with every value given before `ablation` existed)."""
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
    out = [
        f"{key} {saved.get(key, defaults[key])!r} there, {value!r} now"
        for key, value in now.items()
        if key not in _HOW_FIELDS | {"recipe"} and saved.get(key, defaults[key]) != value
    ]
    then = {**recipe_model_options(saved.get("recipe", "paper"), cfg.model), **cfg.model_options}
    if then != {**recipe_model_options(cfg.recipe, cfg.model), **cfg.model_options}:
        out.append(f"recipe {saved.get('recipe')!r} there, {cfg.recipe!r} now")
    return out


def _check_same_training(rd: RunDirLike, path: Path, cfg: TrainConfig) -> None:
    try:
        saved = rd.read_config().get("config", {})
    except FileNotFoundError:
        return  # a checkpoint from a start that died before config.json: the engine checks it
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: unreadable config.json ({exc})") from None
    differences = config_differences(saved, cfg)
    if differences:
        raise UserError(
            f"{path}: this run was trained with another config ({'; '.join(differences[:3])}); "
            "give another --output-dir, or remove that run directory to retrain it"
        )
