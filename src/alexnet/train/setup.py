"""Set a run up from its config, top to bottom in the order it happens (`setup`).

1. the automatic choices resolved (channels-last, absolute paths) and the backend flags set;
2. the data opened (train and validation splits, --train-limit / --val-limit);
3. on resume, the checkpoint read and its world size and global batch reconciled;
4. the model built from the seed (identical on every rank), paired with `init_like`, and
   checked against the checkpoint (another model or other data is refused);
5. the run directory checked (creatable, writable, room for checkpoints; never a second run);
6. the model placed (device, two-device split, channels-last, DDP, torch.compile);
7. SGD and the learning-rate schedule;
8. the inputs: geometry, preprocessing, the transforms and the loaders;
9. the checkpoint's state restored (or each rank's dropout stream seeded);
10. RUN/config.json written (every automatic choice resolved), TensorBoard opened, the start
    recorded in RUN/starts.jsonl.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alexnet import runtime
from alexnet.checkpoint import Checkpoint, load_checkpoint
from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.evaluate import make_eval_transform
from alexnet.models.parallel import TwoDeviceAlexNet
from alexnet.models.registry import get_model
from alexnet.rundir import RunDir
from alexnet.train import inputs as inputs_mod
from alexnet.train.compat import check_compatible, check_same_data, reconcile_world_size
from alexnet.train.config import RESUME_AUTO, TrainConfig, config_json, resolve_channels_last
from alexnet.train.optim import make_optimizer
from alexnet.train.randomness import restore_rng_state, step_seed
from alexnet.train.runlog import TensorBoard, append_jsonl, write_text
from alexnet.train.schedules import make_schedule
from alexnet.train.state import Inputs, Network, Optimization, Sums, TrainState


def setup(
    cfg: TrainConfig, info: runtime.DistInfo, device: torch.device, *, generation: int = 0
) -> TrainState:
    """Build the run's state from its config (steps 1-10 of the module docstring);
    `generation`: the torchrun generation of the workers (`alexnet.elastic`), recorded."""
    cfg = _resolved(cfg, device)
    _set_backends(cfg, device)
    train_ds, val_ds = _open_data(cfg)
    check_same_data(cfg, train_ds, info)
    saved = load_checkpoint(_checkpoint_path(cfg.resume), "cpu") if cfg.resume else None
    if saved is not None:
        cfg = reconcile_world_size(cfg, saved, info)
    net = _build_model(cfg, train_ds)
    if saved is not None:
        check_compatible(saved, cfg.resume, model_config=net.config, data=train_ds.fingerprint)
    run = RunDir(cfg.output_dir)
    _check_run_dir(run, net, info, resuming=saved is not None)
    network = _place(cfg, net, device, info)
    optim = _optimization(cfg, network, device)
    inputs = _inputs(cfg, train_ds, val_ds, net, info, device)
    state = TrainState(cfg, run, info, device, network, inputs, optim)
    if state.steps_per_epoch == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images are fewer than one global batch of "
            f"{cfg.batch_size * info.world_size}; lower --batch-size"
        )
    if saved is not None:
        restore(state, saved)
    else:
        torch.manual_seed(step_seed(cfg.seed, 0, 0, info.rank, stream=1))  # dropout, per rank
    _record_start(state, saved, generation)
    return state


# ------------------------------------------------------------------ 1. choices and backends
def _resolved(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """Every automatic choice made: channels-last by the measured rule, paths absolute (so a
    run resumes from any directory, and `fit` writes what `alexnet train` writes)."""
    absolute = {
        name: str(Path(getattr(cfg, name)).expanduser().resolve())
        for name in ("data", "output_dir")
        if getattr(cfg, name)
    }
    resume = cfg.resume if cfg.resume != RESUME_AUTO else None
    return dataclasses.replace(
        cfg, channels_last=resolve_channels_last(cfg, device.type), resume=resume, **absolute
    )


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


# ------------------------------------------------------------------ 2. data
def _open_data(cfg: TrainConfig):
    train_ds, val_ds = open_dataset(cfg.data, "train"), open_dataset(cfg.data, "val")
    if len(train_ds) == 0:
        raise UserError(f"{cfg.data}: the train split holds no images; nothing to train on")
    if 0 < cfg.train_limit < len(train_ds):
        train_ds = inputs_mod.FirstImages(train_ds, cfg.train_limit)
    if 0 < cfg.val_limit < len(val_ds):
        val_ds = inputs_mod.FirstImages(val_ds, cfg.val_limit)
    return train_ds, val_ds


# ------------------------------------------------------------------ 3. the checkpoint
def _checkpoint_path(resume: str) -> Path:
    src = Path(resume)
    return src / RunDir.CHECKPOINT if src.is_dir() else src


# ------------------------------------------------------------------ 4. the model
def _build_model(cfg: TrainConfig, train_ds) -> nn.Module:
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    options = inputs_mod.model_options(cfg, train_ds.image_size, train_ds.stats)
    net = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    if cfg.init_like is not None:
        _init_like(net, cfg, train_ds)
    return net


def _init_like(net: nn.Module, cfg: TrainConfig, train_ds) -> None:
    """Pair a variant with a reference model (experiments): every tensor whose name and shape
    the two share starts from the reference's initial value for the same seed, so a variant
    that removes a layer or changes a width still shares the other layers' starting weights."""
    like = dataclasses.replace(cfg, model_options=dict(cfg.init_like or {}))
    options = inputs_mod.model_options(like, train_ds.image_size, train_ds.stats)
    torch.manual_seed(cfg.seed)
    reference = get_model(cfg.model, num_classes=train_ds.num_classes, **options)
    own = net.state_dict()
    shared = {
        k: v for k, v in reference.state_dict().items() if k in own and own[k].shape == v.shape
    }
    net.load_state_dict(shared, strict=False)


