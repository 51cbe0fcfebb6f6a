"""`UserError`, the one exception for user mistakes (one line, no stack trace), `Param` and
`need_extra`."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # the package imports this before the command's signal handlers
if TYPE_CHECKING:
    from collections.abc import Callable


class Param(str):
    """A parameter's name inside a `UserError` message: Python reads `batch_size`, the command
    line `--batch-size`."""


class UserError(ValueError):
    """A mistake in the user's input; the message is its parts joined (`UserError(Param("epochs"),
    ": 0 is not >= 1")`). `leave_at_once`: exit 1 right after the line (a peer died)."""

    leave_at_once = False

    def __str__(self) -> str:
        return self.text(str)

    def text(self, name_of: Callable[[str], str]) -> str:
        """The message with every `Param` part written as `name_of(part)`."""
        return "".join(name_of(p) if isinstance(p, Param) else str(p) for p in self.args)


def need_extra(module: str, extra: str, what: str) -> None:
    """Import `module`, or raise one line: `what` needs it, pip install 'alexnet[extra]'."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {module}: pip install 'alexnet[{extra}]'") from None
