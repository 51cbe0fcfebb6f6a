"""What a run may be continued with: the same model and data as its checkpoint, the same
dataset on every rank, and a world size that keeps the position exact (paper §5's long runs,
resumed under torchrun)."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from alexnet import runtime
from alexnet.checkpoint import Checkpoint
from alexnet.errors import UserError
from alexnet.models.registry import option_defaults
from alexnet.train.config import TrainConfig


def check_same_data(cfg: TrainConfig, train_ds, info: runtime.DistInfo) -> None:
    """Every rank must read the same packed dataset (its fingerprint): one line naming the
    ranks (and hosts) whose copy differs from rank 0's."""
    if not info.enabled:
        return
    mine = (train_ds.fingerprint, socket.gethostname())
    seen = runtime.gather_objects(mine)
    other = [f"rank {r} on {host} ({fp})" for r, (fp, host) in enumerate(seen) if fp != seen[0][0]]
    if other:
        raise UserError(
            f"{cfg.data}: not the same packed dataset on every rank: rank 0 on {seen[0][1]} has "
            f"fingerprint {seen[0][0]}, but " + ", ".join(other) + " (copy the same dataset "
            "to every node, at the same path)"
        )


def reconcile_world_size(
    cfg: TrainConfig, saved: Checkpoint, info: runtime.DistInfo
) -> TrainConfig:
    """The config to continue `saved` with `info.world_size` processes, nothing lost or
    repeated. The position is counted in global batches (the loader's rule: global batch k is
    the same images for every world size), so the global batch is kept: another world size
    continues with batch_size = global batch / world size when that divides, and is refused
    in one line naming both sizes when it does not. Mid-epoch the global batch cannot change
    (that would move the position); at an epoch boundary it may."""
    world, global_batch = info.world_size, saved.global_batch or cfg.batch_size
    if saved.batch == 0 and saved.world_size == world:
        return cfg  # at an epoch boundary any batch size continues exactly
    if saved.world_size == world:
        if cfg.batch_size * world != global_batch:
            raise UserError(
                f"{cfg.resume}: the checkpoint is mid-epoch with a global batch of "
                f"{global_batch}; --batch-size {cfg.batch_size} x {world} process(es) would move "
                "its position (change the batch size at an epoch boundary)"
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
    """Refuse to resume a checkpoint of another model or other data, naming the difference.

    An option that a checkpoint from an earlier version lacks means that option's default
    (options are only ever added with a default that keeps the earlier network)."""
    old, new = with_default_options(saved.model_config), with_default_options(model_config)
    if old != new:
        raise UserError(f"{path}: checkpoint is of another model: {_dict_diff(old, new)}")
    if saved.data_fingerprint != data:
        raise UserError(
            f"{path}: checkpoint was trained on other data (fingerprint "
            f"{saved.data_fingerprint} in the checkpoint, {data} in --data)"
        )


def with_default_options(model_config: dict) -> dict:
    """`model_config` ({"name", "options"}) with each absent option set to its default."""
    name = model_config.get("name")
    if not isinstance(model_config.get("options"), dict):
        return model_config
    try:
        options = {**option_defaults(name), **model_config["options"]}
    except UserError:  # not a model of this version: compared as it is
        return model_config
    return {**model_config, "options": options}


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
