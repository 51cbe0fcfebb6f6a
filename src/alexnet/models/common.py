"""Pieces shared by the model family: activations, input checks, init schemes."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from alexnet.errors import UserError

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
    if value not in choices:
        raise UserError(f"{option}={value!r} is not one of {', '.join(map(str, choices))}")


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
