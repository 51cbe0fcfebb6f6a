"""Weights by name: download once into torch's hub cache, the way torchvision does, then reuse.

- `resolve_name(name_or_path) -> Path`: an existing file is returned as it is; a catalog name
  (`alexnet weights` lists them, e.g. "torchvision") is the cached file, downloaded first when
  missing. Everything that takes `--weights` calls this before reading the file.
- `fetch(file_name)`: `$ALEXNET_WEIGHTS_URL/<file_name>` (default torchvision's
  https://download.pytorch.org/models) -> `torch.hub.get_dir()/checkpoints/<file_name>`, with a
  progress bar. As torchvision, the hex digits after the last "-" of the name must begin the
  file's SHA-256; a file that does not match is refused and not kept. A download that fails
  (no network, unreachable host, HTTP error) raises one line: the URL, where to put the file
  by hand, and that a path works too.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from alexnet.errors import UserError
from alexnet.progress import progress_bar
from alexnet.weights.catalog import CATALOG

BASE_URL_ENV = "ALEXNET_WEIGHTS_URL"
DEFAULT_BASE_URL = "https://download.pytorch.org/models"
TIMEOUT_S = 30.0  # per socket operation (connect, each read)
_HASH = re.compile(r"-([a-f0-9]+)\.")
_CHUNK = 1 << 20


def hub_dir() -> Path:
    """`torch.hub.get_dir()`: asked of torch when it is loaded (so `torch.hub.set_dir` is
    honoured), else torch's own rule, without importing it: `$TORCH_HOME/hub`, where
    TORCH_HOME defaults to `$XDG_CACHE_HOME/torch` and XDG_CACHE_HOME to `~/.cache`."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    xdg = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(home) / "hub"


def cache_dir() -> Path:
    """torch's hub cache for weights files: `torch.hub.get_dir()/checkpoints` ($TORCH_HOME)."""
    return hub_dir() / "checkpoints"


def url_for(file_name: str) -> str:
    """Where `file_name` is downloaded from: `$ALEXNET_WEIGHTS_URL` or torchvision's base."""
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{file_name}"


def hash_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix in a torchvision-style name ("alexnet-owt-7be5be79.pth" -> 7be5be79)."""
    found = _HASH.findall(file_name)
    return found[-1] if found else None


def _download(url: str, tmp: Path, progress: bool) -> str:
    """Stream `url` into `tmp`; return the SHA-256 hex digest. Network errors propagate."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "alexnet"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=Path(url).name, disable=not progress) as bar:  # fmt: skip
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def fetch(file_name: str, *, progress: bool = True) -> Path:
    """The cached `file_name`, downloaded first when it is not in the cache (see module doc)."""
    dest = cache_dir() / file_name
    if dest.is_file():
        return dest
    url = url_for(file_name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        digest = _download(url, tmp, progress)
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise UserError(
            f"cannot download {url} ({reason}); put the file there by hand as {dest}, "
            f"or give --weights the path of a copy"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    want = hash_prefix(file_name)
    if want and not digest.startswith(want):
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"{url}: refused: SHA-256 {digest[: len(want)]}... does not start with {want} "
            f"(the hash in its name); the file was not kept"
        )
    os.replace(tmp, dest)
    return dest


def resolve_name(name_or_path: str | os.PathLike, *, progress: bool = True) -> Path:
    """A weights file path, or a catalog name -> the local file (downloaded when needed)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    entry = CATALOG.get(str(name_or_path))
    if entry is not None:
        return fetch(entry.file_name, progress=progress)
    names = ", ".join(CATALOG)
    raise UserError(
        f"{name_or_path}: no such weights file, nor a name of downloadable weights ({names}; "
        f"`alexnet weights` lists them)"
    )
