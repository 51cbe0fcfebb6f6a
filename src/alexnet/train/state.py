"""Everything a training run holds between steps, and how it is built from a config (`setup`).

`TrainState` is what the loop (`alexnet.train.loop`) advances and what a checkpoint saves:
the model and optimizer, the learning-rate schedule, where the run is (`Position`), the running
sums of the epoch and of the step log, the metrics history, and the RNG states (saved by
`checkpoint_dict`, restored by `setup`).

Randomness, so that a resumed run repeats an uninterrupted one exactly:
- loader order: a function of (seed, epoch) (DeviceLoader.set_epoch);
- augmentation: a torch.Generator seeded from (seed, epoch, step, rank) for every step;
- dropout: the global torch RNG, whose state the checkpoint holds (with numpy's and python's).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexnet import runtime as dist
from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.evaluate import make_eval_transform
from alexnet.models.parallel import TwoDeviceAlexNet
from alexnet.models.registry import get_model
from alexnet.rundir import RunDir
from alexnet.train import pipeline
from alexnet.train.checkpoint import (
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
)
from alexnet.train.config import TrainConfig, config_json, resolve_channels_last
from alexnet.train.optim import make_optimizer, make_schedule
from alexnet.train.runlog import TensorBoard, write_text
from alexnet.weights.meta import Preprocess


@dataclass
class Position:
    """Where the run is: (epoch, batch) is the next batch to run (both from 0)."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_error: float = math.inf
    elapsed: float = 0.0  # training seconds so far, validation excluded


@dataclass
class Sums:
    """Running sums over the minibatches of a span (an epoch, or a step-log window)."""

    loss: float = 0.0
    correct: float = 0.0
    images: int = 0
    nan_skipped: int = 0
    train_time: float = 0.0
    data_time: float = 0.0  # seconds spent waiting for the loader's batches

    def add(self, loss: float, correct: float, images: int) -> None:
        self.loss += loss * images
        self.correct += correct
        self.images += images

    def reset(self) -> None:
        self.loss = self.correct = self.train_time = self.data_time = 0.0
        self.images = self.nan_skipped = 0


@dataclass
class TrainState:
    """One training run in memory. `net` is the bare model (the paper layout even when
    `model` is its two-device split or wrapped in DDP); `forward` is what the step calls
    (possibly torch.compile'd); `evaluate_model` what validation calls (never DDP: ranks may
    hold unequal numbers of validation batches, and DDP's forward is a collective)."""

    cfg: TrainConfig
    run: RunDir
    info: dist.DistInfo
    device: torch.device
    train_ds: Any
    val_ds: Any
    net: nn.Module
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    evaluate_model: nn.Module
    model_state: Callable[[], dict[str, torch.Tensor]]
    load_model_state: Callable[[dict[str, torch.Tensor]], Any]
    optimizer: torch.optim.Optimizer
    schedule: Any
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    train_transform: Callable
    eval_transform: Callable
    geometry: dict[str, Any]
    preprocess: Preprocess
    mean_image: torch.Tensor
    pos: Position = field(default_factory=Position)
    epoch_sums: Sums = field(default_factory=Sums)
    window: Sums = field(default_factory=Sums)  # the steps since the last steps.jsonl record
    history: list[dict[str, Any]] = field(default_factory=list)
    tensorboard: TensorBoard | None = None
    resumed: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def say(self, message: str) -> None:
        """A line on stderr from rank 0."""
        if self.info.is_main:
            print(message, file=sys.stderr, flush=True)


