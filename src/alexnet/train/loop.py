"""Training (paper §5): `fit` sets a run up, runs its epochs of SGD steps, validates after each,
checkpoints so that a resumed run repeats an uninterrupted one to the bit, and writes the final
weights and evaluation (the files: `alexnet.rundir`). DDP through torchrun; SIGTERM / SIGINT stop
after the current step with a checkpoint. The step's sums stay on the device until a log, epoch
or checkpoint boundary."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexnet import checkpoint, runtime
from alexnet.data.packed import open_dataset
from alexnet.errors import Param, UserError
from alexnet.evaluate import evaluate, make_eval_transform
from alexnet.fileio import atomic_write_text, rounded
from alexnet.interrupts import StopFlag
from alexnet.models.registry import get_model
from alexnet.progress import progress_bar
from alexnet.rundir import RunDir, RunResult
from alexnet.train import finetune
from alexnet.train.config import RESUME_AUTO, TrainConfig, config_json, resolve_channels_last
from alexnet.train.inputs import Inputs, make_inputs, model_options
from alexnet.train.schedules import make_schedule
from alexnet.weights.safetensors_io import save_safetensors

StepCallback = Callable[[int], None]  # called after every step with the global step (tests)
POLL_STEPS = 50  # fused-SGD steps between the ranks' agreement on stop signals and NaNs
# (fused SGD skips a non-finite step on the device; other optimizers agree after every step)
EPOCH, WINDOW = 0, 1  # the rows of Position.sums: the epoch, the steps since steps.jsonl
SUMS = ("loss", "correct", "images", "nan_skipped")  # its columns (loss: mean loss x images)
POSITION = ("epoch", "batch", "global_step", "best_error", "elapsed", "history")  # checkpointed


@dataclass
class Position:
    """Where the run is: (epoch, batch) the next global batch to run (from 0); `sums` (2, 4)
    float64 on the device, rows EPOCH and WINDOW, columns SUMS; seconds; the epoch records."""

    sums: torch.Tensor
    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_error: float = math.inf
    elapsed: float = 0.0  # training seconds so far, validation excluded
    train_time: float = 0.0  # the epoch's
    data_time: list[float] = field(default_factory=lambda: [0.0, 0.0])  # epoch, window
    history: list[dict[str, Any]] = field(default_factory=list)

    def plain(self, row: int) -> dict[str, float]:
        """A row of sums as the checkpoint holds it (reading the device: a sync)."""
        loss, correct, images, skipped = self.sums[row].tolist()
        train_time = self.train_time if row == EPOCH else 0.0
        return {
            "loss": loss,
            "correct": correct,
            "images": int(images),
            "nan_skipped": int(skipped),
            "train_time": train_time,
            "data_time": self.data_time[row],
        }

    def reduced(self, row: int) -> tuple[float, float, int, int]:
        """(mean loss, top-1 error, images, skipped steps) of a row over all ranks."""
        loss, correct, images, skipped = runtime.all_reduce_sum(self.sums[row].clone()).tolist()
        return loss / max(images, 1), 1.0 - correct / max(images, 1), int(images), int(skipped)


# --------------------------------------------------------------------------------- fit
def fit(cfg: TrainConfig, *, callbacks: Sequence[StepCallback] = ()) -> RunResult:
    """Train (or resume) the run `cfg` describes (from `make_config`); `callbacks` are called
    after every step with the global step. The process settings a run needs (denormals flushed
    to zero, glibc keeping large blocks) hold while it trains."""
    if cfg.resume == RESUME_AUTO:
        raise UserError(f"resume {RESUME_AUTO!r} is decided by make_config (or resolve)")
    if cfg.recipe == "finetune" and not cfg.init_from:
        raise UserError(
            Param("recipe"),
            " finetune starts from trained weights: give ",
            Param("init_from"),
            " WEIGHTS",
        )
    info = runtime.dist_info()
    if cfg.model_parallel and info.enabled:
        raise UserError(
            Param("model_parallel"), " takes two devices, DEV0,DEV1, in a single process"
        )
    device = runtime.resolve_device((cfg.model_parallel or cfg.device).split(",")[0], info)
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


def _train(cfg, info, device, generation: int, stop: StopFlag, callbacks) -> RunResult:
    """Set the run up, in the order it happens; then its epochs; then the final weights."""
    cfg = dataclasses.replace(cfg, channels_last=resolve_channels_last(cfg, device.type))
    _set_backends(cfg, device)
    train_ds, val_ds = _open_data(cfg, info)
    saved = checkpoint.load_checkpoint(RunDir(cfg.resume).checkpoint) if cfg.resume else None
    if saved is not None:
        cfg = checkpoint.reconcile_world_size(cfg, saved, info)
    net = build_model(cfg, train_ds)
    say = _say if info.is_main else _quiet
    if saved is not None:
        fingerprint = train_ds.fingerprint
        checkpoint.check_compatible(saved, cfg.resume, model_config=net.config, data=fingerprint)
    stats = finetune.prepare(net, cfg.init_from, cfg.freeze, train_ds, saved, say)
    run = RunDir(cfg.output_dir)
    _check_run_dir(run, net, info, resuming=saved is not None)
    placed, forward = _place(cfg, net, device, info)
    fused = device.type == "cuda" and not cfg.model_parallel  # one launch; skips on the device
    groups = finetune.param_groups(placed, cfg.head_lr_factor)
    optimizer = make_optimizer(groups, cfg, fused=fused)
    schedule = make_schedule(cfg)
    inputs = make_inputs(cfg, train_ds, val_ds, stats, net, info, device)
    pos = Position(torch.zeros(2, len(SUMS), dtype=torch.float64, device=device))
    if saved is not None:
        _restore(saved, placed, optimizer, schedule, pos, cfg, info)
    else:  # dropout, per rank
        torch.manual_seed(checkpoint.step_seed(cfg.seed, 0, 0, info.rank, stream=1))
    save = functools.partial(_save, run, cfg, info, placed, optimizer, schedule, pos, inputs)
    write_weights = functools.partial(_write_weights, run, cfg, info, placed, inputs)
    callbacks = [*callbacks, _plan(cfg, len(inputs.train_loader), info, device, say)]
    board = _start(run, cfg, info, pos, saved, generation, inputs) if info.is_main else None
    try:
        if saved is not None and pos.epoch >= cfg.epochs and run.is_finished():
            say(f"{run.path}: finished already ({cfg.epochs} epochs); nothing to train")
            return run.result()
        status = "finished"
        while pos.epoch < cfg.epochs and status != "max_steps":
            status = train_one_epoch(
                forward, optimizer, schedule, inputs, pos, cfg, info, run, stop, save, callbacks
            )
            if status != "stopped":
                end_epoch(placed, optimizer, schedule, inputs, pos, cfg, write_weights, board, say)
                save()
                if info.is_main:
                    atomic_write_text(run.metrics, "".join(map(_jsonl, pos.history)))
            if status == "stopped" or stop.signal:  # a signal during the epoch's end: done
                save()
                say(
                    f"stopped by {stop.signal or 'signal'} at epoch {pos.epoch + 1} step "
                    f"{pos.batch}/{len(inputs.train_loader)}; checkpoint saved; resume with: "
                    f"alexnet train --resume {run.path}"
                )
                return RunResult(
                    "stopped", run.path, list(pos.history), stop_signal=stop.signum or 15
                )
        write_weights(RunDir.WEIGHTS, {"epoch": pos.epoch, "global_step": pos.global_step})
        final = final_evaluation(placed, inputs, pos.history, cfg, info, run, status, say)
        return RunResult(
            status, run.path, list(pos.history), final, run.weights, pos.elapsed, stop.signum
        )
    finally:
        if board is not None:
            board.close()


# ------------------------------------------------------------------------------ set-up
def _set_backends(cfg: TrainConfig, device: torch.device) -> None:
    """Deterministic algorithms or cuDNN's autotuner; TF32 matmuls and convolutions on CUDA."""
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
    if cfg.train_limit:
        train_ds = train_ds.head(cfg.train_limit)
    if cfg.val_limit:
        val_ds = val_ds.head(cfg.val_limit)
    seen = runtime.gather_objects((train_ds.fingerprint, socket.gethostname()))
    other = [f"rank {r} on {host} ({fp})" for r, (fp, host) in enumerate(seen) if fp != seen[0][0]]
    if other:
        raise UserError(
            f"{cfg.data}: not the same packed dataset on every rank: rank 0 on {seen[0][1]} has "
            f"fingerprint {seen[0][0]}, but {', '.join(other)} (copy the same dataset to every "
            "node, at the same path)"
        )
    return train_ds, val_ds


