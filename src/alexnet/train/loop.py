"""Training (paper §5), top to bottom: `fit` sets a run up, runs its epochs of SGD steps,
validates at every epoch's end, checkpoints so that a resumed run repeats an uninterrupted one
to the bit, and writes the final weights and evaluation. DDP through torchrun; SIGTERM / SIGINT
stop after the current step with a checkpoint.

    from alexnet.train import fit, make_config
    result = fit(make_config("fast", data="data/fmnist", output_dir="runs/a"))
    result.final["top1_error"], result.history[-1]["train_loss"], result.weights

One step for every device (`train_step`): its loss and correct count are summed on the device
and read only at log, epoch and checkpoint boundaries. A non-finite loss is flagged on the
device: fused SGD (CUDA) skips that update there (`skip_if_nonfinite`); the CPU's
per-parameter SGD (the arithmetic of every earlier run) reads the flag at once, which costs a
CPU nothing. The ranks agree on stop signals and non-finite steps every `POLL_STEPS` steps with
fused SGD, after every step otherwise. The run directory's files: `alexnet.rundir`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexnet import runtime
from alexnet.checkpoint import (
    Checkpoint,
    check_compatible,
    load_checkpoint,
    reconcile_world_size,
    save_checkpoint,
)
from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.evaluate import evaluate, make_eval_transform
from alexnet.fileio import atomic_write_text
from alexnet.models.parallel import TwoDeviceAlexNet
from alexnet.models.registry import get_model
from alexnet.progress import progress_bar
from alexnet.rundir import RunDir, RunResult
from alexnet.train import inputs as inputs_mod
from alexnet.train.config import RESUME_AUTO, TrainConfig, config_json, resolve_channels_last
from alexnet.train.optim import make_optimizer, set_lr, skip_if_nonfinite
from alexnet.train.randomness import capture_rng_state, restore_rng_state, step_generator, step_seed
from alexnet.train.schedules import Schedule, make_schedule
from alexnet.train.signals import StopFlag
from alexnet.weights.files import save as save_weights
from alexnet.weights.meta import Preprocess

StepCallback = Callable[[int], None]  # called after every step with the global step (tests)
POLL_STEPS = 50  # fused-SGD steps between the ranks' agreement on stop signals and NaNs


@dataclass
class Sums:
    """Running sums over the steps of a span (an epoch, or a steps.jsonl window): loss x images,
    correct, images and skipped steps as float64 device tensors, read only at boundaries."""

    loss: torch.Tensor
    correct: torch.Tensor
    images: torch.Tensor
    nan_skipped: torch.Tensor
    train_time: float = 0.0
    data_time: float = 0.0  # seconds spent waiting for the loader's batches

    @classmethod
    def of(cls, device: torch.device, plain: dict[str, float] | None = None) -> Sums:
        """Sums on `device`: zeros, or the plain numbers a checkpoint holds."""
        plain = plain or {}

        def zero(k: str) -> torch.Tensor:
            return torch.tensor(float(plain.get(k, 0)), dtype=torch.float64, device=device)

        times = (float(plain.get("train_time", 0.0)), float(plain.get("data_time", 0.0)))
        return cls(zero("loss"), zero("correct"), zero("images"), zero("nan_skipped"), *times)

    def add(self, loss: torch.Tensor, correct: torch.Tensor, images: torch.Tensor, bad) -> None:
        self.loss = self.loss + loss * images
        self.correct = self.correct + correct
        self.images = self.images + images
        self.nan_skipped = self.nan_skipped + bad

    def to_plain(self) -> dict[str, float]:
        """The sums as Python numbers (reading the device: a sync)."""
        loss, correct, images, skipped = torch.stack(
            [self.loss, self.correct, self.images, self.nan_skipped]
        ).tolist()
        return {"loss": loss, "correct": correct, "images": int(images),
                "nan_skipped": int(skipped), "train_time": self.train_time,
                "data_time": self.data_time}  # fmt: skip

    def reduced(self) -> tuple[float, float, int, int]:
        """(mean loss, top-1 error, images, skipped steps) over all ranks."""
        totals = torch.stack([self.loss, self.correct, self.images, self.nan_skipped])
        loss, correct, images, skipped = runtime.all_reduce_sum(totals).tolist()
        return loss / max(images, 1), 1.0 - correct / max(images, 1), int(images), int(skipped)


@dataclass
class Position:
    """Where the run is: (epoch, batch) is the next global batch to run (both from 0); the
    sums of the epoch and of the steps since the last steps.jsonl record; the epoch records."""

    sums: Sums
    window: Sums
    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_error: float = math.inf
    elapsed: float = 0.0  # training seconds so far, validation excluded
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Inputs:
    """The data side: datasets, loaders, the training transform, and what was derived from the
    data (crop geometry, the preprocessing stored with the weights, the mean image)."""

    train_ds: Any
    val_ds: Any
    train_loader: DeviceLoader
    val_loader: DeviceLoader
    train_transform: Any
    geometry: dict[str, Any]
    preprocess: Preprocess
    mean_image: torch.Tensor

    def eval_transform(self, crops: int) -> Callable:
        return make_eval_transform(self.preprocess, self.mean_image, crops)


# ------------------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, *, callbacks: Sequence[StepCallback] = ()) -> RunResult:
    """Train (or resume, when `cfg.resume` names a run) the run `cfg` describes (from
    `make_config`, or `alexnet.train.config.resolve`). `callbacks` are called after every step
    with the global step. The process settings a run needs (denormals flushed to zero, glibc
    keeping large blocks) hold while it trains."""
    if cfg.resume == RESUME_AUTO:
        raise UserError(f"resume {RESUME_AUTO!r} is decided by make_config (or resolve)")
    info = runtime.dist_info()
    device = _device(cfg, info)
    with runtime.process_settings():
        generation = runtime.init_distributed(info, device, timeout_s=cfg.dist_timeout)
        alive = True
        try:
            with StopFlag() as stop:
                return _train(cfg, info, device, generation, stop, callbacks)
        except RuntimeError as exc:
            if not (info.enabled and runtime.is_peer_failure(exc)):
                raise
            alive = False
            raise runtime.peer_lost(exc, info) from None
        finally:
            runtime.shutdown_distributed(peers_alive=alive)


def _train(cfg: TrainConfig, info: runtime.DistInfo, device: torch.device, generation: int,
           stop: StopFlag, callbacks: Sequence[StepCallback]) -> RunResult:  # fmt: skip
    """Set the run up (data, checkpoint, model, run dir, SGD, inputs, restored state), then
    its epochs, then the final weights and evaluation."""
    cfg = dataclasses.replace(cfg, channels_last=resolve_channels_last(cfg, device.type))
    _set_backends(cfg, device)
    train_ds, val_ds = _open_data(cfg, info)
    saved = load_checkpoint(cfg.resume, "cpu") if cfg.resume else None
    if saved is not None:
        cfg = reconcile_world_size(cfg, saved, info)
    net = build_model(cfg, train_ds)
    if saved is not None:
        check_compatible(saved, cfg.resume, model_config=net.config, data=train_ds.fingerprint)
    run = RunDir(cfg.output_dir)
    _check_run_dir(run, net, info, resuming=saved is not None)
    placed, forward = _place(cfg, net, device, info)
    optimizer = make_optimizer(  # fused on CUDA: one launch, skips a NaN step on the device
        placed.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov, fused=device.type == "cuda" and not cfg.model_parallel,
    )  # fmt: skip
    schedule = make_schedule(cfg)
    inputs = _inputs(cfg, train_ds, val_ds, net, info, device)
    steps = len(inputs.train_loader)
    if steps == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images are fewer than one global batch of "
            f"{cfg.batch_size * info.world_size}; lower --batch-size"
        )
    pos = Position(Sums.of(device), Sums.of(device))
    if saved is not None:
        _restore(saved, placed, optimizer, schedule, pos, cfg.seed, info, device)
    else:
        torch.manual_seed(step_seed(cfg.seed, 0, 0, info.rank, stream=1))  # dropout, per rank
    say = _say if info.is_main else _quiet

    def save() -> None:  # every rank at the same step: their RNG states gathered, rank 0 writes
        rank_rng = runtime.gather_objects(capture_rng_state()) if info.enabled else None
        if info.is_main:
            ckpt = _checkpoint(cfg, info, net.config, inputs, placed, optimizer, schedule, pos,
                               rank_rng)  # fmt: skip
            save_checkpoint(run.checkpoint, ckpt)

    def write_weights(name: str, extra: dict[str, Any]) -> None:  # RUN/name, with metadata
        if info.is_main:
            save_weights(run.path / name, _paper_state(placed), model_config=net.config,
                         classes=train_ds.classes, preprocess=inputs.preprocess,
                         mean_image=inputs.mean_image, extra={"recipe": cfg.recipe, **extra})  # fmt: skip

    board = None
    if info.is_main:
        atomic_write_text(run.config, config_json(
            cfg, model=net.config, geometry=inputs.geometry,
            preprocess=inputs.preprocess.to_json(), classes=list(train_ds.classes),
            world_size=info.world_size, data_fingerprint=train_ds.fingerprint,
        ))  # fmt: skip
        board = TensorBoard(run.path, purge_step=pos.global_step or None)
        _record_start(run, cfg, info, pos, saved, generation, steps)
        _trim_step_log(run, pos.global_step if saved is not None else 0)
    try:
        if saved is not None and pos.epoch >= cfg.epochs and run.is_finished():
            say(f"{run.path}: finished already ({cfg.epochs} epochs); nothing to train")
            return run.result()
        status = "finished"
        poll = POLL_STEPS if optimizer.defaults.get("fused") else 1
        while pos.epoch < cfg.epochs:
            status = train_one_epoch(
                forward, optimizer, schedule, inputs, pos, cfg, info, device, run,
                poll=poll, stop=stop, save=save, callbacks=callbacks,
            )  # fmt: skip
            if status != "stopped":
                val = validate(placed, inputs.val_loader, inputs.eval_transform(cfg.eval_crops),
                               cfg, train_ds.num_classes)  # fmt: skip
                record = end_epoch(pos, val, steps, optimizer, schedule, write_weights)
                if board is not None:
                    board.scalars(pos.global_step, {k: v for k, v in record.items()
                                                    if k != "epoch"})  # fmt: skip
                say(_epoch_line(record, steps, pos.batch))
                if record["complete"]:
                    pos.epoch, pos.batch = pos.epoch + 1, 0
                    pos.sums = Sums.of(device)
                save()
                if info.is_main:
                    atomic_write_text(run.metrics, "".join(json.dumps(r) + "\n"
                                                           for r in pos.history))  # fmt: skip
            if status == "stopped" or stop.signal:  # a signal during the epoch's end: done
                save()
                say(f"stopped by {stop.signal or 'signal'} at epoch {pos.epoch + 1} step "
                    f"{pos.batch}/{steps}; checkpoint saved; resume with: alexnet train "
                    f"--resume {run.path}")  # fmt: skip
                return RunResult("stopped", run.path, list(pos.history),
                                 stop_signal=stop.signum or 15)  # fmt: skip
            if status == "max_steps":
                break
        result = _finish(cfg, info, placed, inputs, pos, run, status, write_weights, say)
        result.stop_signal = stop.signum
        return result
    finally:
        if board is not None:
            board.close()


# ------------------------------------------------------------------------- set-up
def _device(cfg: TrainConfig, info: runtime.DistInfo) -> torch.device:
    """This process's device: --model-parallel's first, else --device (torchrun: LOCAL_RANK)."""
    if cfg.model_parallel:
        devices = [d.strip() for d in cfg.model_parallel.split(",")]
        if len(devices) != 2 or info.enabled:
            raise UserError("--model-parallel takes two devices, DEV0,DEV1, in a single process")
        return runtime.resolve_device(devices[0], info)
    return runtime.resolve_device(cfg.device, info)


def _set_backends(cfg: TrainConfig, device: torch.device) -> None:
    """Deterministic algorithms, or cuDNN's autotuner on CUDA; TF32 matmuls on CUDA as cuDNN's
    convolutions already use by default (`--no-tf32` turns both off)."""
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        torch.backends.cudnn.allow_tf32 = cfg.tf32


def _open_data(cfg: TrainConfig, info: runtime.DistInfo):
    """The train and validation splits (--train-limit / --val-limit), the same on every rank."""
    train_ds, val_ds = open_dataset(cfg.data, "train"), open_dataset(cfg.data, "val")
    if len(train_ds) == 0:
        raise UserError(f"{cfg.data}: the train split holds no images; nothing to train on")
    if 0 < cfg.train_limit < len(train_ds):
        train_ds = inputs_mod.FirstImages(train_ds, cfg.train_limit)
    if 0 < cfg.val_limit < len(val_ds):
        val_ds = inputs_mod.FirstImages(val_ds, cfg.val_limit)
    if info.enabled:  # every rank must read the same packed dataset (its fingerprint)
        seen = runtime.gather_objects((train_ds.fingerprint, socket.gethostname()))
        other = [f"rank {r} on {host} ({fp})" for r, (fp, host) in enumerate(seen)
                 if fp != seen[0][0]]  # fmt: skip
        if other:
            raise UserError(
                f"{cfg.data}: not the same packed dataset on every rank: rank 0 on {seen[0][1]} "
                f"has fingerprint {seen[0][0]}, but " + ", ".join(other) + " (copy the same "
                "dataset to every node, at the same path)"
            )
    return train_ds, val_ds


def build_model(cfg: TrainConfig, train_ds) -> nn.Module:
    """The network from the seed (identical on every rank). With `init_like` (experiments),
    every tensor whose name and shape it shares with the model built with those options and
    the same seed starts from that model's value, so variants share their starting weights."""
    torch.manual_seed(cfg.seed)
    options = inputs_mod.model_options(cfg, train_ds.image_size, train_ds.stats)
    net = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    if cfg.init_like is not None:
        like = dataclasses.replace(cfg, model_options=dict(cfg.init_like))
        options = inputs_mod.model_options(like, train_ds.image_size, train_ds.stats)
        torch.manual_seed(cfg.seed)
        reference = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
        own = net.state_dict()
        net.load_state_dict({k: v for k, v in reference.state_dict().items()
                             if k in own and own[k].shape == v.shape}, strict=False)  # fmt: skip
    return net


