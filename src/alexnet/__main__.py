"""`python -m alexnet` and the `alexnet` command: the entry point.

Its first statement makes Ctrl-C during start-up end in one line and exit 130 (the C-level
`_signal` module: importing `signal` itself takes milliseconds); `alexnet.cli.main` then takes
over the handling.
"""

import _signal
import os


def _interrupted(signum, frame):  # noqa: ARG001 - a signal handler's signature
    os.write(2, b"alexnet: interrupted\n")
    os._exit(130)


_signal.signal(_signal.SIGINT, _interrupted)


def run() -> int:
    """The `alexnet` console script."""
    from alexnet.cli import main

    return main()


if __name__ == "__main__":
    import sys

    sys.exit(run())
