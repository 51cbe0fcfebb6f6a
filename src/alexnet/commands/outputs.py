"""Output paths checked (a temporary file created and removed there) before a command does
minutes of work, and OSErrors turned into one line."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from alexnet.errors import UserError

# errno values that mean the user named a wrong path (exit 2) rather than a broken environment
USER_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST}


class OutputError(OSError):
    """A directory that cannot take the output (read-only, full, no permission): exit 1."""

    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(exc.errno, exc.strerror, str(path))


def output_dir(path: str | os.PathLike, label: str) -> Path:
    """A directory a command writes files into, checked to exist and take new files now."""
    directory = Path(path)
    if not directory.exists():
        raise UserError(f"{label}: directory {directory} does not exist")
    if not directory.is_dir():
        raise UserError(f"{label}: {directory} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".alexnet-probe.", dir=directory)
    except OSError as exc:
        raise OutputError(directory, exc) from None
    os.close(fd)
    os.unlink(tmp)
    return directory


def output_file(path: str | os.PathLike, flag: str, default_suffix: str = "") -> Path:
    """The file a command will write for `flag` (`default_suffix` added when the name has none),
    checked to be creatable now: UserError for a wrong path, OutputError when the disk refuses."""
    p = Path(path)
    if default_suffix and not p.suffix:
        p = p.with_name(p.name + default_suffix)
    if p.is_dir():
        raise UserError(f"{flag} {path}: {p} is a directory; give a file name")
    output_dir(p.parent, f"{flag} {path}")
    return p


def creatable_dir(path: str | os.PathLike, flag: str) -> Path:
    """A directory a command will create (with its parents), checked at its nearest existing
    ancestor."""
    p = Path(path).absolute()
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    output_dir(ancestor, f"{flag} {path}")
    return p


def os_error_line(exc: OSError, writing: str | os.PathLike | None = None) -> tuple[str, int]:
    """(one line naming the path and the cause, the exit status: 2 the user's path, 1 the
    environment, e.g. a full disk); an error naming no file is said of `writing`."""
    where = exc.filename if exc.filename is not None else (writing or "output")
    cause = exc.strerror or str(exc)
    status = 2 if exc.errno in USER_ERRNOS and not isinstance(exc, OutputError) else 1
    return f"{where}: {cause}", status
