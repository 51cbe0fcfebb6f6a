"""glibc serves blocks over 32 MB (conv1's maps of a batch of 128: 148 MB) with fresh mmaps
whose pages the kernel zeroes again every step; `M_MMAP_MAX = 0` and a high `M_TRIM_THRESHOLD`
keep them in the heap for reuse, at the cost of keeping the peak heap. Applied by the CLI and
by `alexnet.train.fit`, never on import; `ALEXNET_MALLOC=0` turns it off; glibc only."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_FREED = 1 << 30  # bytes of freed heap top kept mapped (M_TRIM_THRESHOLD)
GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's documented defaults
_tuned = False  # whether tune_allocator applied the setting to this process


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Serve large blocks from the heap and keep freed pages; True when applied."""
    if os.environ.get("ALEXNET_MALLOC", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    libc = _libc()
    if libc is None:
        return False
    global _tuned
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED) == 1 and ok
    _tuned = _tuned or ok
    return ok


def is_tuned() -> bool:
    """Whether `tune_allocator` has applied the setting to this process."""
    return _tuned


def reset_allocator() -> None:
    """glibc's documented defaults again (its dynamic mmap threshold stays off)."""
    global _tuned
    libc = _libc()
    if libc is not None and _tuned:
        libc.mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
    _tuned = False
