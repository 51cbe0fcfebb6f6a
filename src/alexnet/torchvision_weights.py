"""torchvision's ImageNet AlexNet weights (`alexnet-owt-7be5be79.pth`) given by path.

The file is a pickled state_dict; it is read with `torch.load(weights_only=True)`, so a file
whose pickle would build any object other than tensors and containers (a code payload) is
refused before anything in it runs. Nothing is ever downloaded: the class names come from
torchvision's own metadata (`AlexNet_Weights.IMAGENET1K_V1.meta["categories"]`, shipped in the
package), the preprocessing is torchvision's (shorter side to 256, centre crop 224, ImageNet
channel mean / std).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import UserError

FILE_NAME = "alexnet-owt-7be5be79.pth"
# torchvision's eval preprocessing, in the keys of a weights file's "preprocess" metadata;
# "image_size" is the side that decoded files are brought to (shorter side, centre crop) first,
# with torchvision's size rounding ("resize_rule").
TORCHVISION_PREPROCESS: dict[str, Any] = {
    "image_size": 256,
    "resize_rule": "torchvision",
    "crop_size": 224,
    "resize": None,
    "out_channels": 3,
    "normalize": "channel",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (no download: static metadata)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def is_torch_pickle(path: str | os.PathLike) -> bool:
    """True for files written by torch.save (a zip archive or a legacy raw pickle)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK") or head[:1] == b"\x80"


def read_torchvision_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict in a torchvision `.pth` file, loaded safely; UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise UserError(
            f"{path}: refused: the file is not plain tensors (weights_only load: {first[:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable PyTorch weights file ({first[:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError(f"{path}: not a state_dict (a dict of name -> tensor)")
    return state


def load_torchvision(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], None]:
    """torchvision AlexNet weights -> (`torchvision` model in eval mode, metadata, None).

    Metadata has the keys of an alexnet weights file: model, classes, preprocess, extra.
    """
    from alexnet import get_model

    state = read_torchvision_state(path)
    head = state.get("classifier.6.weight")
    if head is None or head.dim() != 2:
        raise UserError(
            f"{path}: not torchvision AlexNet weights (no classifier.6.weight; "
            f"keys {sorted(state)[:3]} ...)"
        )
    num_classes = int(head.shape[0])
    model = get_model("torchvision", num_classes=num_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in first[1:3])[:200]
        raise UserError(f"{path}: tensors do not fit torchvision's alexnet ({detail})") from None
    classes = imagenet_categories() if num_classes == 1000 else [str(i) for i in range(num_classes)]
    meta = {
        "model": model.config,
        "classes": classes,
        "preprocess": dict(TORCHVISION_PREPROCESS),
        "extra": {"source": "torchvision", "file": str(path)},
    }
    return model.to(device).eval(), meta, None