def build_model(cfg: TrainConfig, train_ds) -> nn.Module:
    """The network from the seed (identical on every rank). With `init_like` (experiments),
    every tensor whose name and shape it shares with the model built with those options and
    the same seed starts from that model's value, so variants share their starting weights."""
    nets = []
    for options in (cfg.model_options, cfg.init_like):
        if options is not None:
            like = dataclasses.replace(cfg, model_options=dict(options))
            torch.manual_seed(cfg.seed)
            kw = model_options(like, train_ds.image_size, train_ds.stats)
            nets.append(get_model(cfg.model, num_classes=train_ds.num_classes, **kw))
    net, *reference = nets
    if reference:
        own, theirs = net.state_dict(), reference[0].state_dict()
        shared = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        net.load_state_dict(shared, strict=False)
    return net


def _check_run_dir(run: RunDir, net: nn.Module, info: runtime.DistInfo, *, resuming: bool) -> None:
    """Rank 0 creates RUN and fails early if it cannot hold the run's files (a checkpoint of
    weights + momentum twice, 2 weight files) or holds another run; every rank raises it."""
    error = None
    if info.is_main:
        try:
            params = sum(p.numel() * p.element_size() for p in net.parameters())
            _check_dir(run, 6 * params + (16 << 20), resuming=resuming)
        except UserError as exc:
            error = exc.args
    if error := runtime.broadcast_object(error):
        raise UserError(*error)


