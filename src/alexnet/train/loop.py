"""The training loop (paper §5): SGD steps over the packed dataset, validation at every epoch's
end, checkpoints that resume to the bit, DDP through torchrun, safe stops on SIGTERM / SIGINT.

`alexnet.train.engine.fit` drives it:

    state = setup(cfg, info, device)
    while state.pos.epoch < cfg.epochs:
        status = train_one_epoch(state, stop)   # "finished" | "stopped" | "max_steps"
        if status == "stopped": break            # checkpoint written, resume later
        end_epoch(state, complete=...)           # validate, schedule, best weights, checkpoint

Two kinds of step, the same arithmetic. On a CPU each step reads its loss and correct count on
the host (the CPU computes synchronously anyway): a non-finite loss is seen at once, and every
rank agrees after each step whether to stop. On CUDA the step never waits for the device
(`Optimization.sync_free`): the loss and counts are summed on the device and read only at
log, epoch and checkpoint boundaries; a non-finite loss is flagged on the device and fused SGD
skips that update there (`skip_if_nonfinite`); the ranks agree on a stop signal and on
non-finite steps every `POLL_STEPS` steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from alexnet import runtime
from alexnet.data.loader import DeviceLoader
from alexnet.errors import UserError
from alexnet.evaluate import evaluate
from alexnet.train.optim import set_lr, skip_if_nonfinite
from alexnet.train.persist import save, write_weights
from alexnet.train.randomness import step_generator, step_seed
from alexnet.train.runlog import Progress, append_jsonl, write_metrics
from alexnet.train.signals import StopFlag
from alexnet.train.state import Sums, TrainState

# called after every step with the state (tests, experiments); must not change the state
StepCallback = Callable[[TrainState], None]
POLL_STEPS = 50  # sync-free steps between the ranks' agreement on stop signals and NaNs


def train_one_epoch(
    state: TrainState, stop: StopFlag, callbacks: Sequence[StepCallback] = ()
) -> str:
    """Run the current epoch's remaining steps. Returns "finished" at the epoch's end,
    "stopped" after a signal, "max_steps" when --max-steps is reached."""
    cfg, pos, sums = state.cfg, state.pos, state.epoch_sums
    steps = state.steps_per_epoch
    loader = state.inputs.train_loader
    loader.set_epoch(pos.epoch)
    bar = Progress(state.info.is_main, steps, pos.batch, f"epoch {pos.epoch + 1}/{cfg.epochs}")
    t0, timed_images, status = time.perf_counter(), 0, "finished"
    transform, generator = state.inputs.train_transform, _augment_generator(state)
    batches = loader.iterate(start_batch=pos.batch, transform=transform, generator=generator)
    shown = float("nan")
    while True:
        waited = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - waited
        if batch is None:
            break
        sums.data_time += waited
        state.window.data_time += waited
        loss = _step(state, *batch)
        timed_images += batch[1].shape[0] * state.info.world_size
        pos.batch += 1
        pos.global_step += 1
        now = time.perf_counter()
        logged = bool(cfg.log_every and pos.global_step % cfg.log_every == 0)
        signalled, shown = _agree(state, stop, loss, _at_boundary(state, steps) or logged, shown)
        if logged:
            _log_steps(state, pos.elapsed + now - t0)
        for callback in callbacks:
            callback(state)
        bar.update(pos.batch, shown, timed_images / max(now - t0, 1e-9), now)
        if signalled or (cfg.max_steps and pos.global_step >= cfg.max_steps):
            status = "stopped" if signalled else "max_steps"
            break
        every = cfg.checkpoint_every
        if every and pos.global_step % every == 0 and pos.batch < steps:
            elapsed = time.perf_counter() - t0
            sums.train_time += elapsed
            pos.elapsed += elapsed
            t0, timed_images = time.perf_counter(), 0
            save(state)
    bar.close()
    elapsed = time.perf_counter() - t0
    sums.train_time += elapsed
    pos.elapsed += elapsed
    return status


def _at_boundary(state: TrainState, steps: int) -> bool:
    """A step after which the run may stop or save: the ranks must agree there."""
    cfg, pos = state.cfg, state.pos
    return (
        pos.batch == steps
        or bool(cfg.max_steps and pos.global_step >= cfg.max_steps)
        or bool(cfg.checkpoint_every and pos.global_step % cfg.checkpoint_every == 0)
        or pos.global_step % POLL_STEPS == 0
    )


def _augment_generator(state: TrainState) -> Callable[[int], torch.Generator]:
    """Batch k's augmentation generator, seeded from (seed, epoch, k, rank): a resumed run
    draws exactly the crops, flips and lighting of an uninterrupted one."""
    cfg, epoch, rank = state.cfg, state.pos.epoch, state.info.rank

    def generator(k: int) -> torch.Generator:
        return step_generator(state.device, step_seed(cfg.seed, epoch, k, rank))

    return generator


def _forward_loss(state: TrainState, x: torch.Tensor, labels: torch.Tensor):
    """The step's forward pass: (logits, labels on their device, mean cross-entropy)."""
    cfg, pos = state.cfg, state.pos
    set_lr(state.optim.optimizer, state.optim.schedule.lr(pos.epoch, pos.batch,
                                                          state.steps_per_epoch))  # fmt: skip
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        logits = state.network.forward(x)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    return logits, labels, loss


