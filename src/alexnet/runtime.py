"""Where the work runs: device choice, denormal flushing, torchrun ranks and collectives.

Distributed data parallel through torchrun (RANK / WORLD_SIZE / LOCAL_RANK): NCCL on CUDA,
gloo on CPU. Rank 0 alone logs and writes; sums are all-reduced so that metrics cover every
rank's images exactly once. In a plain process every collective is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from alexnet import malloc
from alexnet.errors import UserError

DEVICE_HELP = "auto | cpu | cuda | cuda:N"


@dataclass(frozen=True)
class DistInfo:
    """This process's place among torchrun's processes (rank 0 of 1 when not launched so)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read torchrun's environment; a plain process is rank 0 of 1."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """ "auto" -> this rank's CUDA device if there is one, else CPU; "cuda" -> cuda:LOCAL_RANK.

    UserError (one line) for a name torch does not know or a device this machine lacks.
    """
    info = info or dist_info()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: unknown device (use {DEVICE_HELP})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        if device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UserError(f"--device {name}: this machine has {count} CUDA device(s)")
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name}: unsupported device type (use {DEVICE_HELP})")
    return device


def flush_denormals() -> None:
    """Flush denormal floats to zero on the CPU: they make CPU kernels many times slower (the
    paper's N(0, 0.01) init, §5, produces them in the backward pass); results change by less
    than 1e-38."""
    torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero now (torch has no getter: a
    denormal product tells)."""
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10])) == 0.0


@contextlib.contextmanager
def process_settings() -> Iterator[None]:
    """What a training run needs of its process, restored on exit: denormals flushed to zero
    (`flush_denormals`) and glibc keeping large blocks (`alexnet.malloc`; its setting cannot be
    read back, so it is reset to glibc's defaults only if this call applied it)."""
    flushed = denormals_flushed()
    flush_denormals()
    tuned = not malloc.is_tuned() and malloc.tune_allocator()
    try:
        yield
    finally:
        if not flushed:
            torch.set_flush_denormal(False)
        if tuned:
            malloc.reset_allocator()


def init_distributed(info: DistInfo, device: torch.device, timeout_s: float = 300.0) -> None:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1. Every collective
    and the group's own rendezvous wait at most `timeout_s` for a peer: a dead or hung peer
    ends this process with an error instead of hanging it."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def shutdown_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (a no-op in a single process); returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's small picklable `obj`, by rank (all ranks get the list); [obj] alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a small picklable object from rank `src` to all ranks (used for error messages)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for results that say which machine made them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
