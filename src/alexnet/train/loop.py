"""The training loop (paper §5): SGD over the packed dataset, validation every epoch,
checkpoints that resume to the bit, DDP through torchrun, safe stops on SIGTERM / SIGINT.

Randomness, so that a resumed run repeats an uninterrupted one exactly:
- loader order: a function of (seed, epoch) (DeviceLoader.set_epoch);
- augmentation: a torch.Generator seeded from (seed, epoch, step, rank) for every step;
- dropout: the global torch RNG, whose state the checkpoint holds (with numpy's and python's).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from alexnet.errors import UserError
from alexnet.evaluate import evaluate, make_eval_transform
from alexnet.train import distributed as D
from alexnet.train import pipeline as P
from alexnet.train.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from alexnet.train.config import TrainConfig, config_json
from alexnet.train.optim import make_optimizer, make_schedule, set_lr
from alexnet.train.runlog import CONFIG, Progress, TensorBoard, write_metrics, write_text
from alexnet.train.signals import StopFlag
from alexnet.train.weights import save_weights

WEIGHTS = "weights.safetensors"
BEST = "weights-best.safetensors"
EVAL = "eval.json"
# tests only: seconds to sleep after every step, so a signal can arrive mid-epoch
_DEBUG_STEP_SLEEP = float(os.environ.get("ALEXNET_DEBUG_STEP_SLEEP", "0") or 0)


def _say(info: D.DistInfo, message: str) -> None:
    if info.is_main:
        print(message, file=sys.stderr, flush=True)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the last metrics record and status."""
    info = D.from_env()
    devices = [d.strip() for d in cfg.model_parallel.split(",")] if cfg.model_parallel else None
    if devices is not None and (len(devices) != 2 or info.enabled):
        raise UserError("--model-parallel takes two devices, DEV0,DEV1, in a single process")
    device = D.resolve_device(devices[0] if devices else cfg.device, info)
    D.init(info, device)
    try:
        return _train(cfg, info, device, devices)
    finally:
        D.shutdown()


