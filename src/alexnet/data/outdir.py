"""What `prepare --overwrite` may replace: only a packed dataset or an empty directory, never a
user's own files and never the directory being read (nor one that holds it or lies in it)."""

from __future__ import annotations

import json
from pathlib import Path

from alexnet.data.layout import FORMAT_NAME, HEADER
from alexnet.errors import UserError


def _listing(path: Path, limit: int = 3) -> str:
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{shown}{more}"


def is_packed_dataset(path: Path) -> bool:
    """True when `path/header.json` names the packed format (written last by `prepare`)."""
    try:
        header = json.loads((path / HEADER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(header, dict) and header.get("format") == FORMAT_NAME


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output(out: str | Path, src: str | Path | None, overwrite: bool) -> None:
    """Raise `UserError` unless `out` may be written: absent, or (with `overwrite`) an empty
    directory or a packed dataset that is not `src`, inside it, or around it."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise UserError(f"{out}: is a file, not a directory; choose another OUT for the dataset")
    empty = not any(out.iterdir())
    packed = is_packed_dataset(out)
    if src is not None and Path(src).exists():
        s, o = Path(src).resolve(), out.resolve()
        if _related(s, o):
            where = "is" if s == o else ("contains" if o in s.parents else "lies inside")
            raise UserError(f"{out}: {where} the source {src}; choose an OUT outside it")
    if not overwrite:
        hint = " (use --overwrite to replace it)" if (packed or empty) else ""
        kind = "a packed dataset" if packed else ("empty" if empty else "not a packed dataset")
        raise UserError(f"{out}: already exists, {kind}{hint}")
    if not (packed or empty):
        raise UserError(
            f"{out}: not a packed dataset (holds {_listing(out)}); --overwrite only replaces "
            "a packed dataset or an empty directory: choose another OUT"
        )


def check_partial(partial: Path, known: set[str]) -> None:
    """Refuse to delete a `OUT.partial` directory that holds files `prepare` did not write."""
    if not partial.exists():
        return
    if not partial.is_dir():
        raise UserError(f"{partial}: is a file; move it away (prepare works in this directory)")
    foreign = sorted(p.name for p in partial.iterdir() if p.name not in known)
    if foreign:
        raise UserError(
            f"{partial}: holds files prepare did not write ({', '.join(foreign[:3])}); move them"
        )
