"""The `alexnet` command line. Each sub-command `alexnet.commands.<name>` defines
`add_parser(subparsers)` and `run(args) -> int`; building the parsers imports no torch, so
`--help` and a mistyped flag answer at once. User mistakes and Ctrl-C / SIGTERM end in one line
(exit 2, 130, 143; `alexnet.interrupts`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alexnet import __version__
from alexnet.interrupts import exit_at_once, signal_of, stopped_by

# Sub-command modules, in the order `alexnet --help` lists them.
COMMANDS = (
    "summary prepare train eval predict features neighbors explore kernels plot export report "
    "serve reproduce convert weights"
).split()


class _Parser(argparse.ArgumentParser):
    """Errors in one line; argparse's "invalid choice: 'X' (...)" gets "; did you mean Y?"
    when one is close."""

    def error(self, message: str):  # type: ignore[override]
        import difflib
        import re

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found is not None:
            choices = [c.strip(" '\"") for c in found.group(2).split(",")]
            close = difflib.get_close_matches(found.group(1), choices, n=1)
            message += f"; did you mean {close[0]}?" if close else ""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `alexnet` parser (imports no torch). `only`: the one sub-command built in full (the
    others are bare names, so a mistyped command still gets its closest match); None: all."""
    parser = _Parser(
        prog="alexnet",
        description="AlexNet (Krizhevsky et al., 2012): train, evaluate and use it.",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            subparsers.add_parser(name)
            continue
        module = importlib.import_module(f"alexnet.commands.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The sub-command `argv` names (its first word that is not an option), if any."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def _run_command(args, entry: bool) -> int:
    """Run the parsed command; a user mistake, OS error or Ctrl-C becomes one line.
    `entry`: this is the process's own command line."""
    from alexnet.commands import error_line
    from alexnet.errors import UserError
    from alexnet.malloc import tune_allocator

    try:
        tune_allocator()  # glibc keeps large blocks (`alexnet.malloc`; ALEXNET_MALLOC=0: off)
        if not getattr(args, "_light", False):  # the command runs a network
            # while Ctrl-C still exits at once: numpy whole, before torch imports it
            import numpy  # noqa: F401

            from alexnet.runtime import flush_denormals

            flush_denormals()
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"alexnet {args.command}: error: {error_line(exc)}", file=sys.stderr)
        if exc.leave_at_once:  # e.g. a peer died: torchrun must see this rank fail now
            sys.stderr.flush()
            os._exit(1)
        return 2
    except OSError as exc:  # disk full, read-only, permission: one line, not a traceback
        from alexnet.commands.outputs import os_error_line

        where = getattr(args, "output_dir", None) or getattr(args, "out", None)
        line, status = os_error_line(exc, where)
        print(f"alexnet {args.command}: error: {line}", file=sys.stderr)
        return status
    except KeyboardInterrupt as exc:  # a command may say how to continue (prepare does)
        signum = signal_of(exc)
        print(f"alexnet {args.command}: {exc or stopped_by(exc)}", file=sys.stderr)
        if entry:  # the work is saved; a normal exit could still end in SIGINT (see interrupts)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)
        return 128 + signum


def main(argv: list[str] | None = None) -> int:
    """Run `alexnet` with `argv` (default: the process's command line, where Ctrl-C exits at
    once unless the command takes it over; with an argv the caller's handler stays)."""
    entry = argv is None
    if entry:
        exit_at_once()
    try:
        parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
        args = parser.parse_args(argv)
        if entry and args.command:
            exit_at_once(f"alexnet {args.command}")
        if getattr(args, "_run", None) is None:
            parser.print_help()
            return 2
        return _run_command(args, entry)
    finally:
        if entry:
            exit_at_once()  # shutdown: nothing left to save
