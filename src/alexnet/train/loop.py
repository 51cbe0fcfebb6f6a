"""The training loop (paper §5): SGD steps over the packed dataset, validation at every epoch's
end, checkpoints that resume to the bit, DDP through torchrun, safe stops on SIGTERM / SIGINT.

`alexnet.train.engine.fit` drives it:

    state = setup(cfg, info, device)
    while state.pos.epoch < cfg.epochs:
        status = train_one_epoch(state, stop)   # "finished" | "stopped" | "max_steps"
        if status == "stopped": break            # checkpoint written, resume later
        end_epoch(state, complete=...)           # validate, schedule, best weights, checkpoint
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from alexnet import runtime as dist
from alexnet.data.loader import DeviceLoader
from alexnet.errors import UserError
from alexnet.evaluate import evaluate
from alexnet.train import pipeline
from alexnet.train.checkpoint import save_checkpoint
from alexnet.train.optim import set_lr
from alexnet.train.runlog import Progress, write_metrics
from alexnet.train.signals import StopFlag
from alexnet.train.state import Sums, TrainState, checkpoint_dict
from alexnet.weights import save as save_weights

# called after every step with the state (tests, experiments); must not change the state
StepCallback = Callable[[TrainState], None]


def train_one_epoch(
    state: TrainState, stop: StopFlag, callbacks: Sequence[StepCallback] = ()
) -> str:
    """Run the current epoch's remaining steps. Returns "finished" at the epoch's end,
    "stopped" after a signal, "max_steps" when --max-steps is reached."""
    cfg, pos, sums = state.cfg, state.pos, state.epoch_sums
    steps = state.steps_per_epoch
    state.train_loader.set_epoch(pos.epoch)
    bar = Progress(state.info.is_main, steps, pos.batch, f"epoch {pos.epoch + 1}/{cfg.epochs}")
    t0, timed_images, status = time.perf_counter(), 0, "finished"
    batches = state.train_loader.iterate(
        start_batch=pos.batch, transform=state.train_transform, generator=_augment_generator(state)
    )
    while True:
        waited = time.perf_counter()
        batch = next(batches, None)
        waited = time.perf_counter() - waited
        if batch is None:
            break
        sums.data_time += waited
        state.window.data_time += waited
        x, labels = batch
        loss, signalled = _step(state, x, labels, stop)
        timed_images += labels.shape[0] * state.info.world_size
        pos.batch += 1
        pos.global_step += 1
        now = time.perf_counter()
        if cfg.log_every and pos.global_step % cfg.log_every == 0:
            _log_steps(state, pos.elapsed + now - t0)
        for callback in callbacks:
            callback(state)
        bar.update(pos.batch, loss, timed_images / max(now - t0, 1e-9), now)
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


def _augment_generator(state: TrainState) -> Callable[[int], torch.Generator]:
    """Batch k's augmentation generator, seeded from (seed, epoch, k, rank): a resumed run
    draws exactly the crops, flips and lighting of an uninterrupted one."""
    cfg, epoch, rank = state.cfg, state.pos.epoch, state.info.rank

    def generator(k: int) -> torch.Generator:
        return pipeline.step_generator(state.device, pipeline.step_seed(cfg.seed, epoch, k, rank))

    return generator


def _step(
    state: TrainState, x: torch.Tensor, labels: torch.Tensor, stop: StopFlag
) -> tuple[float, bool]:
    """One SGD step on one augmented batch (the loader applied the step's augmentation):
    forward, backward. Returns (loss, whether any rank was signalled to stop)."""
    cfg, pos, device = state.cfg, state.pos, state.device
    set_lr(state.optimizer, state.schedule.lr(pos.epoch, pos.batch, state.steps_per_epoch))
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        logits = state.forward(x)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    flags = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0, 1.0 if stop.signal else 0.0])
    if state.info.enabled:
        flags = dist.all_reduce_sum(flags.to(device)).cpu()
    state.optimizer.zero_grad(set_to_none=True)
    if flags[0] > 0:
        if cfg.on_nan == "stop":
            note = (
                f"the last good checkpoint {state.run.checkpoint} is intact"
                if state.run.has_checkpoint()
                else "no checkpoint was written yet"
            )
            raise UserError(
                f"non-finite loss at epoch {pos.epoch + 1} step {pos.batch} (global step "
                f"{pos.global_step}); stopped, {note}; lower --lr or use --on-nan skip"
            )
        state.epoch_sums.nan_skipped += 1
        state.window.nan_skipped += 1
        return float("nan"), bool(flags[1] > 0)
    loss.backward()
    state.optimizer.step()
    # one device->host copy for both numbers (each .item() would wait for the device)
    correct = (logits.detach().argmax(1) == labels).sum()
    value, correct = torch.stack([loss.detach().float(), correct.float()]).tolist()
    state.epoch_sums.add(value, correct, labels.shape[0])
    state.window.add(value, correct, labels.shape[0])
    return value, bool(flags[1] > 0)


def _reduced(state: TrainState, sums: Sums) -> tuple[float, float, int, int]:
    """(mean loss, top-1 error, images, nan-skipped steps) of `sums` over all ranks."""
    totals = dist.all_reduce_sum(
        torch.tensor(
            [sums.loss, sums.correct, sums.images, sums.nan_skipped],
            dtype=torch.float64,
            device=state.device,
        )
    ).tolist()
    images = max(totals[2], 1)
    return totals[0] / images, 1.0 - totals[1] / images, int(totals[2]), int(totals[3])


def _log_steps(state: TrainState, train_seconds: float) -> None:
    """Append the last `log_every` steps' training loss and error to RUN/steps.jsonl."""
    loss, error, images, _ = _reduced(state, state.window)
    pos, steps = state.pos, state.steps_per_epoch
    record = {
        "step": pos.global_step,
        "epoch": round(pos.epoch + pos.batch / steps, 6),
        "images": pos.global_step * state.cfg.batch_size * state.info.world_size,
        "time": round(train_seconds, 4),
        "train_loss": loss,
        "train_top1_error": error,
        "window_images": images,
        "data_time": round(state.window.data_time, 6),
    }
    state.window.reset()
    if state.info.is_main:
        with open(state.run.steps, "a") as f:
            f.write(json.dumps(record) + "\n")


def validate(
    state: TrainState, crops: int, transform: Callable, loader: DeviceLoader | None = None
) -> dict[str, Any]:
    """Top-1/top-5 error and loss of the validation split, or of `loader`'s images (every
    image counted once over the ranks)."""
    loader = loader or state.val_loader
    loader.set_epoch(0)
    return evaluate(
        state.evaluate_model,
        loader.iterate(),
        transform,
        crops=crops,
        num_classes=state.train_ds.num_classes,
        amp=state.cfg.amp,
        channels_last=state.cfg.channels_last,
    )


def end_epoch(state: TrainState, *, complete: bool) -> dict[str, Any]:
    """Validate, record the epoch (partial when --max-steps cut it), step the plateau schedule,
    keep the best weights, then checkpoint. Returns the epoch's metrics record."""
    pos, sums = state.pos, state.epoch_sums
    val = validate(state, state.cfg.eval_crops, state.eval_transform)
    loss, error, images, skipped = _reduced(state, sums)
    lr = state.optimizer.param_groups[0]["lr"]
    record = {
        "epoch": pos.epoch + 1,
        "step": pos.global_step,
        "complete": complete,
        "lr": lr,
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
    if complete and state.schedule.epoch_end(val["top1_error"]):
        record["lr_reduced_to"] = state.schedule.lr(pos.epoch + 1, 0, 1)
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


def save(state: TrainState) -> None:
    """Write RUN/checkpoint.pt (rank 0) atomically."""
    if state.info.is_main:
        save_checkpoint(state.run.checkpoint, checkpoint_dict(state))


def write_weights(state: TrainState, path: Path, extra: dict[str, Any]) -> None:
    """Write a weights file with the metadata that `predict`/`eval` need (rank 0)."""
    if state.info.is_main:
        save_weights(
            path,
            state.model_state(),
            model_config=state.net.config,
            classes=state.train_ds.classes,
            preprocess=state.preprocess,
            mean_image=state.mean_image,
            extra={"recipe": state.cfg.recipe, **extra},
        )
