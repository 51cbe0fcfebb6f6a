"""The sub-commands of `alexnet` (one module each, see `alexnet.cli`) and the one rule that
names a library parameter as the command line spells it: `flag_of`."""

from __future__ import annotations

from alexnet.errors import UserError

# parameters whose flag is not their name with `-` for `_`
_FLAGS = {"out": "--output-dir"}


def flag_of(name: str) -> str:
    """The command-line flag of parameter `name`: `--` + the name with `-` for `_`
    (`batch_size` -> `--batch-size`), or its entry in `_FLAGS`."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def error_line(exc: UserError) -> str:
    """A library's `UserError` as the command line says it: every parameter as its flag."""
    return exc.text(flag_of)
