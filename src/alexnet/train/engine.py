"""`fit`: train one run from a config, the way `alexnet train` does, callable from Python.

    from alexnet.train import fit, make_config
    result = fit(make_config("fast", data="data/fmnist", output_dir="runs/a"))
    result.final["top1_error"], result.history[-1]["train_loss"], result.weights

`make_config(resume="runs/a", epochs=20)` (or `resume_config`) continues a run in place with
its saved config and the given overrides, as `alexnet train --resume runs/a --epochs 20`;
`resume="auto"` starts the run when `output_dir` holds no checkpoint and continues it when it
does. `fit` applies the process settings a run needs (denormals flushed to zero, glibc keeping
large blocks) and restores them when it returns. The run directory's files are described in
`alexnet.rundir`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from alexnet import runtime
from alexnet.data.loader import DeviceLoader
from alexnet.evaluate import make_eval_transform
from alexnet.rundir import RunDir, RunResult
from alexnet.train.config import RESUME_AUTO, TrainConfig, check_config
from alexnet.train.inputs import FirstImages
from alexnet.train.loop import StepCallback, end_epoch, train_one_epoch, validate
from alexnet.train.persist import save, write_weights
from alexnet.train.resume import resume_config
from alexnet.train.runlog import write_text
from alexnet.train.setup import device_for, setup
from alexnet.train.signals import StopFlag
from alexnet.train.state import TrainState


def fit(cfg: TrainConfig, *, callbacks: Sequence[StepCallback] = ()) -> RunResult:
    """Train (or resume, when `cfg.resume` is set) the run `cfg` describes; see the module
    docstring. `callbacks` are called after every step with the `TrainState`."""
    check_config(cfg)
    cfg = _auto_resume(cfg)
    info = runtime.dist_info()
    device = device_for(cfg, info)
    with runtime.process_settings():
        generation = runtime.init_distributed(info, device, timeout_s=cfg.dist_timeout)
        state, alive = None, True
        try:
            with StopFlag() as stop:
                state = setup(cfg, info, device, generation=generation)
                _trim_step_log(state)
                return _train(state, stop, callbacks)
        except RuntimeError as exc:
            if not (info.enabled and runtime.is_peer_failure(exc)):
                raise
            alive = False
            raise runtime.peer_lost(exc, info) from None
        finally:
            if state is not None and state.tensorboard is not None:
                state.tensorboard.close()
            runtime.shutdown_distributed(peers_alive=alive)


def _auto_resume(cfg: TrainConfig) -> TrainConfig:
    """`resume="auto"`: the run in `output_dir` continued (its saved config with this config's
    values layered on top, as `--resume RUN` does) when it holds a checkpoint, else started."""
    if cfg.resume != RESUME_AUTO or not RunDir(Path(cfg.output_dir)).has_checkpoint():
        return cfg
    values = {k: v for k, v in cfg.to_json().items() if k not in ("resume", "recipe")}
    return resume_config(cfg.output_dir, recipe=cfg.recipe, **values)


def _train(state: TrainState, stop: StopFlag, callbacks: Sequence[StepCallback]) -> RunResult:
    cfg, pos = state.cfg, state.pos
    if state.resumed and pos.epoch >= cfg.epochs and state.run.is_finished():
        state.say(f"{state.run.path}: finished already ({cfg.epochs} epochs); nothing to train")
        return state.run.result()
    status = "finished"
    while pos.epoch < cfg.epochs:
        status = train_one_epoch(state, stop, callbacks)
        if status == "stopped":
            return _stopped(state, stop)
        end_epoch(state, complete=pos.batch == state.steps_per_epoch)
        if stop.signal:  # arrived during the epoch's end: its writes are done
            return _stopped(state, stop)
        if status == "max_steps":
            break
    result = _finish(state, status)
    result.stop_signal = stop.signum
    return result


def _stopped(state: TrainState, stop: StopFlag) -> RunResult:
    """Checkpoint and say how to continue, in one line."""
    save(state)
    pos = state.pos
    state.say(
        f"stopped by {stop.signal or 'signal'} at epoch {pos.epoch + 1} step {pos.batch}/"
        f"{state.steps_per_epoch}; checkpoint saved; resume with: alexnet train --resume "
        f"{state.run.path}"
    )
    return RunResult("stopped", state.run.path, list(state.history), stop_signal=stop.signum or 15)


def _finish(state: TrainState, status: str) -> RunResult:
    """Final weights, the final evaluation (RUN/eval.json, with the test crops) and the result."""
    cfg, pos, run = state.cfg, state.pos, state.run
    write_weights(state, run.weights, {"epoch": pos.epoch, "global_step": pos.global_step})
    record = state.history[-1] if state.history else {}
    if cfg.test_crops != cfg.eval_crops or not record:
        final = validate(state, cfg.test_crops, transform_for_test(state))
    else:
        final = {k: record.get(f"val_{k}") for k in ("top1_error", "top5_error", "loss")}
        final = {"images": len(state.inputs.val_ds), "crops": cfg.eval_crops, **final}
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
    inputs = state.inputs
    return make_eval_transform(inputs.preprocess, inputs.mean_image, state.cfg.test_crops)


def _train_error(state: TrainState, transform) -> dict:
    """Error of the final weights on the first `train_eval` training images, in evaluation
    mode with the test crops: the training side of a train-test gap (paper §4: overfitting)."""
    cfg, train_ds = state.cfg, state.inputs.train_ds
    subset = FirstImages(train_ds, min(cfg.train_eval, len(train_ds)))
    loader = DeviceLoader(
        subset, cfg.batch_size, shuffle=False, drop_last=False, rank=state.info.rank,
        world_size=state.info.world_size, device=state.device, workers=cfg.workers,
    )  # fmt: skip
    result = validate(state, cfg.test_crops, transform, loader)
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
