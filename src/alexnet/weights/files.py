"""`read` / `load` every weights format, told apart by content (torch files with weights_only);
`load_for` re-makes the last layer for another num_classes (fine-tuning's start, paper §6.1)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import AlexNet_Weights

from alexnet.checkpoint import Checkpoint, checkpoint_path, is_checkpoint
from alexnet.errors import UserError
from alexnet.fileio import file_sha256, safe_torch_load, torch_file_kind
from alexnet.models.registry import get_model
from alexnet.weights import hf
from alexnet.weights.hub import CATALOG, hash_prefix, resolve_name
from alexnet.weights.meta import Preprocess, WeightsMeta
from alexnet.weights.safetensors_io import (
    is_safetensors,
    paper_to_two_device,
    read_safetensors,
    require_paper_two_tower,
    save_safetensors,
    two_device_to_paper,
)

# (leading bytes, what such a file is) for files that are not weights, to say what they are
_OTHER_KINDS = [
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"{", "a JSON file"),
    (b"\x08", "probably an ONNX model"),
]
# torchvision's ImageNet AlexNet (`alexnet-owt-7be5be79.pth`): shorter side 256, centre crop 224,
# channel mean / std
TORCHVISION_PREPROCESS = Preprocess(
    image_size=256,
    resize_rule="torchvision",
    crop_size=224,
    normalize="channel",
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
)


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
    """Any weights file, run directory, folder or downloadable name -> (paper-layout
    state_dict, metadata)."""
    p = resolve_name(path)
    if hf.is_folder(p):
        return hf.read_folder(p)
    if p.is_dir():
        p = checkpoint_path(p)
    if not p.is_file():
        raise UserError(f"{p}: no such weights file")
    if is_safetensors(p):
        tensors, meta = read_safetensors(p)
        if meta.format == "two-device":
            require_paper_two_tower(meta)
            try:
                tensors = two_device_to_paper(tensors)
            except KeyError as exc:
                raise UserError(f"{p}: missing tensor {exc} for the two-device layout") from None
        return tensors, meta
    if torch_file_kind(p) in ("zip", "pickle"):
        obj = safe_torch_load(p, "cpu")
        if is_checkpoint(obj):
            return checkpoint_weights(Checkpoint.from_dict(obj, p), p)
        return torchvision_weights(obj, p)
    raise UserError(
        f"{p}: {_describe(p)}, not weights; pass an alexnet .safetensors, torchvision's .pth, "
        "RUN/checkpoint.pt, a run directory or a Hugging Face-style folder"
    )


def checkpoint_weights(
    ckpt: Checkpoint, path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """A training checkpoint (`alexnet.checkpoint`) -> (model state_dict, metadata)."""
    pre = None if ckpt.preprocess is None else Preprocess.from_json(ckpt.preprocess)
    no_mean = pre is not None and pre.normalize == "mean_image" and ckpt.mean_image is None
    if ckpt.classes is None or pre is None or no_mean:
        raise UserError(
            f"{path}: a checkpoint without its class names, preprocessing or mean image; use "
            "RUN/weights.safetensors instead"
        )
    meta = WeightsMeta.parse(
        ckpt.model_config,
        ckpt.classes,
        pre,
        {"source": "checkpoint", "epoch": ckpt.epoch, "global_step": ckpt.global_step},
        mean_image=None if ckpt.mean_image is None else torch.as_tensor(ckpt.mean_image).float(),
        format="checkpoint",
        path=str(path),
    )
    return dict(ckpt.model), meta


def class_names(count: int) -> list[str]:
    """torchvision's 1000 ImageNet class names for 1000 classes, else "0".."count-1"."""
    if count != 1000:
        return [str(i) for i in range(count)]
    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def torchvision_weights(
    obj: Any, path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """What `torch.load` read from a torchvision `.pth` -> (state_dict, metadata)."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    tensors = isinstance(obj, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )
    if not tensors:
        raise UserError(f"{path}: a torch file but not a state_dict (a dict of name -> tensor)")
    head = obj.get("classifier.6.weight")
    if head is None or head.dim() != 2:
        raise UserError(
            f"{path}: a state_dict but not torchvision AlexNet weights (no classifier.6.weight; "
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


def build_model(model_config: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A fresh model as `model_config` ({"name", "options"}) says; `num_classes` unless set."""
    options = dict(model_config.get("options", {}))
    options.setdefault("num_classes", num_classes)
    return get_model(str(model_config["name"]), **options)


def load(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, WeightsMeta]:
    """Any weights file or run directory -> (model in eval mode on `device`, metadata); every
    failure is one UserError naming the file."""
    model, meta = _load(path, None, None, {})
    return model.to(device), meta


def load_for(
    weights: str | os.PathLike,
    num_classes: int | None = None,
    model: str | None = None,
    **options: Any,
) -> nn.Module:
    """The model that `weights` (a path, a catalog name or a Hugging Face id "user/name") names,
    with its tensors, in eval mode on the CPU.

    num_classes: another number than the weights' re-makes the last layer (with a warning).
    model: the model name the caller expects (UserError when the weights are of another).
    options: `get_model` options to override; one that changes a tensor's shape is a UserError.
    """
    return _load(weights, num_classes, model, options)[0]


def _load(
    weights: str | os.PathLike,
    num_classes: int | None,
    model: str | None,
    options: dict[str, Any],
) -> tuple[nn.Module, WeightsMeta]:
    tensors, meta = read(weights)
    name = meta.model_name
    if model is not None and model != name:
        raise UserError(
            f"{meta.path}: weights of model {name!r}, not {model!r}; leave the model out or "
            f"name {name!r}"
        )
    stored = dict(meta.model_config.get("options", {}))
    stored.pop("num_classes", None)
    built = get_model(name, **{**stored, **options, "num_classes": num_classes or meta.num_classes})
    own = built.state_dict()
    shapes = sorted(k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape)
    # only the last layer's weight (K, D) and bias (K,) differ when only the number of classes K
    # differs: a head swap
    remade = num_classes is not None and num_classes != meta.num_classes
    if remade and 0 < len(shapes) <= 2 and all(own[k].shape[0] == num_classes for k in shapes):
        warnings.warn(
            f"{meta.path}: {meta.num_classes} classes in the weights, num_classes={num_classes}: "
            f"the last layer ({', '.join(shapes)}) is re-made and untrained",
            stacklevel=3,
        )
        tensors = {**tensors, **{k: own[k] for k in shapes}}
        shapes = []
    found = {
        "missing": sorted(own.keys() - tensors.keys()),
        "unexpected": sorted(tensors.keys() - own.keys()),
        "other shapes": shapes,
    }
    if any(found.values()):
        parts = [f"{what} {keys[:3]}" for what, keys in found.items() if keys]
        raise UserError(f"{meta.path}: tensors do not fit model {name!r} ({'; '.join(parts)})")
    built.load_state_dict(dict(tensors), strict=True)
    meta.model_config = dict(getattr(built, "config", meta.model_config))
    return built.eval(), meta


save = save_safetensors


def convert_layout(src: str | os.PathLike, dst: str | os.PathLike, layout: str) -> dict[str, Any]:
    """Rewrite the two-tower `paper` model's weights `src` (anything `read` takes) in `layout`
    ("paper" or "two-device", paper §3.2) as `dst`; returns {"from", "to", "layout", "tensors"}.
    """
    if layout not in ("paper", "two-device"):
        raise UserError(f"unknown layout {layout!r}; choose paper or two-device")
    tensors, meta = read(src)  # the paper layout, whatever the file's
    require_paper_two_tower(meta)
    extra = dict(meta.extra)
    if layout == "paper":
        extra.pop("layout", None)
    else:
        try:
            tensors = paper_to_two_device(tensors, meta.num_classes)
        except KeyError as exc:
            raise UserError(f"{src}: missing tensor {exc} for the paper layout") from None
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


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A local weights file, run directory or folder -> the catalog's facts (name = the path)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such weights file or folder")
    _, meta = read(p)
    extra = meta.extra
    published = extra.get("published") or {}
    source = str(extra.get("source") or "alexnet train")
    if meta.format == "torchvision":  # a catalog file: the hash in its name begins its SHA-256
        digest = file_sha256(meta.path)
        for entry in CATALOG.values():
            if digest.startswith(hash_prefix(entry["file_name"]) or "-"):
                published, source = entry, entry["source"]
    if meta.format == "checkpoint":
        source = f"training checkpoint, epoch {extra.get('epoch')}"
    top1, top5 = published.get("top1_err"), published.get("top5_err")
    measured = not published and extra.get("top1_error") is not None  # `alexnet train`'s best
    if measured:
        top1 = round(100 * float(extra["top1_error"]), 3)
        top5 = extra.get("top5_error")
        top5 = None if top5 is None else round(100 * float(top5), 3)
    return {
        "name": str(p),
        "format": meta.format,
        "source": source,
        "model": meta.model_name,
        "input_size": meta.model_config.get("options", {}).get("input_size")
        or meta.preprocess.crop_size,
        "classes": f"{meta.num_classes}",
        "top1_err": top1,
        "top5_err": top5,
        "file_name": p.name,
        "how": "given by path" + (" (errors: its validation split)" if measured else ""),
    }