def _check_dir(run: RunDir, need_bytes: int, *, resuming: bool) -> None:
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{run.path}: cannot create the run directory ({exc.strerror})") from None
    if not resuming and run.has_checkpoint():
        resume = Param("resume")
        how = ("continue it with ", resume, f" {run.path} (or ", resume, f" {RESUME_AUTO})")
        if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0:
            how = ("under torchrun --max-restarts give ", Param("output_dir"), f" {run.path} ")
            how += (resume, f" {RESUME_AUTO}, which starts the run or continues it")
        raise UserError(
            f"{run.path}: already holds a run ({RunDir.CHECKPOINT}); ",
            *how,
            ", or choose another ",
            Param("output_dir"),
        )
    others = sorted(
        p.name for p in run.path.iterdir() if not p.name.startswith(".") and not run.owns(p)
    )
    if not resuming and others and not run.config.exists():
        raise UserError(
            f"{run.path}: not empty and not a run directory (it holds {', '.join(others[:3])}"
            + (", ..." if len(others) > 3 else "")
            + "); choose a new or empty ",
            Param("output_dir"),
        )
    try:
        atomic_write_text(run.path / ".write-test", "x")
        (run.path / ".write-test").unlink()
    except OSError as exc:
        raise UserError(f"{run.path}: not writable ({exc.strerror})") from None
    free = shutil.disk_usage(run.path).free
    if free < need_bytes:
        raise UserError(
            f"{run.path}: only {free / 2**20:.0f} MiB free, the run needs about "
            f"{need_bytes / 2**20:.0f} MiB for checkpoints and weights"
        )