def setup(cfg: TrainConfig, info: dist.DistInfo, device: torch.device) -> TrainState:
    """Build the run's state from its config: data, model, optimizer, loaders; then restore a
    checkpoint when `cfg.resume` names one, and write RUN/config.json (with every automatic
    choice resolved)."""
    cfg = dataclasses.replace(cfg, channels_last=resolve_channels_last(cfg, device.type))
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_ds, val_ds = open_dataset(cfg.data, "train"), open_dataset(cfg.data, "val")
    if len(train_ds) == 0:
        raise UserError(f"{cfg.data}: the train split holds no images; nothing to train on")
    if 0 < cfg.train_limit < len(train_ds):
        train_ds = pipeline.FirstImages(train_ds, cfg.train_limit)
    if 0 < cfg.val_limit < len(val_ds):
        val_ds = pipeline.FirstImages(val_ds, cfg.val_limit)
    run = RunDir(cfg.output_dir)
    saved = load_checkpoint(_checkpoint_path(cfg.resume), "cpu") if cfg.resume else None

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    options = pipeline.model_options(cfg, train_ds.image_size, train_ds.stats)
    net = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    if cfg.init_like is not None:
        _init_like(net, cfg, train_ds)
    if saved is not None:
        check_compatible(
            saved, cfg.resume, model_config=net.config, data_fingerprint=train_ds.fingerprint
        )
    _check_run_dir(run, net, info, resuming=saved is not None)

    state = _build(cfg, run, info, device, train_ds, val_ds, net)
    if saved is not None:
        restore(state, saved)
    else:
        # a dropout stream per rank
        torch.manual_seed(pipeline.step_seed(cfg.seed, 0, 0, info.rank, stream=1))
    if info.is_main:
        write_text(run.config, _config_text(state))  # rewritten whole on every start
        state.tensorboard = TensorBoard(run.path, purge_step=state.pos.global_step or None)
    return state


def _init_like(net: nn.Module, cfg: TrainConfig, train_ds) -> None:
    """Pair a variant with a reference model (experiments): every tensor whose name and shape
    the two share starts from the reference's initial value for the same seed, so a variant
    that removes a layer or changes a width still shares the other layers' starting weights."""
    like = dataclasses.replace(cfg, model_options=dict(cfg.init_like))
    options = pipeline.model_options(like, train_ds.image_size, train_ds.stats)
    torch.manual_seed(cfg.seed)
    reference = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    own = net.state_dict()
    shared = {
        k: v for k, v in reference.state_dict().items() if k in own and own[k].shape == v.shape
    }
    net.load_state_dict(shared, strict=False)


def _checkpoint_path(resume: str) -> Path:
    src = Path(resume)
    return src / RunDir.CHECKPOINT if src.is_dir() else src


def _check_run_dir(run: RunDir, net: nn.Module, info: dist.DistInfo, *, resuming: bool) -> None:
    error = None
    if info.is_main:
        try:
            pipeline.check_run_dir(run.path, pipeline.bytes_needed(net), resuming=resuming)
        except UserError as exc:
            error = str(exc)
    error = dist.broadcast_object(error)
    if error:
        raise UserError(error)


def _build(cfg, run, info, device, train_ds, val_ds, net) -> TrainState:
    """Model placement, optimizer, schedule, transforms and loaders (no state restored yet)."""
    in_channels = int(getattr(net, "in_channels", 3))
    geometry = pipeline.plan_geometry(
        train_ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    stats = train_ds.stats
    preprocess = pipeline.preprocess_for(
        cfg, geometry, in_channels, stats, min(train_ds.image_size)
    )
    mean_image = torch.as_tensor(stats.mean_image, dtype=torch.float32)
    model, model_state, load_model_state = _place_model(cfg, net, device)
    evaluate_model = model
    if info.enabled:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )

    def loader(ds, shuffle: bool) -> DeviceLoader:
        return DeviceLoader(
            ds,
            cfg.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            seed=cfg.seed,
            rank=info.rank,
            world_size=info.world_size,
            device=device,
            workers=cfg.workers,
        )

    state = TrainState(
        cfg=cfg,
        run=run,
        info=info,
        device=device,
        train_ds=train_ds,
        val_ds=val_ds,
        net=net,
        model=model,
        forward=torch.compile(model) if cfg.compile else model,
        evaluate_model=evaluate_model,
        model_state=model_state,
        load_model_state=load_model_state,
        optimizer=optimizer,
        schedule=make_schedule(cfg),
        train_loader=loader(train_ds, True),
        val_loader=loader(val_ds, False),
        train_transform=pipeline.make_train_transform(cfg, geometry, in_channels, stats),
        eval_transform=make_eval_transform(preprocess, mean_image, cfg.eval_crops),
        geometry=geometry,
        preprocess=preprocess,
        mean_image=mean_image,
    )
    if state.steps_per_epoch == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images are fewer than one global batch of "
            f"{cfg.batch_size * info.world_size}; lower --batch-size"
        )
    return state


