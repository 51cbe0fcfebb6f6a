"""The CPU allocator setting that the `alexnet` command applies to its own process.

PyTorch's CPU tensors come from glibc `malloc`, which serves every block over 32 MB (its
dynamic mmap threshold's ceiling) with a fresh `mmap` and returns it with `munmap` when freed:
a training step of AlexNet allocates and frees such blocks (conv1's maps of a batch of 128
are 148 MB) and the kernel zeroes every page again on first touch, step after step.
`mallopt(M_MMAP_MAX, 0)` serves them from the heap instead, and `M_TRIM_THRESHOLD` keeps the
freed top of the heap mapped, so the pages are reused (PyTorch's CPU tuning guide suggests
the same through jemalloc/tcmalloc). The cost is memory: the process keeps its peak heap.

Applied by the CLI (`alexnet.cli.main`) and, for the run's duration, by `alexnet.train.fit`
(`alexnet.runtime.process_settings`, which resets glibc's documented defaults afterwards if it
applied the setting itself), never on `import alexnet`; the environment variable
`ALEXNET_MALLOC=0` turns it off. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_FREED = 1 << 30  # bytes of freed heap top kept mapped (M_TRIM_THRESHOLD)
GLIBC_MMAP_MAX, GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's documented defaults
ENV = "ALEXNET_MALLOC"
_tuned = False  # whether tune_allocator applied the setting to this process


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator(environ: dict[str, str] | None = None) -> bool:
    """Serve large blocks from the heap and keep freed pages (see the module docstring).
    Returns True when the setting was applied."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "1").strip().lower() in ("0", "off", "false", "no"):
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
