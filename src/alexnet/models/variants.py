"""The well-known variants: the seed's code, torchvision's alexnet, and the paper's small CNN."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.models.alexnet import POOLS, PaperOptions, conv_stack, pool_layer
from alexnet.models.common import (
    ACTIVATIONS,
    AlexNetModel,
    ModelOptions,
    check_input,
    check_widths,
    init_normal,
    make_activation,
)
from alexnet.models.lrn import LRN
from alexnet.values import NONNEGATIVE_INT, POSITIVE_INT, SWITCH, UNIT_INTERVAL_OPEN_TOP, Choice


@dataclass(frozen=True)
class HeadOptions(ModelOptions):
    """The options of `seed` and `torchvision`: fc8's size and fc6/fc7's dropout (§4.2)."""

    num_classes: int = 1000
    dropout: float = 0.5

    def __post_init__(self) -> None:
        self.check(num_classes=POSITIVE_INT, dropout=UNIT_INTERVAL_OPEN_TOP)


def _seed_layers(
    widths: tuple[int, ...], num_classes: int, dropout: float
) -> tuple[nn.Sequential, nn.Sequential]:
    """(features, classifier) of the seed's and torchvision's nets, with their state_dict keys:
    the paper's conv stack of `widths` without LRN or towers, then dropout, fc6, ReLU,
    dropout, fc7, ReLU, fc8."""
    features = conv_stack(PaperOptions(widths=widths, towers=1, lrn=False))
    classifier = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(widths[-1] * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(*features), classifier


class SeedAlexNet(AlexNetModel):
    """Exactly the PyTorch code of the project's seed note (d2l-style AlexNet): 96-256-384-384-256
    like the paper, but no LRN, no towers, and dropout *before* fc6/fc7; 62,378,344 parameters.
    (N, 3, 224, 224) -> logits (N, num_classes); state_dict keys as in the seed."""

    name = "seed"
    Options = HeadOptions

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self._declare(HeadOptions(num_classes, dropout), 4096, "fc7")
        widths = (96, 256, 384, 384, 256)
        self.features, self.classifier = _seed_layers(widths, num_classes, dropout)

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x)
        return self.classifier[:6](torch.flatten(self.features(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> logits (N, num_classes)."""
        return self.classifier[6](self.forward_penultimate(x))


class TorchvisionAlexNet(AlexNetModel):
    """torchvision's `alexnet` ("One weird trick", Krizhevsky 2014), module for module:
    64-192-384-256-256, no LRN, AdaptiveAvgPool2d(6), dropout before fc6/fc7; 61,100,840
    parameters. Its weights (`alexnet-owt-7be5be79.pth`) load with strict=True. Input
    (N, 3, H, W), nominally 224."""

    name = "torchvision"
    Options = HeadOptions

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self._declare(HeadOptions(num_classes, dropout), 4096, "fc7")
        features, classifier = _seed_layers((64, 192, 384, 256, 256), num_classes, dropout)
        self.features, self.avgpool = features, nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x, fixed_size=False)
        if min(x.shape[-2:]) < 63:
            raise UserError(f"model 'torchvision' needs H, W >= 63, got {tuple(x.shape)}")
        return self.classifier[:6](torch.flatten(self.avgpool(self.features(x)), 1))

    forward = SeedAlexNet.forward


def _pooled(size: int, pool: str) -> int:
    return (size - 3) // 2 + 1 if pool == "overlap" else (size - 2) // 2 + 1


@dataclass(frozen=True)
class SmallOptions(ModelOptions):
    """The small CNN family's options (§3.1 Fig. 1, §3.3)."""

    num_classes: int = 10  # outputs of the last layer (10 for CIFAR-10)
    in_channels: int = 3  # 1 (Fashion-MNIST) or 3 (CIFAR-10)
    input_size: int = 32  # 28 (Fashion-MNIST) or 32 (CIFAR-10)
    # channels of conv1..conv3; `one_tower_widths(widths)` with towers=1 is the comparison net
    # for towers=2 (§3.2: half of each but the last)
    widths: tuple[int, ...] = (32, 32, 64)
    lrn: bool = True  # LRN (the paper's constants) after conv1's and conv2's pools (§3.3)
    pool: str = "overlap"  # "overlap" (3/2, §3.4) or "nonoverlap" (2/2), max-pooling throughout
    activation: str = "relu"  # "relu" (§3.1, Fig. 1's solid line) or "tanh" (its dashed line)
    hidden: int = 0  # > 0: a fully-connected hidden layer of this size with dropout (5th layer)
    dropout: float = 0.0  # drop probability on the hidden layer (§4.2; only with hidden > 0)
    batchnorm: bool = False  # BatchNorm after each conv (not in the paper; for fast runs)
    init: str = "torch"  # "paper": N(0, 0.01), zero biases (§5); "torch": PyTorch's defaults
    # 2: conv2 and conv3 read only their own tower's maps and LRN normalizes within a tower,
    # like the paper's two GPUs (§3.2); 1: one tower
    towers: int = 1
    # None or "conv2", the family's one middle conv layer (§7: the first and last are kept);
    # it goes with its activation and LRN, its pooling stays, and conv3 reads conv1's maps
    remove_conv: str | None = None

    def __post_init__(self) -> None:
        self.check(
            num_classes=POSITIVE_INT,
            in_channels=Choice((1, 3)),
            input_size=Choice((28, 32)),
            lrn=SWITCH,
            pool=Choice(POOLS),
            activation=Choice(ACTIVATIONS),
            hidden=NONNEGATIVE_INT,
            dropout=UNIT_INTERVAL_OPEN_TOP,
            batchnorm=SWITCH,
            init=Choice(("paper", "torch")),
            towers=Choice((1, 2)),
            remove_conv=Choice((None, "conv2")),
        )
        object.__setattr__(self, "widths", check_widths(self.widths, 3, self.towers))


class SmallCNN(AlexNetModel):
    """The paper's CIFAR-10-scale four-layer CNN family (§3.1 Fig. 1, §3.3), for 28-32 px;
    options: `SmallOptions`' fields.

    After cuda-convnet's `layers-18pct` net: three 5x5 conv layers (pad 2), each followed by the
    activation, a max-pool and, on the first two, LRN; then one fully-connected layer to the
    classes. `hidden` > 0 inserts a fully-connected hidden layer with dropout. The penultimate
    layer, named as `alexnet summary` lists it: the flattened pool3 ("pool3 (flattened)") or
    the hidden layer ("fc4").
    """

    name = "small"
    Options = SmallOptions

    def __init__(self, num_classes: int = 10, **options: Any) -> None:
        super().__init__()
        o = SmallOptions(num_classes=num_classes, **options)
        self.features, flat = _small_stack(o)
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


def _small_stack(o: SmallOptions) -> tuple[nn.Sequential, int]:
    """The small family's conv blocks from its options `o`, and the flattened output size."""
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
        size = _pooled(size, o.pool)
    return nn.Sequential(layers), channels * size * size
