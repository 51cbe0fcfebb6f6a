"""Argument types for every sub-command: each value is checked when the command line is parsed.

Each type is a callable `str -> value` that raises `argparse.ArgumentTypeError` with a one-line
message naming the valid range (the ranges themselves are `alexnet.values` kinds, which library
configs check with too); `kind` ("int", "float", "device", "devices") and `valid`
(the range in words) are attached for help texts and tests.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from alexnet import values as V
from alexnet.values import FloatRange, IntRange, Kind

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
# every --weights flag reads its file through alexnet.weights.load
WEIGHTS_HELP = (
    "weights: an alexnet .safetensors (also Caffe's converted by `alexnet convert caffe`), "
    "torchvision's .pth, the two-device layout, a run's checkpoint.pt / run directory, or a "
    "name: torchvision (downloaded once; `alexnet weights` lists the names)"
)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mark(fn: Callable[[str], Any], kind: str, valid: str) -> Callable[[str], Any]:
    fn.kind = kind  # type: ignore[attr-defined]
    fn.valid = valid  # type: ignore[attr-defined]
    fn.__name__ = valid  # argparse names the type in some messages
    return fn


def from_kind(kind: Kind) -> Callable[[str], Any]:
    """The argparse type of a `alexnet.values.Kind`: parses the text and checks its range."""

    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return _mark(parse, kind.kind, kind.valid)


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound may be open)."""
    return from_kind(IntRange(lo, hi))


def float_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[str], float]:
    """A finite float in the interval lo..hi, each end closed unless `lo_open` / `hi_open`."""
    return from_kind(FloatRange(lo, hi, lo_open, hi_open))


positive_int = from_kind(V.POSITIVE_INT)
nonnegative_int = from_kind(V.NONNEGATIVE_INT)
finite_float = from_kind(V.FINITE)
positive_float = from_kind(V.POSITIVE)
nonnegative_float = from_kind(V.NONNEGATIVE)
probability = from_kind(V.UNIT_INTERVAL_OPEN_TOP)  # e.g. label smoothing, dropout: [0, 1)
momentum = from_kind(V.UNIT_INTERVAL_OPEN_TOP)  # SGD momentum: [0, 1)
factor = from_kind(V.FACTOR)  # a learning-rate divisor: (0, 1)


def _device(text: str) -> str:
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (use {DEVICE_FORMS})")
    return text


def _device_pair(text: str) -> str:
    parts = text.split(",")
    if len(parts) != 2 or not all(_DEVICE_RE.match(p) and p != "auto" for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not two devices DEV0,DEV1 (each cpu, cuda, cuda:N or mps)"
        )
    return text


device = _mark(_device, "device", DEVICE_FORMS)
device_pair = _mark(_device_pair, "devices", "DEV0,DEV1")


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """The `--device` option every computing sub-command has."""
    parser.add_argument(
        "--device", type=device, default=default, help=f"{DEVICE_FORMS} (default: %(default)s)"
    )
