"""Our weights format: safetensors with string metadata format "alexnet-weights/1", model,
classes, preprocess and extra (JSON; extra "layout": "two-device" for `TwoDeviceAlexNet`'s
tower_a / tower_b keys, paper §3.2); the §2 mean image is the tensor "preprocess.mean_image".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from alexnet.errors import UserError
from alexnet.fileio import atomic_write_bytes
from alexnet.weights.meta import Preprocess, WeightsMeta

FORMAT = "alexnet-weights/1"
MEAN_IMAGE_KEY = "preprocess.mean_image"
_HEADER_LIMIT = 100_000_000  # safetensors' own limit on the JSON header size


def is_safetensors(path: str | os.PathLike) -> bool:
    """True when the file starts with a u64 header length that fits, then a JSON object."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(9)
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, _HEADER_LIMIT) and head[8:9] == b"{"


def save_safetensors(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    *,
    model_config: dict[str, Any],
    classes: list[str],
    preprocess: Preprocess | dict[str, Any],
    mean_image: torch.Tensor | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Atomically write model tensors + metadata (see the module docstring)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    if mean_image is not None:
        tensors[MEAN_IMAGE_KEY] = torch.as_tensor(mean_image, dtype=torch.float32).contiguous()
    metadata = {
        "format": FORMAT,
        "model": json.dumps(model_config),
        "classes": json.dumps(list(classes)),
        "preprocess": json.dumps(Preprocess.from_json(preprocess).to_json()),
        "extra": json.dumps(extra or {}),
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(string metadata, every tensor) of a safetensors file; UserError when unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """(tensors as stored, metadata with the mean image); UserError when the file is not ours."""
    raw, tensors = load_tensors(path)
    if raw.get("format") != FORMAT:
        raise UserError(
            f"{path}: a safetensors file without alexnet metadata (format {FORMAT}); "
            "write it with alexnet.weights.save"
        )
    try:
        meta = WeightsMeta.parse(
            **{k: json.loads(raw[k]) for k in ("model", "classes", "preprocess", "extra")},
            path=str(path),
        )
    except (KeyError, ValueError, TypeError, UserError) as exc:
        raise UserError(f"{path}: damaged alexnet metadata ({exc})") from None
    if meta.extra.get("layout") == "two-device":
        meta.format = "two-device"
    meta.mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    return tensors, meta


# where the paper model keeps each layer in its state_dict, in layer order
PAPER_KEY = {
    **{f"conv{i}": f"features.conv{i}" for i in range(1, 6)},
    "fc6": "classifier.fc6",
    "fc7": "classifier.fc7",
    "fc8": "fc8",
}


def fc8_split(num_classes: int) -> tuple[int, int]:
    """fc8's outputs per tower in the two-device layout: (tower A's, tower B's), A the larger."""
    first = (num_classes + 1) // 2
    return first, num_classes - first


def _tower_key(tower: str, layer: str) -> str:
    block = "block1" if layer in ("conv1", "conv2") else "block2"
    return (
        f"tower_{tower}.{block}.{layer}" if layer.startswith("conv") else f"tower_{tower}.{layer}"
    )


def paper_to_two_device(
    state: dict[str, torch.Tensor], num_classes: int
) -> dict[str, torch.Tensor]:
    """Split a `PaperAlexNet` (towers=2) state_dict into `TwoDeviceAlexNet` keys: each layer's
    outputs in halves, tower A first (inputs are per tower already, or all read)."""
    out: dict[str, torch.Tensor] = {}
    fc8_a, _ = fc8_split(num_classes)
    for layer, key in PAPER_KEY.items():
        for kind in ("weight", "bias"):
            tensor = state[f"{key}.{kind}"]
            cut = fc8_a if layer == "fc8" else tensor.shape[0] // 2
            out[f"{_tower_key('a', layer)}.{kind}"] = tensor[:cut].clone()
            out[f"{_tower_key('b', layer)}.{kind}"] = tensor[cut:].clone()
    return out


def two_device_to_paper(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Join a `TwoDeviceAlexNet` state_dict back into `PaperAlexNet` keys (on the CPU)."""
    out: dict[str, torch.Tensor] = {}
    for layer, key in PAPER_KEY.items():
        for kind in ("weight", "bias"):
            a = state[f"{_tower_key('a', layer)}.{kind}"].cpu()
            b = state[f"{_tower_key('b', layer)}.{kind}"].cpu()
            out[f"{key}.{kind}"] = torch.cat([a, b], 0)
    return out


def require_paper_two_tower(meta: WeightsMeta) -> None:
    """UserError unless the weights are of the `paper` model with two towers."""
    cfg = meta.model_config
    if cfg.get("name") != "paper" or cfg.get("options", {}).get("towers", 2) != 2:
        raise UserError(
            f"{meta.path}: model {cfg.get('name')!r} has no two-tower layout "
            "(only the `paper` model with towers=2 splits over two devices)"
        )