def _train(cfg: TrainConfig, info: D.DistInfo, device: torch.device, devices) -> dict[str, Any]:
    from alexnet import get_model
    from alexnet.data.loader import DeviceLoader
    from alexnet.data.packed import open_dataset

    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_ds, val_ds = open_dataset(cfg.data, "train"), open_dataset(cfg.data, "val")
    if 0 < cfg.val_limit < len(val_ds):
        val_ds = P.Head(val_ds, cfg.val_limit)
    run = Path(cfg.output_dir)
    state = None
    if cfg.resume:
        src = Path(cfg.resume)
        state = load_checkpoint(src / CHECKPOINT_NAME if src.is_dir() else src, "cpu")

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    options = P.model_options(cfg, train_ds.image_size, train_ds.stats)
    net = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    if state is not None:
        check_compatible(
            state, cfg.resume, model_config=net.config, data_fingerprint=train_ds.fingerprint
        )
    error = None
    if info.is_main:
        try:
            P.check_run_dir(run, P.bytes_needed(net), resuming=state is not None)
        except UserError as exc:
            error = str(exc)
    error = D.broadcast_object(error)
    if error:
        raise UserError(error)

    in_channels = int(getattr(net, "in_channels", 3))
    geometry = P.plan_geometry(
        train_ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    stats = train_ds.stats
    train_tf = P.make_train_transform(cfg, geometry, in_channels, stats)
    preprocess = P.preprocess_for(cfg, geometry, in_channels, stats, min(train_ds.image_size))
    mean_image = torch.as_tensor(stats["mean_image"], dtype=torch.float32)
    eval_tf = make_eval_transform(preprocess, mean_image, cfg.eval_crops)

    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    if devices:
        from alexnet.models.parallel import TwoDeviceAlexNet

        if cfg.model != "paper":
            raise UserError("--model-parallel splits the paper's two towers: use --model paper")
        model = TwoDeviceAlexNet.from_paper(net, devices=tuple(devices))
        model_state, load_model_state = model.paper_state_dict, model.load_paper_state_dict
    else:
        net = net.to(device=device, memory_format=memory_format)
        model = net
        model_state, load_model_state = net.state_dict, net.load_state_dict
    # validation runs the bare model: DDP's forward broadcasts buffers (a collective), and ranks
    # may hold unequal numbers of validation batches (no padding)
    eval_forward = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(model) if cfg.compile else model

    optimizer = make_optimizer(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )
    schedule = make_schedule(cfg)
    train_loader = DeviceLoader(
        train_ds,
        cfg.batch_size,
        shuffle=True,
        drop_last=True,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        device=device,
        workers=cfg.workers,
    )
    val_loader = DeviceLoader(
        val_ds,
        cfg.batch_size,
        shuffle=False,
        drop_last=False,
        seed=cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        device=device,
        workers=cfg.workers,
    )
    steps = len(train_loader)
    if steps == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images are fewer than one global batch of "
            f"{cfg.batch_size * info.world_size}; lower --batch-size"
        )

    # where we are: (epoch, batch) is the next batch to run
    pos = {"epoch": 0, "batch": 0, "global_step": 0, "best_error": math.inf, "elapsed": 0.0}
    sums = {"loss": 0.0, "images": 0, "nan_skipped": 0, "train_time": 0.0}
    history: list[dict[str, Any]] = []
    if state is not None:
        load_model_state(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        for key in pos:
            pos[key] = state[key]
        sums.update(state["epoch_sums"])
        history = list(state["history"])
        if info.is_main:
            restore_rng_state(state["rng"])
        else:
            torch.manual_seed(P.step_seed(cfg.seed, 0, pos["global_step"], info.rank, stream=1))
        _say(info, f"resuming {cfg.resume} at epoch {pos['epoch'] + 1} step {pos['batch']}")
    else:
        # a dropout stream per rank
        torch.manual_seed(P.step_seed(cfg.seed, 0, 0, info.rank, stream=1))

    def snapshot() -> dict[str, Any]:
        return {
            "model_config": json.dumps(net.config),
            "data_fingerprint": train_ds.fingerprint,
            "config": json.dumps(cfg.to_json()),
            "model": model_state(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            **pos,
            "epoch_sums": dict(sums),
            "history": history,
            "rng": capture_rng_state(),
        }

    ckpt_path = run / CHECKPOINT_NAME

    def checkpoint() -> None:
        if info.is_main:
            save_checkpoint(ckpt_path, snapshot())

    def weights(path: Path, extra: dict) -> None:
        if info.is_main:
            save_weights(
                path,
                model_state(),
                model_config=net.config,
                classes=train_ds.classes,
                preprocess=preprocess,
                mean_image=mean_image,
                extra={"recipe": cfg.recipe, **extra},
            )

    def validate(crops: int, transform) -> dict[str, Any]:
        val_loader.set_epoch(0)
        return evaluate(
            eval_forward,
            val_loader.iterate(),
            transform,
            crops=crops,
            num_classes=train_ds.num_classes,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
        )

    if info.is_main:
        write_text(
            run / CONFIG,
            config_json(
                cfg,
                model=net.config,
                geometry=geometry,
                preprocess=preprocess,
                world_size=info.world_size,
                data_fingerprint=train_ds.fingerprint,
            ),
        )
        write_metrics(run, history)
    tb = TensorBoard(run, purge_step=pos["global_step"] or None) if info.is_main else None
    nan_stop = cfg.on_nan == "stop"
    status, record = "finished", history[-1] if history else {}
    model.train()
    with StopFlag() as stop:
        while pos["epoch"] < cfg.epochs and status == "finished":
            epoch = pos["epoch"]
            train_loader.set_epoch(epoch)
            bar = Progress(info.is_main, steps, pos["batch"], f"epoch {epoch + 1}/{cfg.epochs}")
            t0 = time.perf_counter()
            timed_images = 0
            for images, labels in train_loader.iterate(start_batch=pos["batch"]):
                b = pos["batch"]
                lr = schedule.lr(epoch, b, steps)
                set_lr(optimizer, lr)
                gen = P.step_generator(device, P.step_seed(cfg.seed, epoch, b, info.rank))
                x = train_tf(images, gen)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    logits = forward(x)
                loss = F.cross_entropy(
                    logits.float(), labels.to(logits.device), label_smoothing=cfg.label_smoothing
                )
                flags = torch.tensor(
                    [0.0 if torch.isfinite(loss).item() else 1.0, 1.0 if stop.signal else 0.0]
                )
                if info.enabled:
                    flags = D.all_reduce_sum(flags.to(device)).cpu()
                if flags[0] > 0:
                    if nan_stop:
                        checkpoint_note = (
                            f"the last good checkpoint {ckpt_path} is intact"
                            if ckpt_path.exists()
                            else "no checkpoint was written yet"
                        )
                        raise UserError(
                            f"non-finite loss at epoch {epoch + 1} step {b} (global step "
                            f"{pos['global_step']}); stopped, {checkpoint_note}; lower --lr or "
                            "use --on-nan skip"
                        )
                    sums["nan_skipped"] += 1
                    optimizer.zero_grad(set_to_none=True)
                else:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    sums["loss"] += loss.item() * labels.shape[0]
                    sums["images"] += labels.shape[0]
                timed_images += labels.shape[0] * info.world_size
                pos["batch"] = b + 1
                pos["global_step"] += 1
                if _DEBUG_STEP_SLEEP:
                    time.sleep(_DEBUG_STEP_SLEEP)
                now = time.perf_counter()
                bar.update(b + 1, loss.item(), timed_images / max(now - t0, 1e-9), now)
                last_step = pos["batch"] == steps
                if flags[1] > 0 or (cfg.max_steps and pos["global_step"] >= cfg.max_steps):
                    status = "stopped" if flags[1] > 0 else "max_steps"
                    break
                if cfg.checkpoint_every and pos["global_step"] % cfg.checkpoint_every == 0:
                    if not last_step:
                        sums["train_time"] += time.perf_counter() - t0
                        pos["elapsed"] += time.perf_counter() - t0
                        t0, timed_images = time.perf_counter(), 0
                        checkpoint()
            bar.close()
            dt = time.perf_counter() - t0
            sums["train_time"] += dt
            pos["elapsed"] += dt
            if status == "stopped":
                checkpoint()
                _say(
                    info,
                    f"stopped by {stop.signal or 'signal'} at epoch {epoch + 1} step "
                    f"{pos['batch']}/{steps}; checkpoint saved to {ckpt_path}\n"
                    f"resume with: alexnet train --resume {run}",
                )
                break
            complete = pos["batch"] == steps
            record = _end_epoch(
                cfg,
                info,
                device,
                pos,
                sums,
                schedule,
                optimizer,
                validate,
                eval_tf,
                complete,
                weights,
                history,
                tb,
            )
            if complete:
                pos["epoch"], pos["batch"] = epoch + 1, 0
                sums.update(loss=0.0, images=0, nan_skipped=0, train_time=0.0)
            checkpoint()
            if info.is_main:
                write_metrics(run, history)
    if tb is not None:
        tb.close()
    if status == "stopped":
        return {"status": status, **record}
    weights(run / WEIGHTS, {"epoch": pos["epoch"], "global_step": pos["global_step"]})
    if cfg.test_crops != cfg.eval_crops:
        final = validate(
            cfg.test_crops, make_eval_transform(preprocess, mean_image, cfg.test_crops)
        )
    else:
        final = {k: record.get(f"val_{k}") for k in ("top1_error", "top5_error", "loss")}
        final = {"images": len(val_ds), "crops": cfg.eval_crops, **final}
    if info.is_main:
        write_text(run / EVAL, json.dumps(final, indent=2) + "\n")
    _say(
        info,
        f"done ({status}): {run / WEIGHTS}; val top-1 error {final['top1_error']:.4f}, "
        f"top-5 {final['top5_error']:.4f} ({final['crops']} crop(s))",
    )
    return {"status": status, **record, "final": final}


def _end_epoch(
    cfg,
    info,
    device,
    pos,
    sums,
    schedule,
    optimizer,
    validate,
    eval_tf,
    complete,
    weights,
    history,
    tb,
) -> dict[str, Any]:
    """Validate, reduce the epoch's sums over ranks, step the plateau schedule, keep the best."""
    val = validate(cfg.eval_crops, eval_tf)
    reduced = D.all_reduce_sum(
        torch.tensor(
            [sums["loss"], sums["images"], sums["nan_skipped"]], dtype=torch.float64, device=device
        )
    ).tolist()
    lr = optimizer.param_groups[0]["lr"]
    record = {
        "epoch": pos["epoch"] + 1,
        "step": pos["global_step"],
        "complete": complete,
        "lr": lr,
        "train_loss": reduced[0] / max(reduced[1], 1),
        "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"],
        "val_loss": val["loss"],
        "val_images": val["images"],
        "images_per_sec": reduced[1] / max(sums["train_time"], 1e-9),
        "nan_skipped": int(reduced[2]),
        "time": sums["train_time"],
        "elapsed": pos["elapsed"],
    }
    if complete and schedule.epoch_end(val["top1_error"]):
        record["lr_reduced_to"] = schedule.lr(pos["epoch"] + 1, 0, 1)
    if val["top1_error"] < pos["best_error"]:
        pos["best_error"] = val["top1_error"]
        weights(Path(cfg.output_dir) / BEST, {"epoch": record["epoch"], **val})
    history.append(record)
    if tb is not None:
        tb.scalars(pos["global_step"], {k: v for k, v in record.items() if k != "epoch"})
    _say(
        info,
        f"epoch {record['epoch']}: lr {lr:.4g} train loss {record['train_loss']:.4f} "
        f"val top-1 {val['top1_error']:.4f} top-5 {val['top5_error']:.4f} "
        f"{record['images_per_sec']:.0f} img/s",
    )
    return record
