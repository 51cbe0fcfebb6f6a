"""The training checkpoint, RUN/checkpoint.pt (format "alexnet-checkpoint/1"): a plain dict of
tensors and primitives (JSON strings for the nested configs) read with weights_only=True, so no
code runs on load; and every random stream of a run, so that a resumed run repeats an
uninterrupted one exactly: the loader's order is a function of (seed, epoch), each step's
augmentation a generator seeded by `step_seed`, dropout each rank's global RNG (checkpointed)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import Param, UserError
from alexnet.fileio import atomic_write, safe_torch_load
from alexnet.rundir import RunDir

FORMAT = "alexnet-checkpoint/1"
_JSON_FIELDS = ("model_config", "config", "classes", "preprocess")


@dataclass
class Checkpoint:
    """One checkpoint in memory. (epoch, batch): the next global batch to run (from 0);
    epoch_sums / step_window: the running sums of the epoch and of the steps since the last
    steps.jsonl record; rank_rng: every rank's RNG states, by rank; global_batch: the images
    per step over all `world_size` processes."""

    model_config: dict[str, Any]
    model: dict[str, Any]
    data_fingerprint: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    mean_image: Any = None  # torch.Tensor (H, W, 3) float32
    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    best_error: float = math.inf
    elapsed: float = 0.0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    step_window: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    rng: dict[str, Any] = field(default_factory=dict)
    rank_rng: list[dict[str, Any]] | None = None
    world_size: int = 1
    global_batch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that is saved (JSON strings for the nested configs)."""
        out: dict[str, Any] = {"format": FORMAT}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("classes", "preprocess", "mean_image", "rank_rng"):
                continue
            out[f.name] = json.dumps(value) if f.name in _JSON_FIELDS else value
        return out

    @classmethod
    def from_dict(cls, state: Any, path: str | os.PathLike) -> Checkpoint:
        """A loaded dict -> Checkpoint; UserError naming `path` when it is not one."""
        if not is_checkpoint(state):
            raise UserError(f"{path}: not an alexnet checkpoint (format {FORMAT} expected)")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        try:
            for name in _JSON_FIELDS:
                if isinstance(values.get(name), str):
                    values[name] = json.loads(values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: damaged checkpoint ({exc})") from None


def is_checkpoint(obj: Any) -> bool:
    """True for the dict of an alexnet training checkpoint."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def checkpoint_path(path: str | os.PathLike) -> Path:
    """RUN or RUN/checkpoint.pt -> RUN/checkpoint.pt (UserError when a directory has none)."""
    path = Path(path)
    if path.is_dir():
        if not (path / RunDir.CHECKPOINT).is_file():
            raise UserError(
                f"{path}: a directory without {RunDir.CHECKPOINT}; pass a weights file or a run "
                "directory"
            )
        return path / RunDir.CHECKPOINT
    return path


def save_checkpoint(path: str | os.PathLike, ckpt: Checkpoint) -> None:
    """Write `ckpt` atomically (temp file in the same directory, fsync, rename)."""
    atomic_write(path, lambda f: torch.save(ckpt.to_dict(), f))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file with weights_only=True; every failure is one UserError naming it."""
    return Checkpoint.from_dict(safe_torch_load(path), path)


def reconcile_world_size(cfg, saved: Checkpoint, info):
    """The config to continue `saved` with `info.world_size` processes, nothing lost or
    repeated: the position counts global batches (the same images for every world size), so
    another world size continues with batch_size = global batch / world size, refused when that
    does not divide; mid-epoch the global batch cannot change, at an epoch boundary it may."""
    world, global_batch = info.world_size, saved.global_batch or cfg.batch_size
    if saved.batch == 0 and saved.world_size == world:
        return cfg  # at an epoch boundary any batch size continues exactly
    if saved.world_size == world:
        if cfg.batch_size * world != global_batch:
            raise UserError(
                f"{cfg.resume}: the checkpoint is mid-epoch with a global batch of "
                f"{global_batch}; ",
                Param("batch_size"),
                f" {cfg.batch_size} x {world} process(es) would move its position (change the "
                "batch size at an epoch boundary)",
            )
        return cfg
    if global_batch % world:
        raise UserError(
            f"{cfg.resume}: the checkpoint was written by {saved.world_size} process(es) with a "
            f"global batch of {global_batch}; this start has {world} process(es), and "
            f"{global_batch} images do not split evenly over {world}: restart with "
            f"{saved.world_size} processes (or a divisor of {global_batch})"
        )
    return dataclasses.replace(cfg, batch_size=global_batch // world)


def check_compatible(saved: Checkpoint, path: Any, *, model_config: dict, data: str) -> None:
    """Refuse to resume a checkpoint of another model or other data, naming the difference."""
    old, new = saved.model_config, model_config
    if old != new:
        raise UserError(f"{path}: checkpoint is of another model: {_dict_diff(old, new)}")
    if saved.data_fingerprint != data:
        raise UserError(
            f"{path}: checkpoint was trained on other data (fingerprint "
            f"{saved.data_fingerprint} in the checkpoint, {data} in ",
            Param("data"),
            ")",
        )


def _dict_diff(saved: dict, now: dict, prefix: str = "") -> str:
    parts = []
    for key in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                parts.append(_dict_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            parts.append(f"{prefix}{key}={a!r} in the checkpoint, {b!r} now")
    return "; ".join(parts)


def step_seed(seed: int, epoch: int, step: int, rank: int, stream: int = 0) -> int:
    """Seed of one step's augmentation generator, a pure function of its position; `stream` 1
    seeds a rank's global (dropout) RNG at a given global step instead."""
    entropy = [stream, seed, epoch, step, rank]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def step_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed`."""
    return torch.Generator(device=device).manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python RNG states as tensors and ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states `capture_rng_state` took."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
