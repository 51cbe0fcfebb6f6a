"""What `--weights` can name, and what a weights file is: `alexnet weights`.

`CATALOG`: weights downloadable by name (torchvision's ImageNet AlexNet). `CONVERTIBLE`: public
weights this package converts but does not download (Caffe's `bvlc_alexnet`, the paper's
architecture). `describe_file(path)`: the same facts for any weights file, read from its
metadata. Published errors are top-1 / top-5 in percent on the ILSVRC-2012 validation set,
one centre crop (the paper's own network: 40.7 / 18.2 with 10 crops, §6).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from alexnet.errors import UserError
from alexnet.fileio import torch_file_kind


@dataclass(frozen=True)
class CatalogEntry:
    """Pretrained weights: the name `--weights` takes, where they come from, what they are."""

    name: str
    source: str
    model: str
    input_size: int
    classes: str
    top1_err: float | None
    top5_err: float | None
    file_name: str
    how: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CATALOG: dict[str, CatalogEntry] = {
    "torchvision": CatalogEntry(
        name="torchvision",
        source="torchvision AlexNet_Weights.IMAGENET1K_V1 (Krizhevsky 2014, 'one weird trick')",
        model="torchvision",
        input_size=224,
        classes="ImageNet-1k (1000)",
        top1_err=43.478,
        top5_err=20.934,
        file_name="alexnet-owt-7be5be79.pth",
        how="downloaded on first use into torch's hub cache",
    ),
}
CONVERTIBLE: dict[str, CatalogEntry] = {
    "bvlc_alexnet": CatalogEntry(
        name="bvlc_alexnet",
        source="Caffe Model Zoo bvlc_alexnet (the paper's architecture: towers, LRN)",
        model="paper (input_size 227, Caffe's LRN)",
        input_size=227,
        classes="ImageNet-1k (1000)",
        top1_err=42.9,
        top5_err=19.8,
        file_name="bvlc_alexnet.caffemodel",
        how="alexnet convert caffe bvlc_alexnet.caffemodel OUT.safetensors, then --weights OUT",
    ),
}


def _safetensors_meta(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable weights file ({exc})") from None
    try:
        return {k: json.loads(raw[k]) for k in ("model", "classes", "preprocess", "extra")}
    except (KeyError, ValueError):
        raise UserError(f"{path}: safetensors file without alexnet metadata") from None


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A weights file -> the catalog's facts (name = the path), read from its metadata only."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such weights file")
    if p.suffix in (".pth", ".pt") or torch_file_kind(p) in ("zip", "pickle"):
        entry = CATALOG["torchvision"]
        known = p.name == entry.file_name
        return {**entry.to_json(), "name": str(p), "file_name": p.name,
                "how": "given by path", **({} if known else {"top1_err": None,
                                                            "top5_err": None})}  # fmt: skip
    meta = _safetensors_meta(p)
    options = meta["model"].get("options", {})
    extra = meta["extra"]
    published = extra.get("published") or {}
    top1, top5 = published.get("top1_err"), published.get("top5_err")
    if not published and extra.get("top1_error") is not None:  # best epoch of `alexnet train`
        top1 = round(100 * float(extra["top1_error"]), 3)
        top5 = extra.get("top5_error")
        top5 = None if top5 is None else round(100 * float(top5), 3)
    return {
        "name": str(p),
        "source": str(extra.get("source") or "alexnet train"),
        "model": meta["model"].get("name"),
        "input_size": options.get("input_size") or meta["preprocess"].get("crop_size"),
        "classes": f"{len(meta['classes'])}",
        "top1_err": top1,
        "top5_err": top5,
        "file_name": p.name,
        "how": "given by path"
        + (" (errors: its validation split)" if top1 is not None and not published else ""),
    }
