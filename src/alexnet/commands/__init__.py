"""The sub-commands of `alexnet` (one module each, see `alexnet.cli`) and what they share:
`flag_of` (a parameter as the command line spells it), argument types parsed by `alexnet.values`
kinds, and the shared arguments (`--weights`, `--device`, `--batch-size`, `--crops`, `--json`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from alexnet import values as V
from alexnet.data import TEST_CROPS
from alexnet.errors import UserError
from alexnet.values import FloatRange, IntRange, Kind


def flag_of(name: str) -> str:
    """The flag of parameter `name`: `batch_size` -> `--batch-size` (`out`: `--output-dir`)."""
    return "--output-dir" if name == "out" else "--" + name.replace("_", "-")


def error_line(exc: UserError) -> str:
    """A library's `UserError` as the command line says it: every parameter as its flag."""
    return exc.text(flag_of)


def add_weights(parser: argparse.ArgumentParser) -> None:
    """The required `--weights` (read by `alexnet.weights.load`)."""
    parser.add_argument(
        "--weights",
        required=True,
        help="weights: an alexnet .safetensors (also Caffe's converted by `alexnet convert "
        "caffe`), torchvision's .pth, the two-device layout, a run's checkpoint.pt / run "
        "directory, a Hugging Face-style folder (`alexnet export --hf`) or id user/name, or a "
        "name: torchvision (downloaded once; `alexnet weights` lists the names); or an .onnx "
        "file from `alexnet export --onnx` (fp32 or --int8; run by onnxruntime on the CPU)",
    )


def from_kind(kind: Kind) -> Callable[[str], Any]:
    """The argparse type of a `alexnet.values.Kind` (one-line errors), carrying its `kind`."""

    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.kind = kind.kind  # type: ignore[attr-defined]
    return parse


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
device = from_kind(V.DEVICE)


def add_device(parser: argparse.ArgumentParser) -> None:
    """The `--device` option every computing sub-command has."""
    parser.add_argument(
        "--device", type=device, default="auto", help=f"{V.DEVICE.valid} (default: %(default)s)"
    )


def add_batch_size(parser: argparse.ArgumentParser, default: int, more: str = "") -> None:
    """`--batch-size`: images per forward pass (`more`: said after that)."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=default,
        help=f"images per forward pass{more}, >= 1 (default {default})",
    )


def add_crops(parser: argparse.ArgumentParser) -> None:
    """`--crops`: 1, 2 or the paper's 10 test crops per image (§4.1), softmax averaged."""
    parser.add_argument(
        "--crops",
        type=int,
        choices=TEST_CROPS,
        default=1,
        help="1 (centre), 2 (centre + mirror) or 10 (paper §4.1) crops per image, softmax "
        "averaged (default: %(default)s)",
    )


def add_json(parser: argparse.ArgumentParser, text: str = "print one JSON object") -> None:
    """`--json`: the command's output as JSON."""
    parser.add_argument("--json", action="store_true", help=text)
