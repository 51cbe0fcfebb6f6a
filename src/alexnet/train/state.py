"""What a training run holds between steps, in parts with one job each.

`TrainState` is what the loop (`alexnet.train.loop`) advances and what a checkpoint saves:
- `Network`: the model and the handles to it (the bare paper-layout net, what the step calls,
  what validation calls, its state_dict in the paper layout);
- `Inputs`: the datasets, their loaders and transforms, and the geometry and preprocessing
  derived from the data;
- `Optimization`: the optimizer and the learning-rate schedule;
- `Position` and `Sums`: where the run is and the running sums of the epoch and of the step log;
- the metrics history, the run directory, this process's place among the ranks, the device.
`alexnet.train.setup.setup` builds it from a config, in the order a run is set up.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alexnet import runtime
from alexnet.data.augment import TrainTransform
from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import PackedDataset
from alexnet.rundir import RunDir
from alexnet.train.config import TrainConfig
from alexnet.train.runlog import TensorBoard
from alexnet.train.schedules import Schedule
from alexnet.weights.meta import Preprocess


@dataclass
class Position:
    """Where the run is: (epoch, batch) is the next global batch to run (both from 0)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_error: float = math.inf
    elapsed: float = 0.0  # training seconds so far, validation excluded


@dataclass
class Sums:
    """Running sums over the minibatches of a span (an epoch, or a step-log window).

    `loss` and `correct` are Python numbers when each step's values are read on the host, or
    0-d float64 tensors on the device when the step never waits for the device (CUDA): then
    they are read (`to_plain`) only at log, epoch and checkpoint boundaries."""

    loss: Any = 0.0
    correct: Any = 0.0
    images: int = 0
    nan_skipped: Any = 0
    train_time: float = 0.0
    data_time: float = 0.0  # seconds spent waiting for the loader's batches

    def add(self, loss: Any, correct: Any, images: int) -> None:
        """Add one minibatch: its mean loss and correct count (numbers or device tensors)."""
        self.loss = self.loss + loss * images
        self.correct = self.correct + correct
        self.images += images

    def reset(self) -> None:
        self.loss = self.correct = self.train_time = self.data_time = 0.0
        self.images = self.nan_skipped = 0

    def to_plain(self) -> dict[str, float | int]:
        """The sums as Python numbers (reading device tensors: a sync)."""
        return {
            "loss": float(self.loss),
            "correct": float(self.correct),
            "images": int(self.images),
            "nan_skipped": int(self.nan_skipped),
            "train_time": float(self.train_time),
            "data_time": float(self.data_time),
        }


@dataclass
class Network:
    """The model and its handles. `net` is the bare model in the paper layout (even when
    `model` is its two-device split or wrapped in DDP); `forward` is what the step calls
    (possibly torch.compile'd); `evaluate_model` what validation calls (never DDP: ranks may
    hold unequal numbers of validation batches, and DDP's forward is a collective)."""

    net: nn.Module
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    evaluate_model: nn.Module
    state_dict: Callable[[], dict[str, torch.Tensor]]
    load_state_dict: Callable[[dict[str, torch.Tensor]], Any]


@dataclass
class Inputs:
    """The data side: datasets, loaders, transforms, and what was derived from the data."""

    train_ds: PackedDataset
    val_ds: PackedDataset
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    train_transform: TrainTransform
    eval_transform: Callable
    geometry: dict[str, Any]
    preprocess: Preprocess
    mean_image: torch.Tensor


@dataclass
class Optimization:
    """SGD and its learning-rate schedule; `sync_free`: the step never waits for the device
    (fused SGD skips a non-finite step on the device; sums stay on the device)."""

    optimizer: torch.optim.Optimizer
    schedule: Schedule
    sync_free: bool = False


@dataclass
class TrainState:
    """One training run in memory (see the module docstring)."""

    cfg: TrainConfig
    run: RunDir
    info: runtime.DistInfo
    device: torch.device
    network: Network
    inputs: Inputs
    optim: Optimization
    pos: Position = field(default_factory=Position)
    epoch_sums: Sums = field(default_factory=Sums)
    window: Sums = field(default_factory=Sums)  # the steps since the last steps.jsonl record
    history: list[dict[str, Any]] = field(default_factory=list)
    tensorboard: TensorBoard | None = None
    resumed: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return len(self.inputs.train_loader)

    def say(self, message: str) -> None:
        """A line on stderr from rank 0."""
        if self.info.is_main:
            print(message, file=sys.stderr, flush=True)