def make_optimizer(params, cfg: TrainConfig, *, fused: bool = False) -> torch.optim.SGD:
    """SGD with momentum and L2 weight decay on every parameter (paper §5) as `cfg` sets them;
    `params`: parameters or groups (a group's `lr_factor` scales the schedule's rate).
    The paper's rule
        v <- 0.9 v - 0.0005 * eps * w - eps * dL/dw,    w <- w + v
    and torch's
        b <- 0.9 b + (dL/dw + 0.0005 w),                w <- w - eps * b
    are the same trajectory (v = -eps * b) while eps is constant; at a rate change torch applies
    the new eps to the whole b at once, the paper's v decays from the old step size (0.9 per
    step). We use torch's form, as every modern reproduction does. `fused`: torch's fused kernel
    (CUDA), which can skip a step on the device; its momentum buffers start as zeros so that a
    skipped first step cannot leave them uninitialized (the same first step: 0.9 * 0 + grad)."""
    decay = {"momentum": cfg.momentum, "weight_decay": cfg.weight_decay, "nesterov": cfg.nesterov}
    optimizer = torch.optim.SGD(params, lr=cfg.lr, **decay, fused=fused or None)
    if fused and cfg.momentum > 0:
        for group in optimizer.param_groups:
            for p in group["params"]:
                optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return optimizer


def _place(cfg: TrainConfig, net: nn.Module, device: torch.device, info: runtime.DistInfo):
    """(the model on its device(s), what the step calls: DDP under torchrun, compiled with
    --compile). Validation calls the placed model: DDP's forward is a collective."""
    if cfg.model_parallel:
        from alexnet.models.parallel import TwoDeviceAlexNet  # only --model-parallel

        try:
            placed = TwoDeviceAlexNet.from_paper(net, devices=tuple(cfg.model_parallel.split(",")))
        except ValueError as exc:  # the model's options do not split (towers=1, other widths)
            raise UserError(Param("model_parallel"), f": {exc}") from None
    else:
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        placed = net.to(device=device, memory_format=fmt)
    forward = placed
    if info.enabled:
        forward = DistributedDataParallel(
            placed, device_ids=[device.index] if device.type == "cuda" else None
        )
    return placed, torch.compile(forward) if cfg.compile else forward


