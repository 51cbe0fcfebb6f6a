"""Ctrl-C (SIGINT) and SIGTERM: every handler is installed here. The command exits at once
with one line (130, 143; `exit_at_once`) except inside `interruptible()` (a KeyboardInterrupt
the command handles; no imports inside it: one landing there leaves a half-imported module)
and `StopFlag` (training checkpoints). Only `_signal` is imported: `signal` imports `enum`,
tens of milliseconds during which Ctrl-C would print a traceback."""

from __future__ import annotations

import _signal
import os
from contextlib import contextmanager

TYPE_CHECKING = False  # typing and collections.abc: tens of milliseconds before the handlers
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

SIGINT, SIGTERM = int(_signal.SIGINT), int(_signal.SIGTERM)
_WORDS = {SIGINT: "interrupted", SIGTERM: "terminated"}  # the exit line's word for each
_PROGRAM = ["alexnet"]  # the name the exit line starts with


def _install(on_int: Any, on_term: Any) -> dict[int, Any]:
    """Set the handlers of SIGINT and SIGTERM; the previous ones ({} off the main thread)."""
    try:
        return {SIGINT: _signal.signal(SIGINT, on_int), SIGTERM: _signal.signal(SIGTERM, on_term)}
    except ValueError:  # not the main thread
        return {}


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        _signal.signal(signum, handler)


def _exit_now(signum: int, frame: Any) -> None:  # noqa: ARG001 - a signal handler's signature
    """Nothing to save: one line (no traceback) and exit 128 + the signal."""
    os.write(2, f"{_PROGRAM[0]}: {_WORDS[signum]}\n".encode())
    os._exit(128 + signum)


def exit_at_once(program: str | None = None) -> None:
    """From now on Ctrl-C and SIGTERM end the process at once with "PROGRAM: interrupted" (or
    "terminated"), exit 130 (143). `program` ("alexnet train") is kept for later calls."""
    if program is not None:
        _PROGRAM[0] = program
    _install(_exit_now, _exit_now)


def ignore_ctrl_c() -> None:
    """A worker process ignores Ctrl-C (its parent handles it and stops the worker)."""
    _signal.signal(SIGINT, _signal.SIG_IGN)


class Terminated(KeyboardInterrupt):
    """SIGTERM inside `interruptible()`: handled as Ctrl-C is; the exit status is 143."""


def signal_of(exc: KeyboardInterrupt) -> int:
    """The signal that raised `exc`: SIGTERM for `Terminated`, else SIGINT (Ctrl-C)."""
    return SIGTERM if isinstance(exc, Terminated) else SIGINT


def stopped_by(exc: KeyboardInterrupt) -> str:
    """'interrupted' (Ctrl-C) or 'terminated' (SIGTERM), for the command's last line."""
    return _WORDS[signal_of(exc)]


def _terminate(signum: int, frame: Any) -> None:  # noqa: ARG001 - a signal handler's signature
    raise Terminated


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block Ctrl-C raises `KeyboardInterrupt` and SIGTERM `Terminated` (a no-op
    off the main thread)."""
    previous = _install(_signal.default_int_handler, _terminate)
    try:
        yield
    finally:
        _restore(previous)


class StopFlag:
    """Within the block SIGTERM / SIGINT set a flag that the training loop polls after every
    step (it checkpoints, then exits 128 + the signal); a second SIGINT interrupts at once."""

    signal: str | None = None  # "SIGTERM" or "SIGINT" once one came
    signum: int | None = None

    def __enter__(self) -> StopFlag:
        self._previous = _install(self._handle, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == SIGINT:
            raise KeyboardInterrupt
        self.signal = "SIGINT" if signum == SIGINT else "SIGTERM"
        self.signum = int(signum)

    def __exit__(self, *exc: object) -> None:
        _restore(self._previous)
