"""Pieces shared by the model family: the model interface, activations, input checks, init."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, ClassVar, TypedDict

from torch import Tensor, nn

from alexnet.errors import UserError


class ModelConfig(TypedDict):
    """What a weights file stores to rebuild a model: `get_model(name, **options)`."""

    name: str
    options: dict[str, Any]


class AlexNetModel(nn.Module):
    """The interface every model of the family shares (`alexnet.get_model` returns one).

    Attributes:
        num_classes: outputs of the last layer.
        input_size: S of the expected input (N, in_channels, S, S).
        in_channels: 3 for RGB, 1 for grayscale.
        config: `{"name": ..., "options": {...}}`; `get_model(**)` of it rebuilds the model.
        penultimate_dim: D of `forward_penultimate` (4096 for the 224 px nets).
        penultimate_name: which layer that is, e.g. "fc7" (paper §6.1's retrieval feature).

    `forward(x)` gives logits (N, num_classes); `forward_penultimate(x)` the activations the
    classifier reads, (N, penultimate_dim). The convolutional stack stays `features`, as in
    torchvision (its state_dict keys `features.N.*` depend on that name).
    """

    name: ClassVar[str] = ""
    num_classes: int
    input_size: int
    in_channels: int
    config: ModelConfig
    penultimate_dim: int
    penultimate_name: str

    def _declare(
        self,
        options: dict[str, Any],
        *,
        input_size: int,
        in_channels: int,
        penultimate_dim: int,
        penultimate_name: str,
    ) -> None:
        """Set the interface attributes; `options` are the constructor's keywords."""
        self.num_classes = int(options["num_classes"])
        self.input_size, self.in_channels = input_size, in_channels
        self.penultimate_dim, self.penultimate_name = penultimate_dim, penultimate_name
        self.config = ModelConfig(name=self.name, options=dict(options))

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, in_channels, S, S) -> the penultimate layer's activations (N, penultimate_dim)."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """Deprecated alias of `forward_penultimate` (not of `features`, the conv stack)."""
        warnings.warn(
            "forward_features() is deprecated; use forward_penultimate()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.forward_penultimate(x)


ACTIVATIONS = ("relu", "tanh")
INITS = ("paper", "caffe", "kaiming", "torch")


def make_activation(name: str) -> nn.Module:
    """ReLU (paper §3.1: trains ~6x faster than tanh) or tanh (the saturating baseline)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "tanh":
        return nn.Tanh()
    raise UserError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def check_choice(option: str, value: Any, choices: tuple) -> None:
    """UserError naming `option` and its `choices` unless `value` is one of them."""
    if value not in choices:
        raise UserError(f"{option}={value!r} is not one of {', '.join(map(str, choices))}")


def check_switch(option: str, value: Any) -> None:
    """UserError unless `value` is true or false (a feature switched on or off)."""
    check_choice(option, value, (True, False))


def check_count(option: str, value: Any, least: int) -> None:
    """UserError unless `value` is an integer >= `least` (classes, hidden units)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise UserError(f"{option}={value!r} is not an integer >= {least}")


def check_dropout(option: str, value: Any) -> None:
    """UserError unless `value` is a drop probability in [0, 1) (paper §4.2: 0.5; 0: none)."""
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise UserError(f"{option}={value!r} is not a probability in [0, 1)")


def check_positive(option: str, value: Any) -> None:
    """UserError unless `value` is a finite number > 0 (LRN's k, paper §3.3)."""
    if not _is_real(value) or not (math.isfinite(value) and value > 0):
        raise UserError(f"{option}={value!r} is not a finite number > 0")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_widths(widths: tuple[int, ...] | list[int], count: int, towers: int) -> tuple[int, ...]:
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


def check_input(model: nn.Module, x: Tensor, fixed_size: bool = True) -> None:
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


def init_kaiming(module: nn.Module) -> None:
    """He et al. 2015 fan-out normal for convs, N(0, 0.01) for linear layers, zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    else:
        nn.init.normal_(module.weight, 0.0, 0.01)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
