"""torchvision's ImageNet AlexNet state_dict (`alexnet-owt-7be5be79.pth`), with torchvision's
class names and preprocessing (shorter side 256, centre crop 224, channel mean / std)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torchvision.models import AlexNet_Weights

from alexnet.errors import UserError
from alexnet.weights.meta import Preprocess, WeightsMeta

HEAD_KEY = "classifier.6.weight"
TORCHVISION_PREPROCESS = Preprocess(
    image_size=256,
    resize_rule="torchvision",
    crop_size=224,
    resize=None,
    out_channels=3,
    normalize="channel",
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
)


def class_names(count: int) -> list[str]:
    """torchvision's 1000 ImageNet class names for 1000 classes, else "0".."count-1"."""
    if count != 1000:
        return [str(i) for i in range(count)]
    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_weights(
    obj: Any, path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """What `torch.load` read from a torchvision `.pth` -> (state_dict, metadata)."""
    path = Path(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    tensors = isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )
    if not tensors:
        raise UserError(f"{path}: a torch file but not a state_dict (a dict of name -> tensor)")
    head = obj.get(HEAD_KEY)
    if head is None or head.dim() != 2:
        raise UserError(
            f"{path}: a state_dict but not torchvision AlexNet weights (no {HEAD_KEY}; "
            f"keys {sorted(obj)[:3]} ...)"
        )
    num_classes = int(head.shape[0])
    meta = WeightsMeta(
        model_config={"name": "torchvision", "options": {"num_classes": num_classes}},
        classes=class_names(num_classes),
        preprocess=TORCHVISION_PREPROCESS,
        extra={"source": "torchvision", "file": str(path)},
        format="torchvision",
        path=str(path),
    )
    return obj, meta
