"""Progress bars: tqdm's, or a silent stand-in on a bare machine without tqdm."""

from __future__ import annotations

import contextlib
from typing import Any


class SilentBar(contextlib.AbstractContextManager):
    """The part of tqdm's interface this package uses, doing nothing."""

    def __init__(self, total: float | None = None, initial: float = 0, **_: Any) -> None:
        self.total, self.n = total, initial

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *_: Any, **__: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *_: Any) -> None:
        self.close()


def progress_bar(**kwargs: Any) -> Any:
    """`tqdm(**kwargs)`, or a SilentBar when tqdm cannot be imported."""
    try:
        from tqdm import tqdm
    except ImportError:
        return SilentBar(**kwargs)
    return tqdm(**kwargs)
