"""The run directory (RUN/) that `alexnet train` writes: its file names and their readers, for
the engine that writes a run and the commands that read one (eval, plot, report, reproduce)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.errors import UserError


@dataclass
class RunResult:
    """What a finished (or stopped) training run gives back (`alexnet.train.fit`): `history`
    the `metrics.jsonl` records, `final` the `eval.json` record (empty when the run stopped)."""

    status: str  # "finished" | "max_steps" | "stopped"
    output_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None
    train_seconds: float = 0.0
    stop_signal: int | None = None  # the signal that stopped the run ("stopped"), e.g. 15

    @property
    def exit_status(self) -> int:
        """What a command should exit with: 0, or 128 + the signal that stopped the run (as
        shells report it), so torchrun, SLURM and `&&` never read a stop as a finish."""
        return 128 + self.stop_signal if self.stop_signal else 0

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's metrics record ({} before the first epoch ends)."""
        return self.history[-1] if self.history else {}


class RunDir:
    """Paths and readers of one run directory."""

    CONFIG = "config.json"  # at the start: the resolved config, model, geometry, versions
    METRICS = "metrics.jsonl"  # every epoch: one record per (possibly partial) epoch
    STEPS = "steps.jsonl"  # every --log-every steps: training loss and error over them
    STARTS = "starts.jsonl"  # every start: resumed or not, torchrun restart, world size, step
    CHECKPOINT = "checkpoint.pt"  # epoch ends, signals: all to resume to the bit
    WEIGHTS = "weights.safetensors"  # at the end: the final weights with their metadata
    BEST = "weights-best.safetensors"  # when validation improves: the best weights so far
    EVAL = "eval.json"  # at the end: the final evaluation (top-1/top-5 error, crops)
    REPORT = "report.md"  # `alexnet report`: the run's report and pictures
    KERNELS = "kernels.png"
    CURVES = "curves.png"
    NEIGHBOURS = "neighbours.png"
    PREDICTIONS = "predictions.png"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.config, self.metrics = self.path / self.CONFIG, self.path / self.METRICS
        self.steps, self.starts = self.path / self.STEPS, self.path / self.STARTS
        self.checkpoint, self.weights = self.path / self.CHECKPOINT, self.path / self.WEIGHTS
        self.best_weights, self.eval_json = self.path / self.BEST, self.path / self.EVAL

    def owns(self, path: Path) -> bool:
        """True for a file a run writes (the names above, TensorBoard's event files)."""
        names = {v for k, v in vars(RunDir).items() if k.isupper() and isinstance(v, str)}
        return path.name in names or path.name.startswith("events.out.tfevents")

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def is_finished(self) -> bool:
        """True when the run reached its end: final weights and evaluation written."""
        return self.eval_json.is_file() and self.weights.is_file()

    def read_config(self) -> dict[str, Any]:
        """`config.json` as written by the engine: {"config": {...}, "model": {...}, ...}."""
        return json.loads(self.config.read_text())

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics) if self.metrics.is_file() else []

    def read_steps(self) -> list[dict[str, Any]]:
        return read_jsonl(self.steps) if self.steps.is_file() else []

    def read_eval(self) -> dict[str, Any]:
        return json.loads(self.eval_json.read_text())

    def result(self) -> RunResult:
        """The RunResult of a run on disk (finished or not)."""
        history = self.read_metrics()
        final = self.read_eval() if self.eval_json.is_file() else {}
        status = "finished" if self.is_finished() else "stopped"
        if history and status == "finished" and not history[-1].get("complete", True):
            status = "max_steps"
        weights = self.weights if self.weights.is_file() else None
        seconds = float(history[-1].get("elapsed", 0.0)) if history else 0.0
        return RunResult(status, self.path, history, final, weights, seconds)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; UserError naming it when it cannot be read or a line
    is not JSON."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the run's metrics ({exc.strerror})") from None
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        raise UserError(f"{path}: not JSON lines ({exc})") from None
