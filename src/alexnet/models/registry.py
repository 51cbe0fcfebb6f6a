"""`get_model(name, **options)` and `list_models()`: the one way to build a model (the
names and classes are listed once, in `alexnet.models.catalog`)."""

from __future__ import annotations

import importlib
from typing import Any

from alexnet.errors import UserError
from alexnet.models.catalog import MODELS
from alexnet.models.common import AlexNetModel


def list_models() -> list[str]:
    """The names `get_model` accepts."""
    return list(MODELS)


def model_class(name: str) -> type[AlexNetModel]:
    """The class that builds model `name` (UserError for an unknown name)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    module, _, attr = MODELS[name].builder.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if cls.name != name:  # the catalogue and the class must name the model alike
        raise RuntimeError(f"{MODELS[name].builder} is named {cls.name!r}, catalogued {name!r}")
    return cls


def option_defaults(name: str) -> dict[str, Any]:
    """Each option of model `name` with its default, as `model.config` stores it (an older
    config that lacks an option means its default: the network it extends)."""
    return model_class(name).Options().to_config()


def get_model(name: str, num_classes: int | None = None, **options: Any) -> AlexNetModel:
    """Build model `name` (an `AlexNetModel`; `num_classes` 1000, 10 for `small`); an unknown
    name or option, or a bad value, gives a one-line UserError naming it and what it may be."""
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
