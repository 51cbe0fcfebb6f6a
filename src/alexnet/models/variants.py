"""The well-known variants: the seed's code, torchvision's alexnet, and the paper's small CNN."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.models.alexnet import PAPER_WIDTHS, POOLS, PaperOptions, conv_stack, pool_layer
from alexnet.models.common import (
    ACTIVATIONS,
    AlexNetModel,
    ModelOptions,
    check_input,
    check_widths,
    init_normal,
    make_activation,
    option,
)
from alexnet.models.lrn import LRN
from alexnet.values import NONNEGATIVE_INT, POSITIVE_INT, SWITCH, UNIT_INTERVAL_OPEN_TOP, Choice


@dataclass(frozen=True)
class HeadOptions(ModelOptions):
    """The options of `seed` and `torchvision`: fc8's size and fc6/fc7's dropout (§4.2)."""

    num_classes: int = option(1000, POSITIVE_INT)
    dropout: float = option(0.5, UNIT_INTERVAL_OPEN_TOP)


class SeedAlexNet(AlexNetModel):
    """Exactly the PyTorch code of the project's seed note (d2l-style AlexNet): 96-256-384-384-256
    like the paper, but no LRN, no towers, and dropout *before* fc6/fc7; 62,378,344 parameters.
    (N, 3, 224, 224) -> logits (N, num_classes); state_dict keys as in the seed."""

    name = "seed"
    Options = HeadOptions
    _widths = PAPER_WIDTHS

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self._declare(HeadOptions(num_classes, dropout), 4096, "fc7")
        # the paper's conv stack without LRN or towers, keyed by position
        self.features = nn.Sequential(
            *conv_stack(PaperOptions(widths=self._widths, towers=1, lrn=False))
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self._widths[-1] * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def _conv(self, x: Tensor) -> Tensor:
        check_input(self, x)
        return self.features(x)

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> fc7 activations after ReLU (N, 4096)."""
        return self.classifier[:6](torch.flatten(self._conv(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> logits (N, num_classes)."""
        return self.classifier[6](self.forward_penultimate(x))


class TorchvisionAlexNet(SeedAlexNet):
    """torchvision's `alexnet` ("One weird trick", Krizhevsky 2014), module for module:
    64-192-384-256-256, no LRN, AdaptiveAvgPool2d(6), dropout before fc6/fc7; 61,100,840
    parameters. Its weights (`alexnet-owt-7be5be79.pth`) load with strict=True. Input
    (N, 3, H, W), nominally 224, H, W >= 63."""

    name = "torchvision"
    _widths = (64, 192, 384, 256, 256)

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__(num_classes, dropout=dropout)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))

    def _conv(self, x: Tensor) -> Tensor:
        check_input(self, x, fixed_size=False)
        if min(x.shape[-2:]) < 63:
            raise UserError(f"model 'torchvision' needs H, W >= 63, got {tuple(x.shape)}")
        return self.avgpool(self.features(x))


@dataclass(frozen=True)
class SmallOptions(ModelOptions):
    """The small CNN family's options (§3.1 Fig. 1, §3.3)."""

    num_classes: int = option(10, POSITIVE_INT)
    in_channels: int = option(3, Choice((1, 3)))  # 1 (Fashion-MNIST) or 3 (CIFAR-10)
    input_size: int = option(32, Choice((28, 32)))  # 28 (Fashion-MNIST) or 32 (CIFAR-10)
    # conv1..conv3; `one_tower_widths(widths)`, towers=1 is towers=2's comparison net (§3.2)
    widths: tuple[int, ...] = (32, 32, 64)
    # LRN (the paper's constants) after conv1's and conv2's pools (§3.3)
    lrn: bool = option(True, SWITCH)
    pool: str = option("overlap", Choice(POOLS))  # "overlap" (3/2, §3.4) or "nonoverlap" (2/2)
    # "relu" (§3.1, Fig. 1's solid line) or "tanh" (its dashed line)
    activation: str = option("relu", Choice(ACTIVATIONS))
    # > 0: a fully-connected hidden layer of this size with dropout
    hidden: int = option(0, NONNEGATIVE_INT)
    dropout: float = option(0.0, UNIT_INTERVAL_OPEN_TOP)  # drop probability, hidden layer (§4.2)
    # BatchNorm after each conv (not in the paper; for fast runs)
    batchnorm: bool = option(False, SWITCH)
    # "paper": N(0, 0.01), zero biases (§5); "torch": PyTorch's defaults
    init: str = option("torch", Choice(("paper", "torch")))
    towers: int = option(1, Choice((1, 2)))  # 2: conv2, conv3 and LRN per tower (§3.2)
    # "conv2": removed with its activation and LRN (§7), its pooling kept
    remove_conv: str | None = option(None, Choice((None, "conv2")))

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "widths", check_widths(self.widths, 3, self.towers))


class SmallCNN(AlexNetModel):
    """The paper's CIFAR-10-scale four-layer CNN family (§3.1 Fig. 1, §3.3), for 28-32 px,
    after cuda-convnet's `layers-18pct`: three 5x5 convs, each followed by the activation, a
    max-pool and (the first two) LRN, then the classifier; options: `SmallOptions`' fields.
    The penultimate layer: "pool3 (flattened)", or "fc4" with `hidden`."""

    name = "small"
    Options = SmallOptions

    def __init__(self, num_classes: int = 10, **options: Any) -> None:
        super().__init__()
        o = SmallOptions(num_classes=num_classes, **options)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, size = o.in_channels, o.input_size
        for i, width in enumerate(o.widths, start=1):
            if o.remove_conv != f"conv{i}":
                groups = o.towers if i > 1 else 1
                conv = nn.Conv2d(channels, width, 5, padding=2, groups=groups, bias=not o.batchnorm)
                layers[f"conv{i}"] = conv
                if o.batchnorm:
                    layers[f"bn{i}"] = nn.BatchNorm2d(width)
                layers[f"act{i}"] = make_activation(o.activation)
                channels = width
            layers[f"pool{i}"] = pool_layer(o.pool)
            if o.lrn and i < 3 and o.remove_conv != f"conv{i}":
                layers[f"norm{i}"] = LRN(groups=o.towers, inplace=True)
            size = (size - (3 if o.pool == "overlap" else 2)) // 2 + 1  # `pool_layer`'s output
        self.features, flat = nn.Sequential(layers), channels * size * size
        head: OrderedDict[str, nn.Module] = OrderedDict()
        if o.hidden:
            head["fc4"] = nn.Linear(flat, o.hidden)
            head["act4"] = make_activation(o.activation)
            head["drop4"] = nn.Dropout(o.dropout)
        self.head = nn.Sequential(head)
        self.fc = nn.Linear(o.hidden or flat, o.num_classes)
        penultimate = "fc4" if o.hidden else f"pool{len(o.widths)} (flattened)"
        self._declare(o, penultimate_dim=o.hidden or flat, penultimate_name=penultimate)
        if o.init == "paper":
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        init_normal(m, 0.01, 0.0)

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, C, S, S) -> what the last layer reads (N, penultimate_dim)."""
        check_input(self, x)
        return self.head(torch.flatten(self.features(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, S, S) -> logits (N, num_classes)."""
        return self.fc(self.forward_penultimate(x))