def _check_run_dir(run: RunDir, net: nn.Module, info: runtime.DistInfo, *, resuming: bool) -> None:
    """Rank 0 checks RUN (`check_run_dir`); every rank raises its error."""
    error = None
    if info.is_main:
        try:
            params = sum(p.numel() * p.element_size() for p in net.parameters())
            check_run_dir(run, 6 * params + (16 << 20), resuming=resuming)
        except UserError as exc:
            error = str(exc)
    error = runtime.broadcast_object(error)
    if error:
        raise UserError(error)


def check_run_dir(run: RunDir, need_bytes: int, *, resuming: bool) -> None:
    """Create RUN and fail early, in one line, if it cannot hold the run's files (`need_bytes`:
    a checkpoint of weights + momentum, twice during its atomic replace, and 2 weight files).
    A run already there is never overwritten: the error says how to continue it."""
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{run.path}: cannot create the run directory ({exc.strerror})") from None
    if not resuming and run.has_checkpoint():
        elastic = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0
        how = (
            f"under torchrun --max-restarts give --output-dir {run.path} --resume "
            f"{RESUME_AUTO}, which starts the run or continues it"
            if elastic
            else f"continue it with --resume {run.path} (or --resume {RESUME_AUTO})"
        )
        raise UserError(f"{run.path}: already holds a run ({RunDir.CHECKPOINT}); {how}, or "
                        "choose another --output-dir")  # fmt: skip
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=run.path)
        with os.fdopen(fd, "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{run.path}: not writable ({exc.strerror})") from None
    free = shutil.disk_usage(run.path).free
    if free < need_bytes:
        raise UserError(
            f"{run.path}: only {free / 2**20:.0f} MiB free, the run needs about "
            f"{need_bytes / 2**20:.0f} MiB for checkpoints and weights"
        )


