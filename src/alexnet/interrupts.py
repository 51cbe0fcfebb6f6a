"""Where Ctrl-C and SIGTERM may raise `KeyboardInterrupt`: only inside `interruptible()`.

The `alexnet` command exits at once with one line on Ctrl-C (exit 130) or SIGTERM (143)
everywhere except where a command can save its work: there a `KeyboardInterrupt` (SIGTERM's
is `Terminated`) lets it stop cleanly (`prepare` keeps its progress, the fan-out of
`reproduce` stops its children; training has its own handler,
`alexnet.train.signals.StopFlag`). Imports never run inside: a `KeyboardInterrupt` that lands
in an import leaves a half-imported module, torch's import swallows one, and one raised in
code that an import `exec`s (every dataclass) makes CPython kill the process with SIGINT at
exit instead of exiting with the command's status.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM inside `interruptible()`: handled as Ctrl-C is; the exit status is 143."""

    signum = int(signal.SIGTERM)


def stopped_by(exc: KeyboardInterrupt) -> str:
    """'interrupted' (Ctrl-C) or 'terminated' (SIGTERM), for the command's last line."""
    return "terminated" if isinstance(exc, Terminated) else "interrupted"


def _terminate(signum, frame) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Terminated


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block Ctrl-C raises `KeyboardInterrupt` and SIGTERM `Terminated`; the
    handlers before it come back after (from the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
