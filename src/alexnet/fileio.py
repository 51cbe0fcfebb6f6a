"""Files written whole or not at all (a crash leaves the old file or the new one), torch
files read without running their code, and JSON with floats rounded to what was measured."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from alexnet.errors import UserError

if TYPE_CHECKING:
    import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` through `write(binary_file)`, atomically: temp file in the same directory,
    fsync, `os.replace`, fsync of the directory."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        mask = os.umask(0o022)  # the umask can only be read by setting it
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # name the file being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`atomic_write` of bytes."""
    atomic_write(path, lambda f: f.write(data))


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames and creations inside `directory` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def torch_file_kind(path: str | os.PathLike) -> str:
    """What the file's first bytes say: "zip" (torch.save's format), "pickle" (legacy
    torch.save), "empty" or "other"."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "empty"
    if head == b"PK\x03\x04":
        return "zip"
    return "pickle" if head[0] == 0x80 else "other"  # 0x80: a pickle of protocol >= 2


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(path, weights_only=True)` (a code payload is refused before it runs); each
    failure one UserError naming the file: missing, empty, not torch, damaged, refused."""
    import torch  # light module: the command line reads file kinds without torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    kind = torch_file_kind(path)
    if kind == "empty":
        raise UserError(f"{path}: empty file, not a torch checkpoint")
    if kind == "other":
        raise UserError(f"{path}: not a torch checkpoint (neither a torch zip nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # the first global weights_only refused
        if found is not None:
            raise UserError(
                f"{path}: refused: a torch pickle holding objects that weights_only loading "
                f"does not allow (first: {found.group(1)}); nothing in it was run"
            ) from None
        raise UserError(f"{path}: damaged or not a torch checkpoint (unreadable pickle)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        what = "truncated or damaged" if kind == "zip" else "truncated or damaged legacy"
        raise UserError(f"{path}: {what} torch checkpoint ({type(exc).__name__})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex); UserError when it cannot be read."""
    h = hashlib.sha256()  # hashlib.file_digest: Python 3.11
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


def rounded(obj: Any) -> Any:
    """`obj` with every float rounded to 6 significant digits (0.07230000000000003 -> 0.0723)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One JSON object on one line, floats rounded (see `rounded`)."""
    return json.dumps(rounded(obj))
