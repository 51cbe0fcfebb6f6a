"""A model with weights for someone else's code: `load_for(weights, num_classes, model, **options)`.

The one place that `alexnet.get_model(name, weights=...)`, `alexnet.from_pretrained(...)` and
`hubconf.py`'s `torch.hub.load(..., "alexnet", weights=...)` go through. `num_classes` other
than the weights' re-makes the last layer (fc8), freshly initialised, and says so in one
warning: fine-tuning's usual start (paper §6.1 re-uses the other layers the same way).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from torch import nn

from alexnet.errors import UserError
from alexnet.models.registry import get_model
from alexnet.weights.files import load_into, read


def load_for(
    weights: str | os.PathLike,
    num_classes: int | None = None,
    model: str | None = None,
    **options: Any,
) -> nn.Module:
    """The model that `weights` names, with its tensors, in eval mode on the CPU.

    weights: a path (file, run directory, Hugging Face-style folder), a catalog name
        ("torchvision") or a Hugging Face id "user/name".
    num_classes: outputs of the last layer; another number than the weights' re-makes that
        layer (a warning says so). None keeps the weights'.
    model: the model name the caller expects (UserError when the weights are of another).
    options: model options to override (`get_model`'s keywords, e.g. dropout); one that
        changes a tensor's shape is a UserError naming the tensors.
    """
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
    # the tensors whose shape differs: the last layer's weight (K, D) and bias (K,) when only
    # the number of classes K differs
    head = sorted(k for k in own.keys() & tensors.keys() if own[k].shape != tensors[k].shape)
    if head and num_classes is not None and num_classes != meta.num_classes:
        last = [k for k in head if own[k].shape[0] == num_classes]
        if last != head or len(head) > 2:  # anything but the classifier's rows: not a head swap
            raise UserError(f"{meta.path}: tensors {head[:3]} do not fit model {name!r}")
        warnings.warn(
            f"{meta.path}: {meta.num_classes} classes in the weights, num_classes={num_classes}: "
            f"the last layer ({', '.join(head)}) is re-made and untrained",
            stacklevel=2,
        )
        tensors = {**tensors, **{k: own[k] for k in head}}
    load_into(built, tensors, meta.path)
    return built.eval()
