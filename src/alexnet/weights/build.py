"""The one "metadata -> model -> load_state_dict" step that every weights format shares."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from alexnet.errors import UserError
from alexnet.models.registry import get_model


def build_model(model_config: Mapping[str, Any], num_classes: int) -> nn.Module:
    """A freshly initialised model as `model_config` ({"name", "options"}) describes it, with
    `num_classes` outputs unless the options name their own."""
    options = dict(model_config.get("options", {}))
    options.setdefault("num_classes", num_classes)
    return get_model(str(model_config["name"]), **options)


def load_into(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], path: str | os.PathLike
) -> nn.Module:
    """`model.load_state_dict(tensors, strict=True)`; a mismatch is one UserError naming the
    file, the model and up to three missing / unexpected / misshapen tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or shapes:
        name = getattr(model, "config", {}).get("name", type(model).__name__)
        found = {"missing": missing, "unexpected": unexpected, "other shapes": shapes}
        parts = [f"{what} {keys[:3]}" for what, keys in found.items() if keys]
        raise UserError(f"{path}: tensors do not fit model {name!r} ({'; '.join(parts)})")
    model.load_state_dict(dict(tensors), strict=True)
    return model
