"""The sub-commands of `alexnet` (one module each, see `alexnet.cli`) and what they share: the
one rule that names a library parameter as the command line spells it (`flag_of`), and the
argument types. Each type parses its text with an `alexnet.values` kind, the one check of that
value, and turns its ValueError into argparse's one-line error; it carries `kind` ("int",
"float", "device", ...) and `valid` (the allowed values in words) for help texts and tests."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from alexnet import values as V
from alexnet.errors import UserError
from alexnet.values import FloatRange, IntRange, Kind

# parameters whose flag is not their name with `-` for `_`
_FLAGS = {"out": "--output-dir"}


def flag_of(name: str) -> str:
    """The command-line flag of parameter `name`: `--` + the name with `-` for `_`
    (`batch_size` -> `--batch-size`), or its entry in `_FLAGS`."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def error_line(exc: UserError) -> str:
    """A library's `UserError` as the command line says it: every parameter as its flag."""
    return exc.text(flag_of)


# every --weights flag reads its file through alexnet.weights.load
WEIGHTS_HELP = (
    "weights: an alexnet .safetensors (also Caffe's converted by `alexnet convert caffe`), "
    "torchvision's .pth, the two-device layout, a run's checkpoint.pt / run directory, a "
    "Hugging Face-style folder (`alexnet export --hf`) or id user/name, or a name: torchvision "
    "(downloaded once; `alexnet weights` lists the names); or an .onnx file from `alexnet "
    "export --onnx` (fp32 or --int8; run by onnxruntime on the CPU)"
)


def from_kind(kind: Kind) -> Callable[[str], Any]:
    """The argparse type of a `alexnet.values.Kind`: parses the text and checks it."""

    def parse(text: str) -> Any:
        try:
            return kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.kind, parse.valid = kind.kind, kind.valid  # type: ignore[attr-defined]
    parse.__name__ = kind.valid  # argparse names the type in some messages
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


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """The `--device` option every computing sub-command has."""
    parser.add_argument(
        "--device", type=device, default=default, help=f"{V.DEVICE.valid} (default: %(default)s)"
    )
