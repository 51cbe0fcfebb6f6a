"""`python -m alexnet` and the `alexnet` command: the entry point.

Its first statements make Ctrl-C (SIGINT) and SIGTERM during start-up end in one line and exit
128 + the signal, 130 or 143 (the C-level `_signal` module: importing `signal` itself takes
milliseconds); `alexnet.cli.main` then takes over the handling.
"""

import _signal
import os


def _stopped(signum, frame):  # noqa: ARG001 - a signal handler's signature
    os.write(2, b"alexnet: interrupted\n" if signum == _signal.SIGINT else b"alexnet: terminated\n")
    os._exit(128 + signum)


_signal.signal(_signal.SIGINT, _stopped)
_signal.signal(_signal.SIGTERM, _stopped)


def run() -> int:
    """The `alexnet` console script."""
    from alexnet.cli import main

    return main()


if __name__ == "__main__":
    import sys

    sys.exit(run())
