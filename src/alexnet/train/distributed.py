"""Old home of the torchrun helpers; they live in `alexnet.runtime` now.

# lead: remove after merge (only train/loop.py still imports this module)
"""

from __future__ import annotations

from alexnet.runtime import (
    DistInfo,
    all_reduce_sum,
    broadcast_object,
    resolve_device,
)
from alexnet.runtime import dist_info as from_env
from alexnet.runtime import init_distributed as init
from alexnet.runtime import shutdown_distributed as shutdown

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "broadcast_object",
    "from_env",
    "init",
    "resolve_device",
    "shutdown",
]
