"""Where Ctrl-C may raise `KeyboardInterrupt`: only inside `interruptible()`.

The `alexnet` command exits at once with one line on Ctrl-C (exit 130) everywhere except where
a command can save its work: there a `KeyboardInterrupt` lets it stop cleanly (`prepare`
keeps its progress, the fan-out of `reproduce` stops its children; training has its own
handler, `alexnet.train.signals.StopFlag`). Imports never run inside: a `KeyboardInterrupt`
that lands in an import leaves a half-imported module, torch's import swallows one, and one
raised in code that an import `exec`s (every dataclass) makes CPython kill the process with
SIGINT at exit instead of exiting with the command's status.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block Ctrl-C raises `KeyboardInterrupt`; the handler before it comes back
    after (from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
