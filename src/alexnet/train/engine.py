"""`fit`: train one run from a config, the way `alexnet train` does, callable from Python.

    from alexnet.train import fit, make_config
    result = fit(make_config("fast", data="data/fmnist", output_dir="runs/a"))
    result.final["top1_error"], result.history[-1]["train_loss"], result.weights

Setting `cfg.resume` to a run directory (or its checkpoint) continues that run in place. The
run directory's files are described in `alexnet.rundir`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alexnet import runtime as dist
from alexnet.data.loader import DeviceLoader
from alexnet.evaluate import make_eval_transform
from alexnet.rundir import RunResult
from alexnet.train.config import TrainConfig, validate
from alexnet.train.loop import StepCallback, end_epoch, save, train_one_epoch, write_weights
from alexnet.train.loop import validate as validate_split
from alexnet.train.pipeline import FirstImages
from alexnet.train.runlog import write_text
from alexnet.train.signals import StopFlag
from alexnet.train.state import TrainState, device_for, setup


def fit(cfg: TrainConfig, *, callbacks: Sequence[StepCallback] = ()) -> RunResult:
    """Train (or resume, when `cfg.resume` is set) the run `cfg` describes; see the module
    docstring. `callbacks` are called after every step with the `TrainState`."""
    validate(cfg)
    info = dist.dist_info()
    device = device_for(cfg, info)
    dist.init_distributed(info, device)
    state = None
    try:
        state = setup(cfg, info, device)
        _trim_step_log(state)
        status = "finished"
        with StopFlag() as stop:
            while state.pos.epoch < cfg.epochs:
                status = train_one_epoch(state, stop, callbacks)
                if status == "stopped":
                    save(state)
                    state.say(
                        f"stopped by {stop.signal or 'signal'} at epoch {state.pos.epoch + 1} "
                        f"step {state.pos.batch}/{state.steps_per_epoch}; checkpoint saved to "
                        f"{state.run.checkpoint}\nresume with: alexnet train --resume "
                        f"{state.run.path}"
                    )
                    return RunResult("stopped", state.run.path, list(state.history))
                end_epoch(state, complete=state.pos.batch == state.steps_per_epoch)
                if status == "max_steps":
                    break
        return _finish(state, status)
    finally:
        if state is not None and state.tensorboard is not None:
            state.tensorboard.close()
        dist.shutdown_distributed()


def _finish(state: TrainState, status: str) -> RunResult:
    """Final weights, the final evaluation (RUN/eval.json, with the test crops) and the result."""
    cfg, pos, run = state.cfg, state.pos, state.run
    write_weights(state, run.weights, {"epoch": pos.epoch, "global_step": pos.global_step})
    record = state.history[-1] if state.history else {}
    if cfg.test_crops != cfg.eval_crops or not record:
        final = validate_split(state, cfg.test_crops, transform_for_test(state))
    else:
        final = {k: record.get(f"val_{k}") for k in ("top1_error", "top5_error", "loss")}
        final = {"images": len(state.val_ds), "crops": cfg.eval_crops, **final}
    if cfg.train_eval:
        final["train"] = _train_error(state, transform_for_test(state))
    if state.info.is_main:
        write_text(run.eval_json, json.dumps(final, indent=2) + "\n")
    top5 = final.get("top5_error")
    state.say(
        f"done ({status}): {run.weights}; val error top-1 {100 * final['top1_error']:.2f} %"
        + (f", top-5 {100 * top5:.2f} %" if top5 is not None else "")
        + f" ({final['crops']} crop(s))"
    )
    return RunResult(status, run.path, list(state.history), final, run.weights, pos.elapsed)


def transform_for_test(state: TrainState):
    """The evaluation transform with the recipe's test crops (paper §4.1: 10 crops)."""
    return make_eval_transform(state.preprocess, state.mean_image, state.cfg.test_crops)


def _train_error(state: TrainState, transform) -> dict:
    """Error of the final weights on the first `train_eval` training images, in evaluation
    mode with the test crops: the training side of a train-test gap (paper §4: overfitting)."""
    cfg = state.cfg
    subset = FirstImages(state.train_ds, min(cfg.train_eval, len(state.train_ds)))
    loader = DeviceLoader(
        subset,
        cfg.batch_size,
        shuffle=False,
        drop_last=False,
        rank=state.info.rank,
        world_size=state.info.world_size,
        device=state.device,
        workers=cfg.workers,
    )
    result = validate_split(state, cfg.test_crops, transform, loader)
    return {k: result.get(k) for k in ("images", "crops", "top1_error", "top5_error", "loss")}


def _trim_step_log(state: TrainState) -> None:
    """RUN/steps.jsonl holds exactly the records up to the restored step (none when fresh)."""
    path: Path = state.run.steps
    if not state.info.is_main or not path.exists():
        return
    keep = [
        r for r in state.run.read_steps() if state.resumed and r["step"] <= state.pos.global_step
    ]
    write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
