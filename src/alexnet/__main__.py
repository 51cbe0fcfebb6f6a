"""`python -m alexnet` and the `alexnet` command; first of all, Ctrl-C exits in one line."""

from alexnet.interrupts import exit_at_once

exit_at_once()


def run() -> int:
    """The `alexnet` console script."""
    from alexnet.cli import main

    return main()


if __name__ == "__main__":
    import sys

    sys.exit(run())