def _place(cfg: TrainConfig, net: nn.Module, device: torch.device, info: runtime.DistInfo):
    """(the model on its device(s), what the step calls): the placed model is what validation
    calls (never DDP: ranks may hold unequal numbers of validation batches, and DDP's forward
    is a collective); the step calls it DDP-wrapped under torchrun, compiled with --compile."""
    if cfg.model_parallel:
        devices = tuple(d.strip() for d in cfg.model_parallel.split(","))
        placed = TwoDeviceAlexNet.from_paper(net, devices=devices)
    else:
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        placed = net.to(device=device, memory_format=memory_format)
    forward = placed
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(placed, device_ids=ids)
    return placed, torch.compile(forward) if cfg.compile else forward


def _paper_state(placed: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict in the paper layout (also for the two-device split)."""
    if isinstance(placed, TwoDeviceAlexNet):
        return placed.paper_state_dict()
    return placed.state_dict()


def _inputs(cfg: TrainConfig, train_ds, val_ds, net, info, device) -> Inputs:
    """The crop geometry, preprocessing, transforms and loaders of the data (paper §2, §4.1)."""
    in_channels = int(getattr(net, "in_channels", 3))
    geometry = inputs_mod.plan_geometry(
        train_ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    stats = train_ds.stats
    preprocess = inputs_mod.preprocess_for(
        cfg, geometry, in_channels, stats, min(train_ds.image_size)
    )

    def loader(ds, shuffle: bool) -> DeviceLoader:
        return DeviceLoader(
            ds, cfg.batch_size, shuffle=shuffle, drop_last=shuffle, seed=cfg.seed,
            rank=info.rank, world_size=info.world_size, device=device, workers=cfg.workers,
        )  # fmt: skip

    train_transform = inputs_mod.make_train_transform(cfg, geometry, in_channels, stats)
    if device.type == "cuda":  # batches made in the model's dtype and layout (the CPU: fp32)
        dtype = torch.bfloat16 if cfg.amp else None
        train_transform.produce(dtype, channels_last=bool(cfg.channels_last))
    mean_image = torch.as_tensor(stats.mean_image, dtype=torch.float32)
    return Inputs(train_ds, val_ds, loader(train_ds, True), loader(val_ds, False),
                  train_transform, geometry, preprocess, mean_image)  # fmt: skip


def _restore(saved: Checkpoint, placed: nn.Module, optimizer: torch.optim.Optimizer,
             schedule: Schedule, pos: Position, seed: int, info: runtime.DistInfo,
             device: torch.device) -> None:  # fmt: skip
    """A checkpoint's state into the model, SGD, schedule, position and every RNG."""
    if isinstance(placed, TwoDeviceAlexNet):
        placed.load_paper_state_dict(saved.model)
    else:
        placed.load_state_dict(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    schedule.load_state_dict(saved.schedule)
    for name in ("epoch", "batch", "global_step", "best_error", "elapsed"):
        setattr(pos, name, getattr(saved, name))
    pos.sums, pos.window = Sums.of(device, saved.epoch_sums), Sums.of(device, saved.step_window)
    pos.history = list(saved.history)
    rank, same_world = info.rank, saved.world_size == info.world_size
    if saved.rank_rng is not None and same_world:
        restore_rng_state(saved.rank_rng[rank])
    elif rank == 0 and same_world:
        restore_rng_state(saved.rng)
    else:  # a rank the checkpoint did not save: reseeded from the position
        torch.manual_seed(step_seed(seed, 0, pos.global_step, rank, 1))


def _record_start(run: RunDir, cfg: TrainConfig, info: runtime.DistInfo, pos: Position,
                  saved: Checkpoint | None, generation: int, steps: int) -> None:  # fmt: skip
    """One line in RUN/starts.jsonl: the workers' generation (1, 2, ... under torchrun's agent
    store, `alexnet.runtime`), rank 0's agent's restart count (torchrun counts per node), world
    size, the step resumed at; and on a resume, one line on stderr."""
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    record = {"time": round(time.time(), 3), "resumed": saved is not None,
              "generation": generation, "restart_count": restart,
              "world_size": info.world_size, "global_step": pos.global_step, "epoch": pos.epoch,
              "batch": pos.batch, "batch_size": cfg.batch_size}  # fmt: skip
    moved = saved is not None and saved.world_size != info.world_size
    if moved:
        record["previous_world_size"] = saved.world_size
    _append_jsonl(run.starts, record)
    if saved is not None:
        _say(
            f"resuming {run.path} at epoch {pos.epoch + 1} step {pos.batch}/{steps} (global step "
            f"{pos.global_step}), {info.world_size} process(es)"
            + (f" (was {saved.world_size} processes)" if moved else "")
            + (f", torchrun restart {restart}" if restart else "")
        )


def _trim_step_log(run: RunDir, last_step: int) -> None:
    """RUN/steps.jsonl holds exactly the records up to the restored step (none when fresh)."""
    if run.steps.exists():
        keep = [r for r in run.read_steps() if r["step"] <= last_step]
        atomic_write_text(run.steps, "".join(json.dumps(r) + "\n" for r in keep))


# --------------------------------------------------------------------------- epoch
def train_one_epoch(
    forward: Callable, optimizer: torch.optim.Optimizer, schedule: Schedule, inputs: Inputs,
    pos: Position, cfg: TrainConfig, info: runtime.DistInfo, device: torch.device, run: RunDir,
    *, poll: int, stop: StopFlag, save: Callable[[], None], callbacks: Sequence[StepCallback],
) -> str:  # fmt: skip
    """Run the current epoch's remaining steps; the ranks agree on a stop every `poll` steps
    and wherever the run may stop or save. Returns "finished" at the epoch's end, "stopped"
    after a signal, "max_steps" when --max-steps is reached."""
    steps = len(inputs.train_loader)
    inputs.train_loader.set_epoch(pos.epoch)
    bar = Progress(info.is_main, steps, pos.batch, f"epoch {pos.epoch + 1}/{cfg.epochs}")
    t0, timed_images, status, shown = time.perf_counter(), 0, "finished", float("nan")
    epoch, rank = pos.epoch, info.rank

    def generator(k: int) -> torch.Generator:  # batch k's augmentation: a resume draws the same
        return step_generator(device, step_seed(cfg.seed, epoch, k, rank))

    batches = inputs.train_loader.iterate(
        start_batch=pos.batch, transform=inputs.train_transform, generator=generator
    )
    for x, labels, waited in _timed(batches):
        pos.sums.data_time += waited
        pos.window.data_time += waited
        set_lr(optimizer, schedule.lr(pos.epoch, pos.batch, steps))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = train_step(forward, optimizer, x, labels, pos, cfg, device, info.enabled)
        timed_images += labels.shape[0] * info.world_size
        pos.batch += 1
        pos.global_step += 1
        now = time.perf_counter()
        logged = bool(cfg.log_every and pos.global_step % cfg.log_every == 0)
        every = cfg.checkpoint_every
        limit = bool(cfg.max_steps and pos.global_step >= cfg.max_steps)
        boundary = (pos.batch == steps or limit or logged or pos.global_step % poll == 0
                    or bool(every and pos.global_step % every == 0))  # fmt: skip
        signalled = False
        if boundary:
            signalled, shown = _agree(stop, pos, loss, cfg.on_nan, run, every_step=poll == 1)
        if logged:
            _log_steps(pos, steps, cfg.batch_size * info.world_size, pos.elapsed + now - t0,
                       run if info.is_main else None)  # fmt: skip
        for callback in callbacks:
            callback(pos.global_step)
        bar.update(pos.batch, shown, timed_images / max(now - t0, 1e-9), now)
        if signalled or limit:
            status = "stopped" if signalled else "max_steps"
            break
        if every and pos.global_step % every == 0 and pos.batch < steps:
            elapsed = time.perf_counter() - t0
            pos.sums.train_time += elapsed
            pos.elapsed += elapsed
            t0, timed_images = time.perf_counter(), 0
            save()
    bar.close()
    elapsed = time.perf_counter() - t0
    pos.sums.train_time += elapsed
    pos.elapsed += elapsed
    return status


def _timed(batches: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor, float]]:
    """(images, labels, seconds waited for them) of each batch."""
    while True:
        waited = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        yield *batch, time.perf_counter() - waited


def train_step(forward: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               labels: torch.Tensor, pos: Position, cfg: TrainConfig, device: torch.device,
               distributed: bool) -> torch.Tensor:  # fmt: skip
    """One SGD step (paper §5) on one augmented batch x (N, C, H, W) with labels (N,). Nothing
    is read on the host: a non-finite loss (on any rank) skips the update and adds nothing to
    the sums but a skipped step. Returns the loss (NaN when skipped), a device tensor."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        logits = forward(x)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    bad = (~torch.isfinite(loss.detach())).double()
    if distributed:
        bad = runtime.all_reduce_sum(bad).clamp_(max=1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if optimizer.defaults.get("fused"):
        skip_if_nonfinite(optimizer, bad)  # fused SGD skips on the device
        optimizer.step()
    elif not bad.item():  # per-parameter SGD (the CPU) decides on the host: free there
        optimizer.step()
    good = 1.0 - bad
    value = torch.where(bad > 0, 0.0, loss.detach().double())
    correct = (logits.detach().argmax(1) == labels).sum().double() * good
    images = labels.shape[0] * good
    pos.sums.add(value, correct, images, bad)
    pos.window.add(value, correct, images, bad)
    return torch.where(bad > 0, float("nan"), loss.detach())


def _agree(stop: StopFlag, pos: Position, loss: torch.Tensor, on_nan: str, run: RunDir,
           *, every_step: bool) -> tuple[bool, float]:  # fmt: skip
    """Whether any rank was signalled to stop, and the loss to show; a non-finite loss since
    the last agreement stops the run (--on-nan stop, one line) or is counted (skip)."""
    flags = torch.stack([torch.tensor(1.0 if stop.signal else 0.0, device=loss.device),
                         pos.window.nan_skipped.float(), loss.detach().float()])  # fmt: skip
    flags[:2] = runtime.all_reduce_sum(flags[:2].clone())
    signalled, skipped, value = flags.tolist()
    if skipped > 0 and on_nan == "stop":
        where = (f"at epoch {pos.epoch + 1} step {pos.batch - 1} (global step "
                 f"{pos.global_step - 1})" if every_step else "since the previous check (those "
                 f"updates were skipped) (global step {pos.global_step})")  # fmt: skip
        note = (f"the last good checkpoint {run.checkpoint} is intact" if run.has_checkpoint()
                else "no checkpoint was written yet")  # fmt: skip
        raise UserError(f"non-finite loss {where}; stopped, {note}; lower --lr or use --on-nan "
                        "skip")  # fmt: skip
    return signalled > 0, value


def _log_steps(pos: Position, steps: int, global_batch: int, train_seconds: float,
               run: RunDir | None) -> None:  # fmt: skip
    """Append the last `log_every` steps' training loss and error to RUN/steps.jsonl."""
    loss, error, images, _ = pos.window.reduced()
    record = {
        "step": pos.global_step,
        "epoch": round(pos.epoch + pos.batch / steps, 6),
        "images": pos.global_step * global_batch,
        "time": round(train_seconds, 4),
        "wall": round(time.time(), 3),  # the clock time it was logged (restarts are timed so)
        "train_loss": loss,
        "train_top1_error": error,
        "window_images": images,
        "data_time": round(pos.window.data_time, 6),
    }
    pos.window = Sums.of(pos.window.loss.device)
    if run is not None:
        _append_jsonl(run.steps, record)


# ---------------------------------------------------------------------- evaluation
def validate(model: nn.Module, loader: DeviceLoader, transform: Callable, cfg: TrainConfig,
             num_classes: int, crops: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Top-1/top-5 error and loss of `loader`'s images (every image counted once over the
    ranks), with `crops` crops (default: the per-epoch validation's)."""
    loader.set_epoch(0)
    return evaluate(model, loader.iterate(), transform, crops=crops or cfg.eval_crops,
                    num_classes=num_classes, amp=cfg.amp, channels_last=cfg.channels_last)  # fmt: skip


def end_epoch(pos: Position, val: dict[str, Any], steps: int, optimizer, schedule: Schedule,
              write_weights: Callable) -> dict[str, Any]:  # fmt: skip
    """Record the epoch (partial when --max-steps cut it), step the plateau schedule, keep the
    best weights. Returns the epoch's metrics record, appended to `pos.history`."""
    loss, error, images, skipped = pos.sums.reduced()
    complete, sums = pos.batch == steps, pos.sums
    record = {
        "epoch": pos.epoch + 1,
        "step": pos.global_step,
        "complete": complete,
        "lr": optimizer.param_groups[0]["lr"],
        "train_loss": loss,
        "train_top1_error": error,
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        "val_loss": val["loss"],
        "val_images": val["images"],
        "images_per_sec": images / max(sums.train_time, 1e-9),
        "nan_skipped": skipped,
        "data_stall": sums.data_time / max(sums.train_time, 1e-9),
        "time": sums.train_time,
        "elapsed": pos.elapsed,
    }
    if complete and schedule.epoch_end(val["top1_error"]):
        record["lr_reduced_to"] = schedule.lr(pos.epoch + 1, 0, 1)
    if val["top1_error"] < pos.best_error:
        pos.best_error = val["top1_error"]
        write_weights(RunDir.BEST, {"epoch": record["epoch"], **val})
    pos.history.append(record)
    return record


def _epoch_line(record: dict[str, Any], steps: int, batch: int) -> str:
    partial = "" if record["complete"] else f" (partial: {batch}/{steps} steps)"
    top5 = record["val_top5_error"]
    return (
        f"epoch {record['epoch']}{partial}: lr {record['lr']:.4g}, train loss "
        f"{record['train_loss']:.4f}, val error top-1 {100 * record['val_top1_error']:.2f} %"
        + (f" top-5 {100 * top5:.2f} %" if top5 is not None else "")
        + f", {record['images_per_sec']:.0f} img/s"
    )


def _finish(cfg: TrainConfig, info: runtime.DistInfo, placed: nn.Module, inputs: Inputs,
            pos: Position, run: RunDir, status: str, write_weights: Callable,
            say: Callable[[str], None]) -> RunResult:  # fmt: skip
    """Final weights, the final evaluation (RUN/eval.json, with the test crops, paper §4.1)
    and the result."""
    write_weights(RunDir.WEIGHTS, {"epoch": pos.epoch, "global_step": pos.global_step})
    record = pos.history[-1] if pos.history else {}
    num_classes, test = inputs.train_ds.num_classes, inputs.eval_transform(cfg.test_crops)
    if cfg.test_crops != cfg.eval_crops or not record:
        final = validate(placed, inputs.val_loader, test, cfg, num_classes, cfg.test_crops)
    else:
        final = {k: record.get(f"val_{k}") for k in ("top1_error", "top5_error", "loss")}
        final = {"images": len(inputs.val_ds), "crops": cfg.eval_crops, **final}
    if cfg.train_eval:  # the training side of a train-test gap (paper §4: overfitting)
        subset = inputs_mod.FirstImages(inputs.train_ds, min(cfg.train_eval,
                                                             len(inputs.train_ds)))  # fmt: skip
        loader = DeviceLoader(
            subset, cfg.batch_size, shuffle=False, drop_last=False, rank=info.rank,
            world_size=info.world_size, device=inputs.train_loader.device, workers=cfg.workers,
        )  # fmt: skip
        train = validate(placed, loader, test, cfg, num_classes, cfg.test_crops)
        final["train"] = {k: train.get(k) for k in ("images", "crops", "top1_error",
                                                    "top5_error", "loss")}  # fmt: skip
    if info.is_main:
        atomic_write_text(run.eval_json, json.dumps(final, indent=2) + "\n")
    top5 = final.get("top5_error")
    say(
        f"done ({status}): {run.weights}; val error top-1 {100 * final['top1_error']:.2f} %"
        + (f", top-5 {100 * top5:.2f} %" if top5 is not None else "")
        + f" ({final['crops']} crop(s))"
    )
    return RunResult(status, run.path, list(pos.history), final, run.weights, pos.elapsed)


# ---------------------------------------------------------------------- checkpoint
def _checkpoint(cfg: TrainConfig, info: runtime.DistInfo, model_config: dict, inputs: Inputs,
                placed: nn.Module, optimizer, schedule: Schedule, pos: Position,
                rank_rng: list[dict[str, Any]] | None) -> Checkpoint:  # fmt: skip
    """The run as it is now (`rank_rng`: every rank's RNG, by rank; None: this process's)."""
    rng = capture_rng_state()
    return Checkpoint(
        model_config=model_config,
        data_fingerprint=inputs.train_ds.fingerprint,
        config=cfg.to_json(),
        classes=list(inputs.train_ds.classes),
        preprocess=inputs.preprocess.to_json(),
        mean_image=inputs.mean_image,
        model=_paper_state(placed),
        optimizer=optimizer.state_dict(),
        schedule=schedule.state_dict(),
        epoch=pos.epoch,
        batch=pos.batch,
        global_step=pos.global_step,
        best_error=pos.best_error,
        elapsed=pos.elapsed,
        epoch_sums=pos.sums.to_plain(),
        step_window=pos.window.to_plain(),
        history=pos.history,
        rng=rng,
        rank_rng=rank_rng if rank_rng is not None else [rng],
        world_size=info.world_size,
        global_batch=cfg.batch_size * info.world_size,
    )


# ------------------------------------------------------------------- what people see
def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    pass


def _append_jsonl(path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class TensorBoard:
    """TensorBoard scalars in RUN; warns once and does nothing when tensorboard is missing."""

    def __init__(self, run, purge_step: int | None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            warnings.warn(f"TensorBoard events disabled: {exc} (pip install tensorboard)",
                          stacklevel=2)  # fmt: skip
            return
        self.writer = SummaryWriter(log_dir=str(run), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if self.writer is not None and isinstance(value, int | float):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class Progress:
    """tqdm bar over one epoch's steps (loss, images/s, ETA) on rank 0 at an interactive
    terminal; otherwise a plain line every `every` seconds."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str, every: float = 30.0):
        self.enabled, self.bar, self.every, self.last = enabled, None, every, 0.0
        if enabled and sys.stderr.isatty():
            self.bar = progress_bar(total=total, initial=initial, desc=desc, unit="step",
                                    dynamic_ncols=True, mininterval=0.5, leave=False)  # fmt: skip
        self.total, self.desc = total, desc

    def update(self, step: int, loss: float, images_per_sec: float, now: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_sec:.0f}", refresh=False)
        elif now - self.last >= self.every:
            self.last = now
            print(f"{self.desc} step {step}/{self.total} loss {loss:.4f} {images_per_sec:.0f} "
                  "img/s", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
