"""What every dataset reader of `alexnet prepare` is: a `Source` that yields `Chunk`s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Chunk:
    """Images (n, H, W, 3) uint8 and labels (n,) int64 for items [start, stop) of a split,
    with the files skipped or repaired on the way as (path, reason) pairs."""

    images: np.ndarray
    labels: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)


class Source:
    """A dataset to pack. Subclasses set name, classes, image_size and implement
    count(split) and load(split, start, stop) -> Chunk."""

    name = "source"
    parallel = False  # True: load() decodes files, run it in worker processes
    classes: list[str]
    image_size: tuple[int, int]
    # (path, reason) of files rejected while listing the input (e.g. no label): reported
    index_skipped: Sequence[tuple[str, str]] = ()

    def count(self, split: str) -> int:
        raise NotImplementedError

    def load(self, split: str, start: int, stop: int) -> Chunk:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What identifies this input (checked before resuming a half-written pack)."""
        return {"source": self.name, "image_size": list(self.image_size)}