# ------------------------------------------------------------------ 5. the run directory
def _check_run_dir(run: RunDir, net: nn.Module, info: runtime.DistInfo, *, resuming: bool) -> None:
    error = None
    if info.is_main:
        try:
            check_run_dir(run.path, bytes_needed(net), resuming=resuming)
        except UserError as exc:
            error = str(exc)
    error = runtime.broadcast_object(error)
    if error:
        raise UserError(error)


def check_run_dir(run: Path, need_bytes: int, *, resuming: bool) -> None:
    """Create RUN and fail early, with a clear message, if it cannot hold the run's files.
    A run already there is never overwritten: the error says how to continue it."""
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{run}: cannot create the run directory ({exc.strerror})") from None
    if not resuming and RunDir(run).has_checkpoint():
        elastic = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0
        how = (
            f"under torchrun --max-restarts give --output-dir {run} --resume {RESUME_AUTO}, "
            "which starts the run or continues it"
            if elastic
            else f"continue it with --resume {run} (or --resume {RESUME_AUTO})"
        )
        raise UserError(f"{run}: already holds a run ({RunDir.CHECKPOINT}); {how}, or choose "
                        "another --output-dir")  # fmt: skip
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=run)
        with os.fdopen(fd, "wb") as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"{run}: not writable ({exc.strerror})") from None
    free = shutil.disk_usage(run).free
    if free < need_bytes:
        raise UserError(
            f"{run}: only {free / 2**20:.0f} MiB free, the run needs about "
            f"{need_bytes / 2**20:.0f} MiB for checkpoints and weights"
        )


def bytes_needed(model: nn.Module) -> int:
    """Checkpoint (weights + momentum, twice during an atomic replace) + 2 weight files."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return 6 * params + (16 << 20)


# ------------------------------------------------------------------ 6. placement
def _place(cfg: TrainConfig, net: nn.Module, device: torch.device, info) -> Network:
    """The model on its device(s), DDP-wrapped under torchrun, compiled with --compile."""
    if cfg.model_parallel:
        devices = tuple(d.strip() for d in cfg.model_parallel.split(","))
        model = TwoDeviceAlexNet.from_paper(net, devices=devices)
        get_state, set_state = model.paper_state_dict, model.load_paper_state_dict
    else:
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        model = net = net.to(device=device, memory_format=memory_format)
        get_state, set_state = net.state_dict, net.load_state_dict
    evaluate_model = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    forward = torch.compile(model) if cfg.compile else model
    return Network(net, model, forward, evaluate_model, get_state, set_state)


# ------------------------------------------------------------------ 7. optimization
def sync_free_step(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the step never waits for the device: on CUDA (one device per process). On a
    CPU each step reads its numbers at once (the CPU computes synchronously anyway)."""
    return device.type == "cuda" and not cfg.model_parallel


def fused_sgd(cfg: TrainConfig, device: torch.device) -> bool:
    """torch's fused SGD kernel: on CUDA, where it is one launch and can skip a step on the
    device; on a CPU the per-parameter kernels of every earlier run (bitwise resume)."""
    return sync_free_step(cfg, device)


def _optimization(cfg: TrainConfig, network: Network, device: torch.device) -> Optimization:
    """SGD (paper §5) and the schedule. On CUDA the step never waits for the device: fused SGD,
    which skips a non-finite step on the device itself (its `found_inf`)."""
    optimizer = make_optimizer(
        network.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, fused=fused_sgd(cfg, device),
    )  # fmt: skip
    return Optimization(optimizer, make_schedule(cfg), sync_free_step(cfg, device))


