"""Where the work runs: device choice, denormal flushing, torchrun ranks and collectives
(NCCL on CUDA, gloo on CPU; rank 0 alone writes; in a plain process every collective is a
no-op)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from alexnet import malloc
from alexnet.errors import Param, UserError
from alexnet.values import DEVICE


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
    UserError for a name outside `alexnet.values.DEVICE` or a device this machine lacks."""
    if DEVICE.problem(name):
        raise UserError(Param("device"), f" {name}: unknown device (use {DEVICE.valid})")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(Param("device"), f" {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", (info or dist_info()).local_rank)
        if device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise UserError(Param("device"), f" {name}: this machine has {count} CUDA device(s)")
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(Param("device"), f" {name}: MPS is not available on this machine")
    return device


def flush_denormals() -> None:
    """Flush denormal floats to zero on the CPU: the paper's N(0, 0.01) init (§5) makes them in
    the backward pass, and they slow CPU kernels many times (results change by < 1e-38)."""
    torch.set_flush_denormal(True)


def denormals_flushed() -> bool:
    """Whether this thread flushes denormals to zero now (a denormal product tells)."""
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10])) == 0.0


@contextlib.contextmanager
def process_settings() -> Iterator[None]:
    """Denormals flushed and glibc keeping large blocks (`alexnet.malloc`) for a training run;
    both restored on exit (the allocator only if this call tuned it)."""
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


def init_distributed(info: DistInfo, device: torch.device, timeout_s: float = 300.0) -> int:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1; returns the
    generation of workers (`generation_store`; 0 without torchrun's agent store). Every
    collective waits at most `timeout_s` for a peer: a dead one is an error, not a hang."""
    if not info.enabled or dist.is_initialized():
        return 0
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    generation, store = 0, None
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":  # --rdzv-backend c10d
        address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        agent = dist.TCPStore(address, port, is_master=False, timeout=timeout)
        store, generation = generation_store(agent, info.rank, info.world_size, timeout_s)
    dist.init_process_group(
        backend=backend, store=store, rank=info.rank, world_size=info.world_size,
        timeout=timeout,
    )  # fmt: skip
    return generation


def is_peer_failure(exc: BaseException) -> bool:
    """Whether `exc` is a collective's failure (a peer gone), not a bug of this process."""
    if isinstance(exc, dist.DistError):
        return True
    markers = ("gloo", "NCCL", "Connection closed by peer", "Connection reset by peer",
               "Socket Timeout", "timed out")  # fmt: skip
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in markers)


def peer_lost(exc: BaseException, info: DistInfo) -> UserError:
    """The one-line error for a failed collective on this rank, which exits at once after it
    (torchrun must see this rank fail within its monitor interval)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    error = UserError(
        f"rank {info.rank} of {info.world_size} lost a peer ({first[:160]}); stopped, the last "
        "checkpoint is intact (torchrun --max-restarts starts the job again from it)"
    )
    error.leave_at_once = True
    return error


def shutdown_distributed(*, peers_alive: bool = True) -> None:
    """Leave the process group, if joined (no goodbye collective when a peer is gone)."""
    if dist.is_available() and dist.is_initialized() and peers_alive:
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


def broadcast_object(obj: Any) -> Any:
    """Rank 0's small picklable `obj`, on all ranks."""
    return gather_objects(obj)[0]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# After a torchrun restart the agent's store still holds the dead workers' keys, and
# TORCHELASTIC_RESTART_COUNT differs between nodes: each generation of workers agrees on a
# fresh namespace instead. Rank 0 draws a number from a counter and announces it; the others
# answer it with a random token and wait until rank 0 confirms all tokens (an announcement by a
# dead rank 0 is never confirmed, so it is passed over). Every wait is bounded.
_COUNTER, _LEADER = "alexnet/generation/counter", "alexnet/generation/leader"


def generation_store(
    store: dist.Store, rank: int, world_size: int, timeout_s: float
) -> tuple[dist.PrefixStore, int]:
    """(a store namespace no earlier generation of workers used, the generation number)."""
    deadline = time.monotonic() + timeout_s
    token = secrets.token_hex(8)
    if rank == 0:
        generation = int(store.add(_COUNTER, 1))
        store.set(_LEADER, str(generation))
        tokens = [token]
        for r in range(1, world_size):
            key = f"alexnet/generation/{generation}/token/{r}"
            while not store.check([key]):
                _wait(deadline, f"rank {r} of this torchrun generation did not join")
            tokens.append(store.get(key).decode())
        store.set(f"alexnet/generation/{generation}/ready", json.dumps(tokens))
        return dist.PrefixStore(f"alexnet/generation/{generation}/", store), generation
    answered = None  # the generation rank 0 announced, answered with this process's token
    while True:
        if store.check([_LEADER]) and store.get(_LEADER).decode() != answered:
            answered = store.get(_LEADER).decode()
            store.set(f"alexnet/generation/{answered}/token/{rank}", token)
        ready = f"alexnet/generation/{answered}/ready"
        if answered is not None and store.check([ready]):
            if json.loads(store.get(ready))[rank] == token:
                return dist.PrefixStore(f"alexnet/generation/{answered}/", store), int(answered)
        _wait(deadline, "rank 0 of this torchrun generation did not form the process group")


def _wait(deadline: float, what: str) -> None:
    """A moment's sleep; UserError "`what` within --dist-timeout" once `deadline` has passed."""
    if time.monotonic() > deadline:
        raise UserError(
            f"{what} within ", Param("dist_timeout"), "; is every node up, with the same --nnodes?"
        )
    time.sleep(0.05)
