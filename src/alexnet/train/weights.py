"""Shareable weights: a safetensors file whose metadata says how to rebuild and feed the model.

Metadata (all strings): format "alexnet-weights/1", model (JSON of model.config: name + options),
classes (JSON list), preprocess (JSON: crop_size, resize, out_channels, normalize, mean, std),
plus free-form extras (recipe, epoch, val errors). The mean image for "mean_image" normalization
is stored as the tensor "preprocess.mean_image" next to the model's own tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from alexnet.errors import UserError
from alexnet.train.checkpoint import atomic_write

FORMAT = "alexnet-weights/1"
MEAN_IMAGE_KEY = "preprocess.mean_image"


def save_weights(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    *,
    model_config: dict,
    classes: list[str],
    preprocess: dict[str, Any],
    mean_image: torch.Tensor | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically write model tensors + metadata (see module docstring)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    if mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = torch.as_tensor(mean_image, dtype=torch.float32).contiguous()
    metadata = {
        "format": FORMAT,
        "model": json.dumps(model_config),
        "classes": json.dumps(list(classes)),
        "preprocess": json.dumps(preprocess),
        "extra": json.dumps(extra or {}),
    }
    blob = save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(blob))


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (tensors, metadata with JSON fields parsed); UserError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    if raw.get("format") != FORMAT:
        raise UserError(f"{path}: safetensors file without alexnet metadata (format {FORMAT})")
    try:
        meta = {k: json.loads(raw[k]) for k in ("model", "classes", "preprocess", "extra")}
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path}: damaged alexnet metadata ({exc})") from None
    return tensors, meta


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the model named in the file's metadata and load its tensors.

    Returns (model in eval mode on `device`, metadata, mean_image tensor or None).
    """
    from alexnet import get_model

    tensors, meta = read_weights(path)
    mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    cfg = meta["model"]
    options = dict(cfg.get("options", {}))
    options.setdefault("num_classes", len(meta["classes"]))
    model = get_model(cfg["name"], **options)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path}: tensors do not fit model {cfg['name']!r} "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return model.to(device).eval(), meta, mean_image
