"""Every weights format in and out: `load(path)` -> (model, metadata), `save(path, ...)`.

Formats read, detected from the content (not only the suffix):
- "alexnet": our safetensors file with its metadata (`safetensors_io`), written by `save`;
- "two-device": the same in the two-device tower layout (`two_device`, paper §3.2);
- "torchvision": torchvision's `.pth` state_dict (`torchvision`), weights_only loading;
- "checkpoint": a training checkpoint, `RUN/checkpoint.pt` or the run directory
  (`checkpoint`), weights_only loading.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.fileio import safe_torch_load, torch_file_kind
from alexnet.weights.build import build_model, load_into
from alexnet.weights.checkpoint import checkpoint_path, checkpoint_weights, is_checkpoint
from alexnet.weights.hub import resolve_name
from alexnet.weights.meta import Preprocess, WeightsMeta
from alexnet.weights.safetensors_io import is_safetensors, read_safetensors, save_safetensors
from alexnet.weights.torchvision import torchvision_weights
from alexnet.weights.two_device import convert_layout, to_paper_layout

__all__ = [
    "Preprocess",
    "WeightsMeta",
    "build_model",
    "convert_layout",
    "load",
    "read",
    "save",
]

ACCEPTED = "an alexnet .safetensors, torchvision's .pth, RUN/checkpoint.pt or a run directory"
# (leading bytes, what such a file is) for files that are not weights, to say what they are
_OTHER_KINDS = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{", "a JSON file"),
    (b"\x08", "probably an ONNX model"),
]


def _describe(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "an empty file"
    for magic, what in _OTHER_KINDS:
        if head.startswith(magic):
            return what
    return "neither safetensors nor a torch file"


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Any weights file or run directory, or a name of downloadable weights (`torchvision`:
    fetched once into torch's hub cache, `alexnet.weights.hub`) -> (single-device
    state_dict, metadata)."""
    p = resolve_name(path)
    if p.is_dir():
        p = checkpoint_path(p)
    if not p.is_file():
        raise UserError(f"{p}: no such weights file")
    if is_safetensors(p):
        tensors, meta = read_safetensors(p)
        if meta.format == "two-device":
            tensors = to_paper_layout(tensors, meta)
        return tensors, meta
    if torch_file_kind(p) in ("zip", "pickle"):
        obj = safe_torch_load(p, "cpu")
        if is_checkpoint(obj):
            return checkpoint_weights(obj, p)
        return torchvision_weights(obj, p)
    raise UserError(f"{p}: {_describe(p)}, not weights; pass {ACCEPTED}")


def load(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, WeightsMeta]:
    """Any weights file or run directory -> (model in eval mode on `device`, metadata).

    Reads, builds the model its metadata names and loads the tensors with strict=True; every
    failure is one UserError naming the file.
    """
    tensors, meta = read(path)
    model = build_model(meta.model_config, meta.num_classes)
    load_into(model, tensors, meta.path)
    meta.model_config = dict(getattr(model, "config", meta.model_config))
    return model.to(device).eval(), meta


# `save` writes the format `load` reads best: an alexnet safetensors file with its metadata
save = save_safetensors