def _paper_state(placed: nn.Module, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The model's state_dict in the paper layout (also for the two-device split)."""
    return placed.paper_state_dict() if cfg.model_parallel else placed.state_dict()


def _restore(saved, placed, optimizer, schedule, pos: Position, cfg: TrainConfig, info) -> None:
    """A checkpoint's state into the model, SGD, schedule, position and every RNG."""
    load = placed.load_paper_state_dict if cfg.model_parallel else placed.load_state_dict
    load(saved.model)
    optimizer.load_state_dict(saved.optimizer)
    schedule.load_state_dict(saved.schedule)
    for name in POSITION:
        setattr(pos, name, getattr(saved, name))
    for row, sums in ((EPOCH, saved.epoch_sums), (WINDOW, saved.step_window)):
        pos.sums[row] = torch.tensor([float(sums[k]) for k in SUMS], dtype=torch.float64)
        pos.data_time[row] = float(sums["data_time"])
    pos.train_time = float(saved.epoch_sums["train_time"])
    if saved.world_size == info.world_size:
        checkpoint.restore_rng_state(saved.rank_rng[info.rank])
    else:  # another world size: each rank reseeded from the position
        torch.manual_seed(checkpoint.step_seed(cfg.seed, 0, pos.global_step, info.rank, 1))


def _save(run, cfg, info, placed, optimizer, schedule, pos: Position, inputs: Inputs) -> None:
    """RUN/checkpoint.pt: every rank's RNG states gathered, rank 0 writes."""
    rank_rng = runtime.gather_objects(checkpoint.capture_rng_state()) if info.enabled else None
    if info.is_main:
        rng = checkpoint.capture_rng_state()
        ckpt = checkpoint.Checkpoint(
            **inputs.meta,
            data_fingerprint=inputs.train_ds.fingerprint,
            config=cfg.to_json(),
            preprocess=inputs.preprocess.to_json(),
            model=_paper_state(placed, cfg),
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            **{name: getattr(pos, name) for name in POSITION},
            epoch_sums=pos.plain(EPOCH),
            step_window=pos.plain(WINDOW),
            rng=rng,
            rank_rng=rank_rng or [rng],
            world_size=info.world_size,
            global_batch=cfg.batch_size * info.world_size,
        )
        checkpoint.save_checkpoint(run.checkpoint, ckpt)


def _write_weights(run, cfg, info, placed, inputs: Inputs, name: str, extra: dict) -> None:
    """RUN/name, the weights with their metadata (rank 0)."""
    if info.is_main:
        extra = {"recipe": cfg.recipe, **extra}
        state = _paper_state(placed, cfg)
        save_safetensors(
            run.path / name, state, **inputs.meta, preprocess=inputs.preprocess, extra=extra
        )


def _start(run, cfg, info, pos: Position, saved, generation: int, inputs: Inputs):
    """Rank 0's start: RUN/config.json, a line in RUN/starts.jsonl (and on stderr when resuming),
    RUN/steps.jsonl cut back to the restored step; returns the TensorBoard writer."""
    meta = inputs.meta
    about = dict(model=meta["model_config"], geometry=inputs.geometry, classes=meta["classes"])
    about.update(preprocess=inputs.preprocess.to_json(), world_size=info.world_size)
    about.update(data_fingerprint=inputs.train_ds.fingerprint)
    atomic_write_text(run.config, config_json(cfg, **about))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        _say(f"warning: TensorBoard events disabled: {exc} (pip install tensorboard)")
        board = None
    else:
        board = SummaryWriter(log_dir=str(run.path), purge_step=pos.global_step or None)
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    record = {
        "time": round(time.time(), 3),
        "resumed": saved is not None,
        "generation": generation,
        "restart_count": restart,
        "world_size": info.world_size,
        "global_step": pos.global_step,
        "epoch": pos.epoch,
        "batch": pos.batch,
        "batch_size": cfg.batch_size,
    }
    moved = saved is not None and saved.world_size != info.world_size
    if moved:
        record["previous_world_size"] = saved.world_size
    _append_jsonl(run.starts, record)
    if saved is not None:
        _say(
            f"resuming {run.path} at epoch {pos.epoch + 1} step {pos.batch}/"
            f"{len(inputs.train_loader)} (global step {pos.global_step}), {info.world_size} "
            "process(es)"
            + (f" (was {saved.world_size} processes)" if moved else "")
            + (f", torchrun restart {restart}" if restart else "")
        )
    if run.steps.exists():
        last = pos.global_step if saved is not None else 0
        keep = [r for r in run.read_steps() if r["step"] <= last]
        atomic_write_text(run.steps, "".join(map(_jsonl, keep)))
    return board


# ------------------------------------------------------------------------------- epoch
def train_one_epoch(
    forward, optimizer, schedule, inputs, pos, cfg, info, run, stop, save, callbacks
) -> str:
    """Run the epoch's remaining steps; `save()` checkpoints (--checkpoint-every). Returns
    "finished" at the epoch's end, "stopped" after a signal, "max_steps" at --max-steps."""
    loader, steps, epoch = inputs.train_loader, len(inputs.train_loader), pos.epoch
    poll = POLL_STEPS if optimizer.defaults.get("fused") else 1
    loader.set_epoch(epoch)
    bar = Progress(info.is_main, steps, pos.batch, f"epoch {epoch + 1}/{cfg.epochs}")
    t0, timed_images, status, shown = time.perf_counter(), 0, "finished", float("nan")

    def generator(k: int) -> torch.Generator:  # batch k's augmentation: a resume draws the same
        return checkpoint.step_generator(
            loader.device, checkpoint.step_seed(cfg.seed, epoch, k, info.rank)
        )

    batches = loader.iterate(
        start_batch=pos.batch, transform=inputs.train_transform, generator=generator
    )
    while True:
        waited = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - waited
        if batch is None:
            break
        pos.data_time = [t + waited for t in pos.data_time]
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr(pos.epoch, pos.batch, steps) * group.get("lr_factor", 1.0)
        loss = train_step(forward, optimizer, *batch, pos, cfg, info.enabled)
        timed_images += batch[1].shape[0] * info.world_size
        pos.batch, pos.global_step = pos.batch + 1, pos.global_step + 1
        now, every, step = time.perf_counter(), cfg.checkpoint_every, pos.global_step
        logged = bool(cfg.log_every and step % cfg.log_every == 0)
        limit = bool(cfg.max_steps and step >= cfg.max_steps)
        due = bool(every and step % every == 0)
        signalled = False
        if pos.batch == steps or limit or logged or due or step % poll == 0:
            signalled, shown = _agree(stop, pos, loss, cfg.on_nan, run, every_step=poll == 1)
        if logged:
            seconds = pos.elapsed + now - t0
            _log_steps(pos, steps, cfg.batch_size * info.world_size, seconds, run, info.is_main)
        for callback in callbacks:
            callback(step)
        bar.update(pos.batch, shown, timed_images / max(now - t0, 1e-9), now)
        if signalled or limit:
            status = "stopped" if signalled else "max_steps"
            break
        if due and pos.batch < steps:
            elapsed = time.perf_counter() - t0
            pos.train_time, pos.elapsed = pos.train_time + elapsed, pos.elapsed + elapsed
            t0, timed_images = time.perf_counter(), 0
            save()
    bar.close()
    elapsed = time.perf_counter() - t0
    pos.train_time, pos.elapsed = pos.train_time + elapsed, pos.elapsed + elapsed
    return status


def train_step(
    forward, optimizer, x, labels, pos: Position, cfg, distributed: bool
) -> torch.Tensor:
    """One SGD step (paper §5) on one augmented batch x (N, C, H, W) with labels (N,). Nothing
    is read on the host: a non-finite loss (on any rank) skips the update and adds nothing to
    the sums but a skipped step. Returns the loss (NaN when skipped), a device tensor."""
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        logits = forward(x)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    bad = (~torch.isfinite(loss.detach())).double()
    if distributed:
        bad = runtime.all_reduce_sum(bad).clamp_(max=1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if optimizer.defaults.get("fused"):  # fused SGD skips on the device when `bad` is non-zero
        optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
        optimizer.step()
    elif not bad.item():  # per-parameter SGD (the CPU) decides on the host: free there
        optimizer.step()
    good = 1.0 - bad
    value = torch.where(bad > 0, 0.0, loss.detach().double())
    correct = (logits.detach().argmax(1) == labels).sum().double() * good
    images = labels.shape[0] * good
    pos.sums += torch.stack([value * images, correct, images, bad])
    return torch.where(bad > 0, float("nan"), loss.detach())


def _agree(
    stop: StopFlag, pos: Position, loss: torch.Tensor, on_nan: str, run: RunDir, *, every_step: bool
) -> tuple[bool, float]:
    """(any rank signalled to stop, the loss to show); a non-finite loss since the last
    agreement stops the run (--on-nan stop) or was skipped."""
    signal = torch.tensor(1.0 if stop.signal else 0.0, device=loss.device)
    flags = torch.stack([signal, pos.sums[WINDOW, 3].float(), loss.detach().float()])
    flags[:2] = runtime.all_reduce_sum(flags[:2].clone())
    signalled, skipped, value = flags.tolist()
    if skipped > 0 and on_nan == "stop":
        step = pos.global_step
        where = f"since the previous check (those updates were skipped) (global step {step}"
        if every_step:
            where = f"at epoch {pos.epoch + 1} step {pos.batch - 1} (global step {step - 1}"
        note = "no checkpoint was written yet"
        if run.has_checkpoint():
            note = f"the last good checkpoint {run.checkpoint} is intact"
        raise UserError(
            f"non-finite loss {where}); stopped, {note}; lower ",
            Param("lr"),
            " or use ",
            Param("on_nan"),
            " skip",
        )
    return signalled > 0, value


def _log_steps(pos: Position, steps: int, global_batch: int, seconds: float, run, main) -> None:
    """Append the last `log_every` steps' training loss and error to RUN/steps.jsonl (rank 0)."""
    loss, error, images, _ = pos.reduced(WINDOW)
    record = {
        "step": pos.global_step,
        "epoch": round(pos.epoch + pos.batch / steps, 6),
        "images": pos.global_step * global_batch,
        "time": round(seconds, 4),
        "wall": round(time.time(), 3),  # the clock time it was logged (restarts so timed)
        "train_loss": loss,
        "train_top1_error": error,
        "window_images": images,
        "data_time": round(pos.data_time[WINDOW], 6),
    }
    pos.sums[WINDOW], pos.data_time[WINDOW] = 0.0, 0.0
    if main:
        _append_jsonl(run.steps, record)


# -------------------------------------------------------------------------- evaluation
def validate(model, loader, inputs: Inputs, crops: int, cfg) -> dict[str, Any]:
    """Top-1/top-5 error and loss of `loader`'s images (each counted once over the ranks)."""
    loader.set_epoch(0)
    transform = make_eval_transform(inputs.preprocess, inputs.meta["mean_image"], crops)
    precision = dict(amp=cfg.amp, channels_last=cfg.channels_last)
    classes = inputs.train_ds.num_classes
    return evaluate(
        model, loader.iterate(), transform, crops=crops, num_classes=classes, **precision
    )


def end_epoch(placed, optimizer, schedule, inputs, pos: Position, cfg, write_weights, board, say):
    """Validate, record the epoch (partial when --max-steps cut it) in `pos.history`, step the
    plateau schedule, keep the best weights, log it; a complete epoch moves the position on."""
    steps = len(inputs.train_loader)
    val = validate(placed, inputs.val_loader, inputs, cfg.eval_crops, cfg)
    loss, error, images, skipped = pos.reduced(EPOCH)
    complete, seconds = pos.batch == steps, max(pos.train_time, 1e-9)
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
        "images_per_sec": images / seconds,
        "nan_skipped": skipped,
        "data_stall": pos.data_time[EPOCH] / seconds,
        "time": pos.train_time,
        "elapsed": pos.elapsed,
    }
    if complete and schedule.epoch_end(val["top1_error"]):
        record["lr_reduced_to"] = schedule.lr(pos.epoch + 1, 0, 1)
    if val["top1_error"] < pos.best_error:
        pos.best_error = val["top1_error"]
        write_weights(RunDir.BEST, {"epoch": record["epoch"], **val})
    pos.history.append(record)
    if board is not None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float):
                board.add_scalar(key, value, pos.global_step)
    top5 = record["val_top5_error"]
    say(
        f"epoch {record['epoch']}"
        + ("" if complete else f" (partial: {pos.batch}/{steps} steps)")
        + f": lr {record['lr']:.4g}, train loss {loss:.4f}, val error top-1 "
        f"{100 * record['val_top1_error']:.2f} %"
        + (f" top-5 {100 * top5:.2f} %" if top5 is not None else "")
        + f", {record['images_per_sec']:.0f} img/s"
    )
    if complete:
        pos.epoch, pos.batch, pos.train_time = pos.epoch + 1, 0, 0.0
        pos.sums[EPOCH], pos.data_time[EPOCH] = 0.0, 0.0