def _step(state: TrainState, x: torch.Tensor, labels: torch.Tensor) -> Any:
    """One SGD step on one augmented batch (the loader applied the step's augmentation).
    Returns the loss: a float (host step), a device tensor (sync-free step)."""
    if state.optim.sync_free:
        return _step_on_device(state, x, labels)
    return _step_on_host(state, x, labels)


def _step_on_host(state: TrainState, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Forward, backward, update; the loss and correct count read at once."""
    optimizer = state.optim.optimizer
    logits, labels, loss = _forward_loss(state, x, labels)
    bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0])
    if state.info.enabled:
        bad = runtime.all_reduce_sum(bad.to(state.device)).cpu()
    optimizer.zero_grad(set_to_none=True)
    if bad[0] > 0:
        _nonfinite(state, f"at epoch {state.pos.epoch + 1} step {state.pos.batch}")
        state.epoch_sums.nan_skipped += 1
        state.window.nan_skipped += 1
        return float("nan")
    loss.backward()
    optimizer.step()
    # one device->host copy for both numbers (each .item() would wait for the device)
    correct = (logits.detach().argmax(1) == labels).sum()
    value, correct = torch.stack([loss.detach().float(), correct.float()]).tolist()
    state.epoch_sums.add(value, correct, labels.shape[0])
    state.window.add(value, correct, labels.shape[0])
    return value


def _step_on_device(state: TrainState, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same step with nothing read on the host: a non-finite loss (on any rank) makes
    fused SGD skip the update on the device, and the step adds nothing to the sums."""
    optimizer = state.optim.optimizer
    logits, labels, loss = _forward_loss(state, x, labels)
    bad = (~torch.isfinite(loss.detach())).double()
    if state.info.enabled:
        bad = runtime.all_reduce_sum(bad).clamp_(max=1.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    skip_if_nonfinite(optimizer, bad)
    optimizer.step()
    good = 1.0 - bad
    value = torch.where(bad > 0, 0.0, loss.detach().double())
    correct = (logits.detach().argmax(1) == labels).sum().double() * good
    images = labels.shape[0] * good
    for sums in (state.epoch_sums, state.window):
        sums.loss = sums.loss + value * images
        sums.correct = sums.correct + correct
        sums.images = sums.images + images
        sums.nan_skipped = sums.nan_skipped + bad
    return torch.where(bad > 0, float("nan"), loss.detach())


def _agree(state: TrainState, stop: StopFlag, loss: Any, boundary: bool, shown: float):
    """Whether any rank was signalled to stop (every step on the host path; at boundaries and
    every POLL_STEPS steps on the sync-free path, which also stops on non-finite losses
    there). Returns (signalled, the loss to show)."""
    if not state.optim.sync_free:
        flags = torch.tensor([1.0 if stop.signal else 0.0])
        if state.info.enabled:
            flags = runtime.all_reduce_sum(flags.to(state.device)).cpu()
        return bool(flags[0] > 0), float(loss)
    if not boundary:
        return False, shown
    flags = torch.stack(
        [torch.tensor(1.0 if stop.signal else 0.0, device=state.device),
         torch.as_tensor(state.window.nan_skipped, dtype=torch.float64, device=state.device)
         .float(), loss.detach().float()]
    )  # fmt: skip
    if state.info.enabled:
        flags[:2] = runtime.all_reduce_sum(flags[:2].clone())
    signalled, skipped, value = flags.tolist()
    if skipped > 0:
        _nonfinite(state, "since the previous check (those updates were skipped)")
    return signalled > 0, value


def _nonfinite(state: TrainState, where: str) -> None:
    """A non-finite loss: stop (--on-nan stop, one line) or count and go on (skip)."""
    if state.cfg.on_nan != "stop":
        return
    note = (
        f"the last good checkpoint {state.run.checkpoint} is intact"
        if state.run.has_checkpoint()
        else "no checkpoint was written yet"
    )
    raise UserError(
        f"non-finite loss {where} (global step {state.pos.global_step}); stopped, {note}; "
        "lower --lr or use --on-nan skip"
    )


def reduced(state: TrainState, sums: Sums) -> tuple[float, float, int, int]:
    """(mean loss, top-1 error, images, nan-skipped steps) of `sums` over all ranks."""
    plain = sums.to_plain()
    totals = runtime.all_reduce_sum(
        torch.tensor(
            [plain["loss"], plain["correct"], plain["images"], plain["nan_skipped"]],
            dtype=torch.float64,
            device=state.device,
        )
    ).tolist()
    images = max(totals[2], 1)
    return totals[0] / images, 1.0 - totals[1] / images, int(totals[2]), int(totals[3])


def _log_steps(state: TrainState, train_seconds: float) -> None:
    """Append the last `log_every` steps' training loss and error to RUN/steps.jsonl."""
    loss, error, images, _ = reduced(state, state.window)
    pos, steps = state.pos, state.steps_per_epoch
    record = {
        "step": pos.global_step,
        "epoch": round(pos.epoch + pos.batch / steps, 6),
        "images": pos.global_step * state.cfg.batch_size * state.info.world_size,
        "time": round(train_seconds, 4),
        "wall": round(time.time(), 3),  # the clock time it was logged (restarts are timed so)
        "train_loss": loss,
        "train_top1_error": error,
        "window_images": images,
        "data_time": round(state.window.data_time, 6),
    }
    state.window.reset()
    if state.info.is_main:
        append_jsonl(state.run.steps, record)


def validate(
    state: TrainState, crops: int, transform: Callable, loader: DeviceLoader | None = None
) -> dict[str, Any]:
    """Top-1/top-5 error and loss of the validation split, or of `loader`'s images (every
    image counted once over the ranks)."""
    loader = loader or state.inputs.val_loader
    loader.set_epoch(0)
    return evaluate(
        state.network.evaluate_model,
        loader.iterate(),
        transform,
        crops=crops,
        num_classes=state.inputs.train_ds.num_classes,
        amp=state.cfg.amp,
        channels_last=state.cfg.channels_last,
    )


def end_epoch(state: TrainState, *, complete: bool) -> dict[str, Any]:
    """Validate, record the epoch (partial when --max-steps cut it), step the plateau schedule,
    keep the best weights, then checkpoint. Returns the epoch's metrics record."""
    pos, sums = state.pos, state.epoch_sums
    val = validate(state, state.cfg.eval_crops, state.inputs.eval_transform)
    loss, error, images, skipped = reduced(state, sums)
    schedule = state.optim.schedule
    record = {
        "epoch": pos.epoch + 1,
        "step": pos.global_step,
        "complete": complete,
        "lr": state.optim.optimizer.param_groups[0]["lr"],
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
        write_weights(state, state.run.best_weights, {"epoch": record["epoch"], **val})
    state.history.append(record)
    if state.tensorboard is not None:
        values = {k: v for k, v in record.items() if k != "epoch"}
        state.tensorboard.scalars(pos.global_step, values)
    state.say(_epoch_line(record, state.steps_per_epoch, pos.batch))
    if complete:
        pos.epoch, pos.batch = pos.epoch + 1, 0
        sums.reset()
    save(state)
    if state.info.is_main:
        write_metrics(state.run.path, state.history)
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
