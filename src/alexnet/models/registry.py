"""`get_model(name, **options)` and `list_models()`: the one way to build a model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from alexnet.errors import UserError
from alexnet.models.alexnet import PaperAlexNet
from alexnet.models.common import AlexNetModel
from alexnet.models.variants import SeedAlexNet, SmallCNN, TorchvisionAlexNet

_MODELS: dict[str, Callable[..., AlexNetModel]] = {
    "paper": PaperAlexNet,
    "seed": SeedAlexNet,
    "torchvision": TorchvisionAlexNet,
    "small": SmallCNN,
}
_DESCRIPTIONS = {
    "paper": "the 2012 paper's two-tower network with LRN (60,965,224 params)",
    "seed": "the seed note's PyTorch code: no LRN, no towers (62,378,344 params)",
    "torchvision": "torchvision's alexnet, the 2014 one-weird-trick variant (61,100,840 params)",
    "small": "the paper's CIFAR-10-scale 4-layer CNN for 28-32 px images",
}


def list_models() -> list[str]:
    """The names `get_model` accepts."""
    return list(_MODELS)


def describe_models() -> dict[str, str]:
    """One line about each model, by name."""
    return dict(_DESCRIPTIONS)


def option_defaults(name: str) -> dict[str, Any]:
    """Each option of model `name` that has a default, with that default (tuples as lists, as
    `model.config` stores them). An option added in a later version defaults to the network
    it extends, so an older `config` that lacks it means this default."""
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}")
    params = inspect.signature(_MODELS[name]).parameters.values()
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in params
        if p.default is not inspect.Parameter.empty
    }


def get_model(name: str, num_classes: int | None = None, **options: Any) -> AlexNetModel:
    """Build model `name` with its options; unknown names or options give a UserError.

    `num_classes` defaults to 1000 (10 for `small`). The model has the `AlexNetModel`
    interface: `num_classes`, `input_size`, `in_channels`, `config`, `forward_penultimate`.
    """
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(_MODELS)}")
    if num_classes is not None:
        options["num_classes"] = num_classes
    try:
        return _MODELS[name](**options)
    except TypeError as exc:
        raise UserError(f"model {name!r}: {exc}") from None
