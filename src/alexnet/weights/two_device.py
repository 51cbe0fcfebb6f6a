"""The two-device tower layout: `TwoDeviceAlexNet`'s state_dict (each tower's half of every
layer under tower_a / tower_b, paper §3.2) in an alexnet safetensors file whose
extra["layout"] is "two-device"; the `paper` layout is `PaperAlexNet(towers=2)`'s (grouped
convolutions). Both hold the same numbers; `convert_layout` rewrites one as the other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import UserError
from alexnet.models.parallel import paper_to_two_device, two_device_to_paper
from alexnet.weights.meta import WeightsMeta
from alexnet.weights.safetensors_io import read_safetensors, save_safetensors

LAYOUTS = ("paper", "two-device")


def require_paper_two_tower(meta: WeightsMeta) -> None:
    """UserError unless the weights are of the `paper` model with two towers."""
    cfg = meta.model_config
    if cfg.get("name") != "paper" or cfg.get("options", {}).get("towers", 2) != 2:
        raise UserError(
            f"{meta.path}: model {cfg.get('name')!r} has no two-tower layout "
            "(only the `paper` model with towers=2 splits over two devices)"
        )


def to_paper_layout(tensors: dict[str, torch.Tensor], meta: WeightsMeta) -> dict[str, torch.Tensor]:
    """Two-device tensors -> `PaperAlexNet` tensors; UserError naming a missing tensor."""
    require_paper_two_tower(meta)
    try:
        return two_device_to_paper(tensors)
    except KeyError as exc:
        raise UserError(f"{meta.path}: missing tensor {exc} for the two-device layout") from None


def convert_layout(src: str | os.PathLike, dst: str | os.PathLike, layout: str) -> dict[str, Any]:
    """Rewrite alexnet weights file `src` in `layout` ("paper" or "two-device") as `dst`.

    Returns {"from", "to", "layout", "tensors"}.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    tensors, meta = read_safetensors(src)
    require_paper_two_tower(meta)
    current = "two-device" if meta.format == "two-device" else "paper"
    try:
        if current == "paper" and layout == "two-device":
            tensors = paper_to_two_device(tensors, meta.num_classes)
        elif current == "two-device" and layout == "paper":
            tensors = two_device_to_paper(tensors)
    except KeyError as exc:
        raise UserError(f"{src}: missing tensor {exc} for the {current} layout") from None
    extra = dict(meta.extra)
    if layout == "paper":
        extra.pop("layout", None)
    else:
        extra["layout"] = layout
    save_safetensors(
        dst,
        tensors,
        model_config=meta.model_config,
        classes=meta.classes,
        preprocess=meta.preprocess,
        mean_image=meta.mean_image,
        extra=extra,
    )
    return {"from": str(Path(src)), "to": str(Path(dst)), "layout": layout, "tensors": len(tensors)}