def _place_model(cfg: TrainConfig, net: nn.Module, device: torch.device):
    """The model on its device(s) and the functions that give and load its state_dict in the
    paper layout."""
    if cfg.model_parallel:
        if cfg.model != "paper":
            raise UserError("--model-parallel splits the paper's two towers: use --model paper")
        devices = tuple(d.strip() for d in cfg.model_parallel.split(","))
        model = TwoDeviceAlexNet.from_paper(net, devices=devices)
        return model, model.paper_state_dict, model.load_paper_state_dict
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    net = net.to(device=device, memory_format=memory_format)
    return net, net.state_dict, net.load_state_dict


def checkpoint_dict(state: TrainState) -> dict[str, Any]:
    """What `save_checkpoint` writes: plain tensors and primitives (weights_only loadable).
    `classes`, `preprocess` and `mean_image` let the checkpoint be read as weights."""
    pos = dataclasses.asdict(state.pos)
    return {
        "model_config": json.dumps(state.net.config),
        "data_fingerprint": state.train_ds.fingerprint,
        "config": json.dumps(state.cfg.to_json()),
        "classes": json.dumps(list(state.train_ds.classes)),
        "preprocess": json.dumps(state.preprocess.to_json()),
        "mean_image": state.mean_image,
        "model": state.model_state(),
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        **pos,
        "epoch_sums": dataclasses.asdict(state.epoch_sums),
        "step_window": dataclasses.asdict(state.window),
        "history": state.history,
        "rng": capture_rng_state(),
    }


def restore(state: TrainState, saved: dict[str, Any]) -> None:
    """Load a checkpoint (from `checkpoint_dict`, or an older one without the newer keys)."""
    state.load_model_state(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.schedule.load_state_dict(saved["schedule"])
    for name in ("epoch", "batch", "global_step", "best_error", "elapsed"):
        setattr(state.pos, name, saved[name])
    state.epoch_sums = Sums(**saved["epoch_sums"])
    state.window = Sums(**saved.get("step_window", {}))
    state.history = list(saved["history"])
    if state.info.is_main:
        restore_rng_state(saved["rng"])
    else:
        seed = pipeline.step_seed(state.cfg.seed, 0, state.pos.global_step, state.info.rank, 1)
        torch.manual_seed(seed)
    state.resumed = True


def _config_text(state: TrainState) -> str:
    return config_json(
        state.cfg,
        model=state.net.config,
        geometry=state.geometry,
        preprocess=state.preprocess.to_json(),
        classes=list(state.train_ds.classes),
        world_size=state.info.world_size,
        data_fingerprint=state.train_ds.fingerprint,
    )


def device_for(cfg: TrainConfig, info: dist.DistInfo) -> torch.device:
    """This process's device: --model-parallel's first, else --device (torchrun: LOCAL_RANK)."""
    if cfg.model_parallel:
        devices = [d.strip() for d in cfg.model_parallel.split(",")]
        if len(devices) != 2 or info.enabled:
            raise UserError("--model-parallel takes two devices, DEV0,DEV1, in a single process")
        return dist.resolve_device(devices[0], info)
    return dist.resolve_device(cfg.device, info)