# ------------------------------------------------------------------ 8. inputs
def _inputs(cfg: TrainConfig, train_ds, val_ds, net, info, device) -> Inputs:
    in_channels = int(getattr(net, "in_channels", 3))
    geometry = inputs_mod.plan_geometry(
        train_ds.image_size, net.input_size, augment=cfg.augment, pad=cfg.pad, resize=cfg.resize
    )
    stats = train_ds.stats
    preprocess = inputs_mod.preprocess_for(
        cfg, geometry, in_channels, stats, min(train_ds.image_size)
    )
    mean_image = torch.as_tensor(stats.mean_image, dtype=torch.float32)

    def loader(ds, shuffle: bool) -> DeviceLoader:
        return DeviceLoader(
            ds, cfg.batch_size, shuffle=shuffle, drop_last=shuffle, seed=cfg.seed,
            rank=info.rank, world_size=info.world_size, device=device, workers=cfg.workers,
        )  # fmt: skip

    train_transform = inputs_mod.make_train_transform(cfg, geometry, in_channels, stats)
    if device.type == "cuda":  # batches made in the model's dtype and layout (the CPU: fp32)
        dtype = torch.bfloat16 if cfg.amp else None
        train_transform.produce(dtype, channels_last=bool(cfg.channels_last))
    return Inputs(
        train_ds=train_ds,
        val_ds=val_ds,
        train_loader=loader(train_ds, True),
        val_loader=loader(val_ds, False),
        train_transform=train_transform,
        eval_transform=make_eval_transform(preprocess, mean_image, cfg.eval_crops),
        geometry=geometry,
        preprocess=preprocess,
        mean_image=mean_image,
    )


# ------------------------------------------------------------------ 9. restore
def restore(state: TrainState, saved: Checkpoint) -> None:
    """Load a checkpoint's state into `state` (from `checkpoint_of`, or an older one)."""
    state.network.load_state_dict(saved.model)
    state.optim.optimizer.load_state_dict(saved.optimizer)
    state.optim.schedule.load_state_dict(saved.schedule)
    for name in ("epoch", "batch", "global_step", "best_error", "elapsed"):
        setattr(state.pos, name, getattr(saved, name))
    state.epoch_sums = Sums(**saved.epoch_sums)
    state.window = Sums(**saved.step_window)
    state.history = list(saved.history)
    rank, same_world = state.info.rank, saved.world_size == state.info.world_size
    if saved.rank_rng is not None and same_world:
        restore_rng_state(saved.rank_rng[rank])
    elif rank == 0 and same_world:
        restore_rng_state(saved.rng)
    else:  # a rank the checkpoint did not save: reseeded from the position
        torch.manual_seed(step_seed(state.cfg.seed, 0, state.pos.global_step, rank, 1))
    state.resumed = True


# ------------------------------------------------------------------ 10. config and log
def _record_start(state: TrainState, saved: Checkpoint | None, generation: int) -> None:
    """RUN/config.json (rewritten whole on every start), TensorBoard, and one line in
    RUN/starts.jsonl: the workers' generation (1, 2, ... under torchrun's agent store), rank 0's
    agent's restart count (torchrun counts per node), world size, the step resumed at."""
    cfg, info, run = state.cfg, state.info, state.run
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    record = {
        "time": round(time.time(), 3),
        "resumed": saved is not None,
        "generation": generation,
        "restart_count": restart,
        "world_size": info.world_size,
        "global_step": state.pos.global_step,
        "epoch": state.pos.epoch,
        "batch": state.pos.batch,
        "batch_size": cfg.batch_size,
    }
    if saved is not None and saved.world_size != info.world_size:
        record["previous_world_size"] = saved.world_size
    if not info.is_main:
        return
    write_text(run.config, _config_text(state))
    state.tensorboard = TensorBoard(run.path, purge_step=state.pos.global_step or None)
    append_jsonl(run.starts, record)
    if saved is not None:
        moved = f" (was {saved.world_size} processes)" if "previous_world_size" in record else ""
        state.say(
            f"resuming {run.path} at epoch {state.pos.epoch + 1} step {state.pos.batch}/"
            f"{state.steps_per_epoch} (global step {state.pos.global_step}), "
            f"{info.world_size} process(es){moved}"
            + (f", torchrun restart {restart}" if restart else "")
        )


def _config_text(state: TrainState) -> str:
    inputs = state.inputs
    return config_json(
        state.cfg,
        model=state.network.net.config,
        geometry=inputs.geometry,
        preprocess=inputs.preprocess.to_json(),
        classes=list(inputs.train_ds.classes),
        world_size=state.info.world_size,
        data_fingerprint=inputs.train_ds.fingerprint,
    )


def device_for(cfg: TrainConfig, info: runtime.DistInfo) -> torch.device:
    """This process's device: --model-parallel's first, else --device (torchrun: LOCAL_RANK)."""
    if cfg.model_parallel:
        devices = [d.strip() for d in cfg.model_parallel.split(",")]
        if len(devices) != 2 or info.enabled:
            raise UserError("--model-parallel takes two devices, DEV0,DEV1, in a single process")
        return runtime.resolve_device(devices[0], info)
    return runtime.resolve_device(cfg.device, info)
