"""Argument types for every sub-command: each value is checked when the command line is parsed.

Each type is a callable `str -> value` that raises `argparse.ArgumentTypeError` with a one-line
message naming the valid range; `kind` ("int", "float", "device", "devices") and `valid`
(the range in words) are attached for help texts and tests.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
# every --weights flag reads its file through alexnet.weights.load
WEIGHTS_HELP = (
    "weights: an alexnet .safetensors, torchvision's .pth, the two-device layout, or a run's "
    "checkpoint.pt / run directory"
)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mark(fn: Callable[[str], Any], kind: str, valid: str) -> Callable[[str], Any]:
    fn.kind = kind  # type: ignore[attr-defined]
    fn.valid = valid  # type: ignore[attr-defined]
    fn.__name__ = valid  # argparse names the type in some messages
    return fn


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (either bound may be open)."""
    if lo is not None and hi is not None:
        valid = f"an integer from {lo} to {hi}"
    elif lo is not None:
        valid = f"an integer >= {lo}"
    else:
        valid = f"an integer <= {hi}" if hi is not None else "an integer"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {valid}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is not {valid}")
        return value

    return _mark(parse, "int", valid)


def float_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Callable[[str], float]:
    """A finite float in the interval lo..hi, each end closed unless `lo_open` / `hi_open`."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    if lo is None and hi is None:
        valid = "a finite number"
    elif hi is None:
        valid = f"a finite number {'>' if lo_open else '>='} {lo:g}"
    elif lo is None:
        valid = f"a finite number {'<' if hi_open else '<='} {hi:g}"
    else:
        valid = f"a number in {left}{lo:g}, {hi:g}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {valid}") from None
        bad = not math.isfinite(value)
        bad |= lo is not None and (value <= lo if lo_open else value < lo)
        bad |= hi is not None and (value >= hi if hi_open else value > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"{text} is not {valid}")
        return value

    return _mark(parse, "float", valid)


positive_int = int_range(1)
nonnegative_int = int_range(0)
finite_float = float_range()
positive_float = float_range(0.0, lo_open=True)
nonnegative_float = float_range(0.0)
probability = float_range(0.0, 1.0, hi_open=True)  # e.g. label smoothing, dropout: [0, 1)
momentum = float_range(0.0, 1.0, hi_open=True)  # SGD momentum: [0, 1)
factor = float_range(0.0, 1.0, lo_open=True, hi_open=True)  # a learning-rate divisor: (0, 1)


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
        "--device", type=device, default=default, help=f"{DEVICE_FORMS} (default: auto)"
    )
