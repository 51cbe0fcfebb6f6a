"""The model family by name: `MODELS` (name -> a line about it, its `module:Class`) and
`get_model(name, **options)`, the one way to build a model. No torch here (the command line
lists the names): a model's module is imported when it is built."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alexnet.errors import UserError

if TYPE_CHECKING:
    from alexnet.models.common import AlexNetModel


# the class's `name` is its key here
MODELS: dict[str, tuple[str, str]] = {
    "paper": (
        "the 2012 paper's two-tower network with LRN (paper §3, Fig. 2)",
        "alexnet.models.alexnet:PaperAlexNet",
    ),
    "seed": (
        "the project's seed PyTorch code: no LRN, no towers, dropout before fc6/fc7",
        "alexnet.models.variants:SeedAlexNet",
    ),
    "torchvision": (
        "torchvision's alexnet, the 2014 one-weird-trick variant (64-192-384-256-256)",
        "alexnet.models.variants:TorchvisionAlexNet",
    ),
    "small": (
        "the paper's CIFAR-10-scale 4-layer CNN for 28-32 px images (§3.1 Fig. 1, §3.3)",
        "alexnet.models.variants:SmallCNN",
    ),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def list_models() -> list[str]:
    """The names `get_model` accepts."""
    return list(MODELS)


def model_class(name: str) -> type[AlexNetModel]:
    """The class that builds model `name` (UserError for an unknown name)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    module, _, attr = MODELS[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)


def option_defaults(name: str) -> dict[str, Any]:
    """Each option of model `name` with its default, as `model.config` stores it (an older
    config that lacks an option means its default)."""
    return model_class(name).Options().to_config()


def get_model(name: str, num_classes: int | None = None, **options: Any) -> AlexNetModel:
    """Build model `name` (`num_classes` 1000, 10 for `small`); an unknown name or option, or a
    bad value, gives a one-line UserError naming it and what it may be."""
    cls = model_class(name)
    if num_classes is not None:
        options["num_classes"] = num_classes
    known = option_defaults(name)
    unknown = [key for key in options if key not in known]
    if unknown:
        raise UserError(
            f"model {name!r} has no option {unknown[0]!r}; its options: {', '.join(known)}"
        )
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:  # the options are the only input (UserError too)
        raise UserError(f"model {name!r}: {exc}") from None