def final_evaluation(
    placed, inputs: Inputs, history: list, cfg: TrainConfig, info, run, status: str, say
) -> dict:
    """RUN/eval.json: the validation error with the test crops (paper §4.1: 10), and with
    --train-eval the error on the first training images (the train side of a train-test gap);
    rounded as measured, written by rank 0 and said in one line with the run's `status`."""
    record = history[-1] if history else {}
    if cfg.test_crops != cfg.eval_crops or not record:
        final = validate(placed, inputs.val_loader, inputs, cfg.test_crops, cfg)
    else:
        final = {
            "images": len(inputs.val_ds),
            "crops": cfg.eval_crops,
            **{k: record.get(f"val_{k}") for k in ("top1_error", "top5_error", "loss")},
        }
    if inputs.train_eval_loader is not None:
        train = validate(placed, inputs.train_eval_loader, inputs, cfg.test_crops, cfg)
        final["train"] = {
            k: train.get(k) for k in ("images", "crops", "top1_error", "top5_error", "loss")
        }
    final = rounded(final)
    if info.is_main:
        atomic_write_text(run.eval_json, json.dumps(final, indent=2) + "\n")
    top5 = final.get("top5_error")
    say(
        f"done ({status}): {run.weights}; val error top-1 {100 * final['top1_error']:.2f} %"
        + (f", top-5 {100 * top5:.2f} %" if top5 is not None else "")
        + f" ({final['crops']} crop(s))"
    )
    return final


