"""A training checkpoint (`RUN/checkpoint.pt`, or the run directory RUN) read as weights.

The checkpoint is a dict of tensors and plain values (format "alexnet-checkpoint/1"): the
model's config as a JSON string under "model_config" and its state_dict (paper layout, even
for a two-device run) under "model". Newer checkpoints also hold "classes" (JSON list),
"preprocess" (JSON) and "mean_image" (tensor); for older ones the classes and preprocessing
come from RUN/config.json beside the checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import UserError
from alexnet.rundir import RunDir
from alexnet.weights.meta import Preprocess, WeightsMeta

CHECKPOINT_FORMAT = "alexnet-checkpoint/1"
CHECKPOINT_NAME = RunDir.CHECKPOINT
RUN_CONFIG = RunDir.CONFIG


def checkpoint_path(path: str | os.PathLike) -> Path:
    """RUN or RUN/checkpoint.pt -> RUN/checkpoint.pt (UserError when a directory has none)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).is_file():
            raise UserError(
                f"{path}: a directory without {CHECKPOINT_NAME}; pass a weights file or a run "
                "directory"
            )
        return path / CHECKPOINT_NAME
    return path


def is_checkpoint(obj: Any) -> bool:
    """True for the dict of an alexnet training checkpoint."""
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def _run_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path.parent / RUN_CONFIG).read_text())
    except (OSError, ValueError):
        return {}


def checkpoint_weights(
    state: dict[str, Any], path: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """A loaded checkpoint dict -> (model state_dict, metadata); UserError naming the file
    when it lacks what a model needs (older checkpoints: see RUN/config.json)."""
    path = Path(path)
    run_config = _run_config(path) if "classes" not in state or "preprocess" not in state else {}
    try:
        model_config = json.loads(state["model_config"])
        tensors = dict(state["model"])
        classes = state.get("classes", run_config.get("classes"))
        preprocess = state.get("preprocess", run_config.get("preprocess"))
        classes = json.loads(classes) if isinstance(classes, str) else classes
        preprocess = json.loads(preprocess) if isinstance(preprocess, str) else preprocess
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: damaged checkpoint ({exc})") from None
    if classes is None or preprocess is None:
        missing = "class names" if classes is None else "preprocessing"
        raise UserError(
            f"{path}: an older checkpoint without its {missing} (nor in {RUN_CONFIG} beside "
            "it); use RUN/weights.safetensors instead"
        )
    pre = Preprocess.from_json(preprocess)
    mean_image = state.get("mean_image")
    if pre.normalize == "mean_image" and mean_image is None:
        raise UserError(
            f"{path}: an older checkpoint without the training mean image; use "
            "RUN/weights.safetensors instead"
        )
    extra = {"source": "checkpoint"}
    extra.update({k: state[k] for k in ("epoch", "global_step") if k in state})
    meta = WeightsMeta(
        model_config=model_config,
        classes=[str(c) for c in classes],
        preprocess=pre,
        extra=extra,
        mean_image=None if mean_image is None else torch.as_tensor(mean_image).float(),
        format="checkpoint",
        path=str(path),
    )
    return tensors, meta
