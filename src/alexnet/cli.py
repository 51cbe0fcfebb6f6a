"""The `alexnet` command line: thin sub-commands that parse, call the library and print.

Each sub-command lives in `alexnet.commands.<name>` and defines
`add_parser(subparsers)` (registering itself) and `run(args) -> int`.
User mistakes raise `UserError` and are printed as one line without a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alexnet import __version__
from alexnet.commands.outputs import os_error_line
from alexnet.errors import UserError
from alexnet.malloc import tune_allocator
from alexnet.runtime import flush_denormals

# Sub-command modules, in the order `alexnet --help` lists them.
COMMANDS = [
    "summary",
    "prepare",
    "train",
    "eval",
    "predict",
    "features",
    "neighbors",
    "kernels",
    "plot",
    "export",
    "report",
    "serve",
    "reproduce",
    "convert",
    "weights",
]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): `alexnet CMD: error: ...`."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alexnet",
        description="AlexNet (Krizhevsky et al., 2012): train, evaluate and use it.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"alexnet.commands.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    flush_denormals()
    tune_allocator()  # large blocks from the heap, pages kept (alexnet.malloc; ALEXNET_MALLOC=0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"alexnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permission: one line, not a traceback
        line, status = os_error_line(exc)
        print(f"alexnet {args.command}: error: {line}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
