"""The one exception type for user mistakes: the CLI prints it as one line, no stack trace;
`need_extra`, the line for an optional extra that is not installed."""

from __future__ import annotations

import importlib


class UserError(ValueError):
    """A mistake in the user's input (a file, a flag, a shape) with a message that says which.

    `leave_at_once`: after the line, the process exits at once (status 1) instead of returning
    2 through its callers (a distributed rank whose peer died: torchrun must see it fail)."""

    leave_at_once = False


def need_extra(module: str, extra: str, what: str) -> None:
    """Import `module`, or raise one line: `what` needs it, pip install 'alexnet[extra]'.
    Called before the work starts, so that nothing is half done when it is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {module}: pip install 'alexnet[{extra}]'") from None
