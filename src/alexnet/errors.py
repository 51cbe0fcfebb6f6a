"""The one exception type for user mistakes: the CLI prints it as one line, no stack trace."""


class UserError(ValueError):
    """A mistake in the user's input (a file, a flag, a shape) with a message that says which.

    `leave_at_once`: after the line, the process exits at once (status 1) instead of returning
    2 through its callers (a distributed rank whose peer died: torchrun must see it fail)."""

    leave_at_once = False
