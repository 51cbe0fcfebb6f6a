"""`python -m alexnet` and the `alexnet` command (`run`): first, Ctrl-C exits in one line."""

from alexnet.interrupts import exit_at_once

exit_at_once()

from alexnet.cli import main as run  # noqa: E402 - after the handlers are in

if __name__ == "__main__":
    import sys

    sys.exit(run())
