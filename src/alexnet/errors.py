"""The one exception type for user mistakes: the CLI prints it as one line, no stack trace;
`Param`, a parameter's name inside its message; `need_extra`, the line for an optional extra
that is not installed."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # the package imports this before the command's signal handlers
if TYPE_CHECKING:
    from collections.abc import Callable


class Param(str):
    """The name of a parameter (a config field, a function's argument) inside a `UserError`
    message: Python reads the name itself (`batch_size`), the command line its flag
    (`--batch-size`)."""


class UserError(ValueError):
    """A mistake in the user's input (a file, a value, a shape) with a message that says which.
    The message is its parts joined: `UserError(Param("epochs"), ": 0 is not >= 1")` reads
    "epochs: 0 is not >= 1"; `text(name_of)` writes each `Param` part as `name_of` says.

    `leave_at_once`: after the line, the process exits at once (status 1) instead of returning
    2 through its callers (a distributed rank whose peer died: torchrun must see it fail)."""

    leave_at_once = False

    def __str__(self) -> str:
        return self.text(str)

    def text(self, name_of: Callable[[str], str]) -> str:
        """The message with every `Param` part written as `name_of(part)`."""
        return "".join(name_of(p) if isinstance(p, Param) else str(p) for p in self.args)


def need_extra(module: str, extra: str, what: str) -> None:
    """Import `module`, or raise one line: `what` needs it, pip install 'alexnet[extra]'.
    Called before the work starts, so that nothing is half done when it is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {module}: pip install 'alexnet[{extra}]'") from None
