"""Reused batch buffers and the shared thread pools of the CPU augmentation."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

_POOLS: dict[int, ThreadPoolExecutor] = {}


def thread_pool(n: int) -> ThreadPoolExecutor:
    """One long-lived pool of `n` threads per size (the augmentation splits batches over it)."""
    if n not in _POOLS:
        _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="alexnet-augment")
    return _POOLS[n]


class ReusableBuffers:
    """Recycles large numpy arrays once nothing else references them.

    A fresh 38 MB batch costs ~6 ms of page faults on every call (the allocator returns big
    blocks to the OS); reusing a block skips that. A buffer is handed out again only when its
    reference count shows that no tensor, view or array made from it is alive (torch.from_numpy
    keeps the array referenced through the tensor's storage), so a caller that still holds an
    earlier batch never sees it overwritten. At most `keep` buffers are kept per shape; when
    all are in use a fresh, untracked one is returned.
    """

    def __init__(self, dtype: Any = np.float32, keep: int = 4) -> None:
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self._free: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialized C-contiguous array of `shape`, not referenced by anyone else."""
        with self._lock:
            held = self._free.setdefault(tuple(shape), [])
            for a in held:
                # references: the list, the loop variable, getrefcount's argument
                if sys.getrefcount(a) <= 3:
                    return a
            a = np.empty(shape, self.dtype)
            if len(held) < self.keep:
                held.append(a)
            return a

    def __getstate__(self) -> dict:  # picklable (e.g. for DataLoader workers): start empty
        return {"dtype": self.dtype, "keep": self.keep}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["dtype"], state["keep"])
