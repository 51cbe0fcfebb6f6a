"""What a run writes for people: progress bar, RUN/metrics.jsonl, TensorBoard events, config."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from alexnet.fileio import atomic_write_text
from alexnet.progress import progress_bar
from alexnet.rundir import RunDir


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to `path` (a log: RUN/steps.jsonl, RUN/starts.jsonl)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_metrics(run: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite RUN/metrics.jsonl from the checkpointed history (so a resume never duplicates)."""
    write_text(RunDir(run).metrics, "".join(json.dumps(r) + "\n" for r in history))


class TensorBoard:
    """TensorBoard scalars in RUN; warns once and does nothing when tensorboard is missing."""

    def __init__(self, run: Path, purge_step: int | None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            warnings.warn(
                f"TensorBoard events disabled: {exc} (pip install tensorboard)", stacklevel=2
            )
            return
        self.writer = SummaryWriter(log_dir=str(run), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, int | float):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class Progress:
    """tqdm bar over one epoch's steps (loss, images/s, ETA) on rank 0 at an interactive
    terminal; otherwise a plain line every `every` seconds."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str, every: float = 30.0):
        self.enabled, self.bar, self.every = enabled, None, every
        self.last = 0.0
        if enabled and sys.stderr.isatty():
            self.bar = progress_bar(
                total=total,
                initial=initial,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5,
                leave=False,
            )
        self.total, self.desc = total, desc

    def update(self, step: int, loss: float, images_per_sec: float, now: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_sec:.0f}", refresh=False)
        elif now - self.last >= self.every:
            self.last = now
            print(
                f"{self.desc} step {step}/{self.total} loss {loss:.4f} {images_per_sec:.0f} img/s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