# ----------------------------------------------------------------- what people see
COST_STEPS = 5  # steps timed (after this process's first) for the estimate of the run's time


def _plan(cfg, steps: int, info, device: torch.device, say) -> StepCallback:
    """A step callback that says once, after the first steps, how long the rest takes at the
    rate measured here; a note now for the paper recipe on a CPU."""
    if cfg.recipe == "paper" and cfg.epochs >= 30 and device.type == "cpu":
        say(
            f"note: the paper recipe trains {cfg.epochs} epochs, sized for GPUs (days on a CPU); "
            "on a CPU, --recipe fast trains in minutes"
        )
    total = cfg.epochs * steps
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    global_batch = cfg.batch_size * info.world_size
    seen: list[tuple[int, float]] = []

    def callback(step: int) -> None:
        if len(seen) > COST_STEPS:
            return
        seen.append((step, time.perf_counter()))
        if len(seen) == COST_STEPS + 1 and step < total:
            (first, t0), (last, t1) = seen[0], seen[-1]
            per_step = (t1 - t0) / max(last - first, 1)
            say(
                f"plan: {total} steps of {global_batch} images, {total - step} to go; at "
                f"{global_batch / per_step:.0f} img/s (measured here) about "
                f"{_duration((total - step) * per_step)} of training on {device}"
            )

    return callback


def _duration(seconds: float) -> str:
    """E.g. "40 s", "12 min", "3 h 05 min", "5 days 2 h"."""
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{max(round(seconds), 1)} s"
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes // 1440} days {minutes % 1440 // 60} h"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    pass


def _jsonl(record: dict[str, Any]) -> str:
    return f"{json.dumps(record)}\n"


def _append_jsonl(path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(_jsonl(record))


class Progress:
    """tqdm bar over an epoch's steps on rank 0 at a terminal; else a line every `every` s."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str, every: float = 30.0):
        self.enabled, self.total, self.desc, self.every, self.last = enabled, total, desc, every, 0
        self.bar = None
        if enabled and sys.stderr.isatty():
            tqdm = dict(unit="step", dynamic_ncols=True, mininterval=0.5, leave=False)
            self.bar = progress_bar(total=total, initial=initial, desc=desc, **tqdm)

    def update(self, step: int, loss: float, images_per_sec: float, now: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images_per_sec:.0f}", refresh=False)
        elif self.enabled and now - self.last >= self.every:
            self.last = now
            _say(f"{self.desc} step {step}/{self.total} loss {loss:.4f} {images_per_sec:.0f} img/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
