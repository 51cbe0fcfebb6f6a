"""Hugging Face-style folders (timm's layout, uploadable as they are): `model.safetensors` (our
weights file), `README.md` (a model card) and `config.json`, which a folder is read by:

    {"format": "alexnet-hf/1", "library_name": "alexnet", "architecture": NAME,
     "model": {"name", "options"}, "num_classes": K, "label_names": [K names],
     "input_size": [C, S, S], "preprocess": {Preprocess}, "extra": {recipe, epoch, ...}}
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import UserError
from alexnet.fileio import atomic_write_bytes
from alexnet.weights.meta import WeightsMeta
from alexnet.weights.safetensors_io import MEAN_IMAGE_KEY, load_tensors, save_safetensors

FORMAT = "alexnet-hf/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def is_folder(path: str | os.PathLike) -> bool:
    """True for a directory holding `model.safetensors` (a run directory holds none)."""
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS_NAME).is_file()


def read_folder(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """A folder as `write_folder` writes it -> (state_dict, metadata from config.json)."""
    p = Path(path)
    config_path = p / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{p}: a folder with {WEIGHTS_NAME} but no {CONFIG_NAME}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{config_path}: not readable JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"{config_path}: not an alexnet config (format {FORMAT})")
    _, tensors = load_tensors(p / WEIGHTS_NAME)
    try:
        meta = WeightsMeta.parse(
            config["model"],
            config["label_names"],
            config["preprocess"],
            config.get("extra", {}),
            mean_image=tensors.pop(MEAN_IMAGE_KEY, None),
            path=str(p),
        )
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise UserError(f"{config_path}: damaged alexnet config ({exc})") from None
    return tensors, meta


def run_dir_of(weights: str | os.PathLike) -> Path | None:
    """The run directory of `weights` (RUN or a file in it) when it has an eval.json."""
    p = Path(weights)
    for run in (p, p.parent) if p.exists() else ():
        if run.is_dir() and (run / "eval.json").is_file():
            return run
    return None


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"


def model_card(meta: WeightsMeta, params: int, run: Path | None) -> str:
    """README.md: the model, its data and recipe, the measured error when `run` has eval.json."""
    options = meta.model_config.get("options", {})
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    names = ", ".join(meta.classes[:5]) + (", ..." if meta.num_classes > 5 else "")
    extra = meta.extra
    lines = [
        "---",
        "library_name: alexnet",
        "tags: [image-classification, alexnet]",
        "---",
        f"# AlexNet (`{meta.model_name}`)",
        "",
        "Krizhevsky, Sutskever & Hinton, *ImageNet Classification with Deep Convolutional "
        "Neural Networks* (NIPS 2012), as implemented by the `alexnet` package.",
        "",
        f"- Model: `{meta.model_name}` ({shown}); {params:,} parameters.",
        f"- Classes: {meta.num_classes} ({names}).",
        f"- Input: {meta.preprocess.crop_size} px, normalization `{meta.preprocess.normalize}`"
        " (config.json `preprocess`).",
    ]
    data = None
    if run is not None and (run / "config.json").is_file():
        try:
            data = json.loads((run / "config.json").read_text()).get("config", {}).get("data")
        except (OSError, ValueError, AttributeError):
            data = None
    lines.append(f"- Data: {data or extra.get('source') or 'not recorded'}.")
    if extra.get("recipe") is not None:
        epoch = extra.get("epoch", "?")
        lines.append(f"- Recipe: `{extra['recipe']}` (alexnet train --recipe), epoch {epoch}.")
    if run is not None:
        final = json.loads((run / "eval.json").read_text())
        top5 = final.get("top5_error")  # None with 5 classes or fewer
        lines.append(
            f"- Measured ({run.name}/eval.json, {final.get('images', '?')} validation images, "
            f"{final.get('crops', '?')} crop(s)): top-1 error {_percent(final.get('top1_error'))}"
            + ("" if top5 is None else f", top-5 error {_percent(top5)}")
            + "."
        )
    else:
        lines.append("- Measured accuracy: none recorded with these weights.")
    lines += [
        "",
        "```python",
        "import alexnet",
        'model = alexnet.from_pretrained("THIS_FOLDER_OR_ID")  # eval mode, CPU',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_folder(
    out: str | os.PathLike, model: torch.nn.Module, meta: WeightsMeta, run: Path | None = None
) -> dict[str, Any]:
    """Write `model` and `meta` as the folder `out`, each file atomically; the card quotes
    `run`'s eval.json. Returns {"folder", "files", "model", "classes", "eval"}."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in meta.extra.items() if k != "layout"}  # tensors: the paper layout
    meta = dataclasses.replace(meta, extra=extra)  # the card reads it too
    save_safetensors(
        out / WEIGHTS_NAME,
        model.state_dict(),
        model_config=meta.model_config,
        classes=meta.classes,
        preprocess=meta.preprocess,
        mean_image=meta.mean_image,
        extra=extra,
    )
    config = {  # see the module docstring
        "format": FORMAT,
        "library_name": "alexnet",
        "architecture": meta.model_name,
        "model": meta.model_config,
        "num_classes": meta.num_classes,
        "label_names": list(meta.classes),
        "input_size": [int(model.in_channels), int(model.input_size), int(model.input_size)],
        "preprocess": meta.preprocess.to_json(),
        "extra": extra,
    }
    atomic_write_bytes(out / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())
    params = sum(t.numel() for t in model.parameters())
    atomic_write_bytes(out / CARD_NAME, model_card(meta, params, run).encode())
    return {
        "folder": str(out),
        "files": [WEIGHTS_NAME, CONFIG_NAME, CARD_NAME],
        "model": meta.model_name,
        "classes": meta.num_classes,
        "eval": None if run is None else str(run / "eval.json"),
    }
