"""Stop cleanly on SIGTERM / SIGINT: the loop polls the flag after every step."""

from __future__ import annotations

import signal
from typing import Any


class StopFlag:
    """SIGTERM / SIGINT set a flag; the loop finishes its step, checkpoints and the command
    exits with 128 + the signal (as shells report it). A second SIGINT interrupts at once.
    A signal during an epoch-end or final write lets the write finish first."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.signum: int | None = None
        self.old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        self.signum = int(signum)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
