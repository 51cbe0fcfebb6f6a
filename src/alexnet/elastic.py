"""Forming the process group again after a torchrun restart, on every node, without hanging.

torchrun (`--max-restarts`) starts the workers again when one fails, and they form their group
through the store of the agent on node 0 (TORCHELASTIC_USE_AGENT_STORE): a store that outlives
the workers. Two things break there. The keys the previous workers left (the dead ones'
addresses) are still in it, so a new worker can read a dead peer's address and time out
connecting to it; and TORCHELASTIC_RESTART_COUNT differs between nodes (an agent whose own
worker failed counts a restart, an agent restarted because another node re-joined does not),
so it cannot name the new group either.

`generation_store` agrees on a fresh namespace for each generation of workers instead:
rank 0 draws a new generation number from an atomic counter in the agent store and announces
it; every other rank answers that number with a random token of its own process and waits
until rank 0 confirms the tokens of all ranks for that number. An announcement left by a dead
rank 0 is never confirmed with this process's token, so it is passed over; the group is then
formed under `alexnet/generation/<n>/`, where no earlier worker wrote. Every wait is bounded
by `timeout` (a dead or absent peer is an error, not a hang).
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import time

import torch.distributed as dist

from alexnet.errors import UserError

_COUNTER, _LEADER = "alexnet/generation/counter", "alexnet/generation/leader"


def uses_agent_store() -> bool:
    """Whether torchrun's agent hosts the store the workers meet in (`--rdzv-backend c10d`)."""
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def agent_store(timeout: datetime.timedelta) -> dist.TCPStore:
    """A client of the store torchrun's agent hosts at MASTER_ADDR:MASTER_PORT."""
    return dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
        timeout=timeout,
    )  # fmt: skip


def generation_store(
    store: dist.Store, rank: int, world_size: int, timeout_s: float
) -> tuple[dist.PrefixStore, int]:
    """(a store namespace no earlier generation of workers used, the generation number)."""
    deadline = time.monotonic() + timeout_s
    token = secrets.token_hex(8)
    if rank == 0:
        generation = int(store.add(_COUNTER, 1))
        store.set(_LEADER, str(generation))
        keys = [f"alexnet/generation/{generation}/token/{r}" for r in range(1, world_size)]
        tokens = [token] + [_wait_get(store, k, deadline).decode() for k in keys]
        store.set(f"alexnet/generation/{generation}/ready", json.dumps(tokens))
    else:
        generation = _follow(store, rank, token, deadline)
    return dist.PrefixStore(f"alexnet/generation/{generation}/", store), generation


def _follow(store: dist.Store, rank: int, token: str, deadline: float) -> int:
    """A non-zero rank: answer rank 0's announced generation until rank 0 confirms it."""
    answered = None
    while True:
        leader = _get_or_none(store, _LEADER)
        if leader is not None and leader.decode() != answered:
            answered = leader.decode()
            store.set(f"alexnet/generation/{answered}/token/{rank}", token)
        if answered is not None:
            ready = _get_or_none(store, f"alexnet/generation/{answered}/ready")
            if ready is not None and json.loads(ready)[rank] == token:
                return int(answered)
        if time.monotonic() > deadline:
            raise UserError(
                "rank 0 of this torchrun generation did not form the process group within "
                "--dist-timeout; is every node up, with the same --nnodes?"
            )
        time.sleep(0.05)


def _get_or_none(store: dist.Store, key: str) -> bytes | None:
    return store.get(key) if store.check([key]) else None


def _wait_get(store: dist.Store, key: str, deadline: float) -> bytes:
    while not store.check([key]):
        if time.monotonic() > deadline:
            raise UserError(
                f"a rank of this torchrun generation did not join within --dist-timeout "
                f"(waiting for {key.rsplit('/', 1)[-1]}); is every node up?"
            )
        time.sleep(0.05)
    return store.get(key)
