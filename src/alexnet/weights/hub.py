"""What `--weights` can name (`CATALOG`, downloaded into torch's hub cache; `CONVERTIBLE`;
Hugging Face ids) and `resolve_name`, which every `--weights` calls first. Published errors:
top-1 / top-5 % on ILSVRC-2012 val, one centre crop (the paper: 40.7 / 18.2 with 10 crops, §6).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from alexnet.errors import Param, UserError
from alexnet.progress import progress_bar

BASE_URL_ENV = "ALEXNET_WEIGHTS_URL"
DEFAULT_BASE_URL = "https://download.pytorch.org/models"
TIMEOUT_S = 30.0  # per socket operation (connect, each read)
_HASH = re.compile(r"-([a-f0-9]+)\.")
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """`torch.hub.get_dir()/checkpoints`, by torch's own rule when torch is not imported."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir()) / "checkpoints"
    xdg = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(home) / "hub" / "checkpoints"


def url_for(file_name: str) -> str:
    """`$ALEXNET_WEIGHTS_URL` or torchvision's base URL, then `file_name`."""
    base = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{file_name}"


def hash_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix in a torchvision-style name ("alexnet-owt-7be5be79.pth" -> 7be5be79)."""
    found = _HASH.findall(file_name)
    return found[-1] if found else None


def fetch(file_name: str, *, progress: bool = True) -> Path:
    """The cached `file_name`, downloaded first when missing; as torchvision, the hash in the
    name must begin the file's SHA-256. A failed download is one UserError line."""
    dest = cache_dir() / file_name
    if dest.is_file():
        return dest
    url = url_for(file_name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "alexnet"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=file_name,
                disable=not progress,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        want, got = hash_prefix(file_name), digest.hexdigest()
        if want and not got.startswith(want):
            raise UserError(
                f"{url}: refused: SHA-256 {got[: len(want)]}... does not start with {want} "
                f"(the hash in its name); the file was not kept"
            )
        os.replace(tmp, dest)
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        raise UserError(
            f"cannot download {url} ({reason}); put the file there by hand as {dest}, "
            f"or give the path of a copy instead of the name"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)  # a partial or refused file is never kept
    return dest


def resolve_name(name_or_path: str | os.PathLike, *, progress: bool = True) -> Path:
    """An existing path as it is; a catalog name or Hugging Face id -> the downloaded file."""
    path = Path(name_or_path)
    if path.exists():
        return path
    entry = CATALOG.get(str(name_or_path))
    if entry is not None:
        return fetch(entry["file_name"], progress=progress)
    if HF_ID.match(str(name_or_path)):
        return download_hf(str(name_or_path))
    names = ", ".join(CATALOG)
    raise UserError(
        f"{name_or_path}: no such weights file, nor a name of downloadable weights ({names}; "
        f"`alexnet weights` lists them) or a Hugging Face id (user/name)"
    )


HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
HF_FILES = ["model.safetensors", "config.json", "README.md"]


def download_hf(repo_id: str) -> Path:
    """Hugging Face id "user/name" -> its folder in `huggingface_hub`'s cache (`alexnet[hub]`);
    offline with nothing cached: one UserError line."""
    try:
        import huggingface_hub
    except ImportError:
        raise UserError(
            f"{repo_id}: no such weights file or folder; to download it as a Hugging Face id: "
            "pip install 'alexnet[hub]'"
        ) from None
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, allow_patterns=HF_FILES, etag_timeout=TIMEOUT_S
        )
    except Exception as exc:  # offline, not found, gated, HTTP errors: all one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"{repo_id}: cannot download from the Hugging Face Hub ({type(exc).__name__}: "
            f"{first[:200]}); give ",
            Param("weights"),
            " a local folder instead",
        ) from None
    return Path(folder)


# pretrained weights by the name `--weights` takes: their source and published errors
CATALOG: dict[str, dict[str, Any]] = {
    "torchvision": {
        "name": "torchvision",
        "source": "torchvision AlexNet_Weights.IMAGENET1K_V1 (Krizhevsky 2014, 'one weird trick')",
        "model": "torchvision",
        "input_size": 224,
        "classes": "ImageNet-1k (1000)",
        "top1_err": 43.478,
        "top5_err": 20.934,
        "file_name": "alexnet-owt-7be5be79.pth",
        "how": "downloaded on first use into torch's hub cache",
    },
}
CONVERTIBLE: dict[str, dict[str, Any]] = {
    "bvlc_alexnet": {
        "name": "bvlc_alexnet",
        "source": "Caffe Model Zoo bvlc_alexnet (the paper's architecture: towers, LRN)",
        "model": "paper (input_size 227, Caffe's LRN)",
        "input_size": 227,
        "classes": "ImageNet-1k (1000)",
        "top1_err": 42.9,
        "top5_err": 19.8,
        "file_name": "bvlc_alexnet.caffemodel",
        "how": "alexnet convert caffe bvlc_alexnet.caffemodel OUT.safetensors, then --weights OUT",
    },
}
