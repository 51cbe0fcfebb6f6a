"""`python -m alexnet` and the `alexnet` command: the entry point.

Its first statement makes Ctrl-C (SIGINT) and SIGTERM during start-up end in one line and exit
128 + the signal, 130 or 143 (`alexnet.interrupts.exit_at_once`); `alexnet.cli.main` then
runs the command.
"""

from alexnet.interrupts import exit_at_once

exit_at_once()


def run() -> int:
    """The `alexnet` console script."""
    from alexnet.cli import main

    return main()


if __name__ == "__main__":
    import sys

    sys.exit(run())
