"""The one exception type for user mistakes: the CLI prints it as one line, no stack trace."""


class UserError(ValueError):
    """A mistake in the user's input (a file, a flag, a shape) with a message that says which."""
