"""Pieces shared by the model family: the interface, options checked once, activations, init."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.values import Kind


def option(default: Any, kind: Kind | None = None) -> Any:
    """A field of a model's options: its default and the `Kind` its value must be."""
    return dataclasses.field(default=default, metadata={"kind": kind})


class ModelOptions:
    """Base of a model's options: a frozen dataclass of `option` fields, each checked once."""

    def __post_init__(self) -> None:
        """UserError "name=value is not <what it may be>" for the first field outside its kind."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            kind = field.metadata.get("kind")
            reason = kind and kind.problem(getattr(self, field.name))
            if reason:
                raise UserError(f"{field.name}={reason}")

    def to_config(self) -> dict[str, Any]:
        """The options as the model's config stores them (lists, not tuples)."""
        items = dataclasses.asdict(self).items()  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


class AlexNetModel(nn.Module):
    """The interface every model of the family shares (`alexnet.get_model` returns one).

    `forward(x)`: (N, in_channels, S, S) -> logits (N, num_classes); `forward_penultimate(x)`:
    what the classifier reads, (N, penultimate_dim), from `penultimate_name` ("fc7": §6.1's
    retrieval feature). `config` rebuilds the model with `get_model`; `Options` lists its
    keywords. The conv stack is `features`, as in torchvision (the state_dict keys say so).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[ModelOptions]]
    num_classes: int
    input_size: int
    in_channels: int
    config: dict[str, Any]  # {name, options}: `get_model(name, **options)` rebuilds it
    penultimate_dim: int
    penultimate_name: str

    def _declare(self, options: ModelOptions, penultimate_dim: int, penultimate_name: str) -> None:
        """Set the interface attributes from the checked `options` (224 px RGB by default)."""
        config = options.to_config()
        self.num_classes = int(config["num_classes"])
        self.input_size = int(config.get("input_size", 224))
        self.in_channels = int(config.get("in_channels", 3))
        self.penultimate_dim, self.penultimate_name = penultimate_dim, penultimate_name
        self.config = {"name": self.name, "options": config}

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, in_channels, S, S) -> the penultimate layer's activations (N, penultimate_dim)."""
        raise NotImplementedError


ACTIVATIONS = ("relu", "tanh")


def make_activation(name: str) -> nn.Module:
    """ReLU (paper §3.1: trains ~6x faster than tanh) or tanh (the saturating baseline)."""
    return nn.ReLU(inplace=True) if name == "relu" else nn.Tanh()


def check_widths(widths: Any, count: int, towers: int) -> tuple[int, ...]:
    """`count` positive conv widths, each divisible by `towers` (grouped convs, per-tower LRN)."""
    try:
        if isinstance(widths, str):
            raise TypeError(widths)
        widths = tuple(int(w) for w in widths)
    except (TypeError, ValueError):
        raise UserError(f"widths must be {count} positive numbers, got {widths!r}") from None
    if len(widths) != count or min(widths, default=0) < 1:
        raise UserError(f"widths must be {count} positive numbers, got {list(widths)}")
    if any(w % towers for w in widths):
        raise UserError(f"widths {list(widths)} must each split into towers={towers}")
    return widths


def one_tower_widths(widths: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The one-tower comparison widths (paper §3.2 footnote): each conv halved but the last."""
    return (*(int(w) // 2 for w in widths[:-1]), int(widths[-1]))


def check_input(model: AlexNetModel, x: Tensor, fixed_size: bool = True) -> None:
    """Refuse an input the model cannot take, naming the expected shape (N, C, S, S)."""
    expected = (model.in_channels, model.input_size, model.input_size)
    got = tuple(x.shape[1:])
    name = model.config["name"]
    if x.dim() != 4 or got[0] != expected[0] or (fixed_size and got != expected):
        want = "(N, {}, {}, {})".format(*expected) if fixed_size else f"(N, {expected[0]}, H, W)"
        raise UserError(f"model {name!r} expects input of shape {want}, got {tuple(x.shape)}")


def init_normal(module: nn.Module, std: float, bias: float) -> None:
    """Weights ~ N(0, std), bias constant."""
    nn.init.normal_(module.weight, 0.0, std)
    if module.bias is not None:
        nn.init.constant_(module.bias, bias)
