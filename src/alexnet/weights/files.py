"""Every weights format in: `read(path)` -> (state_dict, metadata), `load(path)` -> (model,
metadata); and `save`, the format `load` reads best (the package face `alexnet.weights`
re-exports these).

Formats read, detected from the content (not only the suffix):
- "alexnet": our safetensors file with its metadata (`safetensors_io`), written by `save`;
- "two-device": the same in the two-device tower layout (`two_device`, paper §3.2);
- "torchvision": torchvision's `.pth` state_dict (`torchvision`), weights_only loading;
- "checkpoint": a training checkpoint, `RUN/checkpoint.pt` or the run directory
  (`checkpoint`), weights_only loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.checkpoint import Checkpoint, checkpoint_path, is_checkpoint
from alexnet.errors import UserError
from alexnet.fileio import safe_torch_load, torch_file_kind
from alexnet.rundir import RunDir
from alexnet.weights.build import build_model, load_into
from alexnet.weights.hub import resolve_name
from alexnet.weights.meta import Preprocess, WeightsMeta
from alexnet.weights.safetensors_io import is_safetensors, read_safetensors, save_safetensors
from alexnet.weights.torchvision import torchvision_weights
from alexnet.weights.two_device import to_paper_layout

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
            return checkpoint_weights(Checkpoint.from_dict(obj, p), p)
        return torchvision_weights(obj, p)
    raise UserError(f"{p}: {_describe(p)}, not weights; pass {ACCEPTED}")


def _run_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path.parent / RunDir.CONFIG).read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_weights(
    ckpt: Checkpoint, path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """A training checkpoint (`alexnet.checkpoint`) -> (model state_dict, metadata); an older
    one without its classes or preprocessing takes them from RUN/config.json beside it, and
    a UserError names the file when neither has them."""
    path = Path(path)
    run_config = _run_config(path) if ckpt.classes is None or ckpt.preprocess is None else {}
    classes = ckpt.classes if ckpt.classes is not None else run_config.get("classes")
    preprocess = ckpt.preprocess if ckpt.preprocess is not None else run_config.get("preprocess")
    if classes is None or preprocess is None:
        missing = "class names" if classes is None else "preprocessing"
        raise UserError(
            f"{path}: an older checkpoint without its {missing} (nor in {RunDir.CONFIG} beside "
            "it); use RUN/weights.safetensors instead"
        )
    pre = Preprocess.from_json(preprocess)
    if pre.normalize == "mean_image" and ckpt.mean_image is None:
        raise UserError(
            f"{path}: an older checkpoint without the training mean image; use "
            "RUN/weights.safetensors instead"
        )
    meta = WeightsMeta(
        model_config=ckpt.model_config,
        classes=[str(c) for c in classes],
        preprocess=pre,
        extra={"source": "checkpoint", "epoch": ckpt.epoch, "global_step": ckpt.global_step},
        mean_image=None if ckpt.mean_image is None else torch.as_tensor(ckpt.mean_image).float(),
        format="checkpoint",
        path=str(path),
    )
    return dict(ckpt.model), meta


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
