"""The well-known variants: the seed's code, torchvision's alexnet, and the paper's small CNN."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from alexnet.models.alexnet import pool_layer
from alexnet.models.common import (
    ACTIVATIONS,
    check_choice,
    check_input,
    init_normal,
    make_activation,
)
from alexnet.models.lrn import LRN


class SeedAlexNet(nn.Module):
    """Exactly the PyTorch code of the project's seed note (d2l-style AlexNet).

    96-256-384-384-256 like the paper, but no LRN, no towers, and dropout *before* fc6/fc7;
    62,378,344 parameters for 1000 classes. Input (N, 3, 224, 224); state_dict keys
    `features.N.*`, `classifier.N.*` as in the seed.
    """

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes, self.input_size, self.in_channels = num_classes, 224, 3
        self.config = {"name": "seed", "options": {"num_classes": num_classes, "dropout": dropout}}
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x)
        return self.classifier[:6](torch.flatten(self.features(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier[6](self.forward_features(x))


class TorchvisionAlexNet(nn.Module):
    """torchvision's `alexnet` ("One weird trick", Krizhevsky 2014), module for module.

    64-192-384-256-256, no LRN, AdaptiveAvgPool2d(6), dropout before fc6/fc7; 61,100,840
    parameters. Same state_dict keys as `torchvision.models.alexnet`, so its weights
    (`alexnet-owt-7be5be79.pth`) load with strict=True. Input (N, 3, H, W), nominally 224.
    """

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes, self.input_size, self.in_channels = num_classes, 224, 3
        self.config = {
            "name": "torchvision",
            "options": {"num_classes": num_classes, "dropout": dropout},
        }
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x, fixed_size=False)
        if min(x.shape[-2:]) < 63:
            raise ValueError(f"model 'torchvision' needs H, W >= 63, got {tuple(x.shape)}")
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier[6](self.forward_features(x))


def _pooled(size: int, pool: str) -> int:
    return (size - 3) // 2 + 1 if pool == "overlap" else (size - 2) // 2 + 1


class SmallCNN(nn.Module):
    """The paper's CIFAR-10-scale four-layer CNN family (§3.1 Fig. 1, §3.3), for 28-32 px.

    After cuda-convnet's `layers-18pct` net: three 5x5 conv layers (pad 2), each followed by the
    activation, a pool (max, then average, average in cuda-convnet; here max throughout) and,
    on the first two, LRN; then one fully-connected layer to the classes — four weight layers.
    `hidden` > 0 inserts a fully-connected hidden layer with dropout (a fifth weight layer).

    Args:
        num_classes: outputs.
        in_channels: 1 (Fashion-MNIST) or 3 (CIFAR-10).
        input_size: 28 or 32.
        widths: channels of the three conv layers.
        lrn, pool, activation: as in `PaperAlexNet` (the paper's LRN constants).
        dropout: on the hidden layer (only with hidden > 0).
        batchnorm: BatchNorm after each conv (not in the paper; a modern option for fast runs).
        init: "paper" (N(0, 0.01), zero biases) or "torch" (PyTorch defaults).

    Input (N, in_channels, input_size, input_size); `forward_features` gives the flattened
    last conv block (or the hidden layer), `forward` the logits.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        input_size: int = 32,
        widths: tuple[int, int, int] | list[int] = (32, 32, 64),
        lrn: bool = True,
        pool: str = "overlap",
        activation: str = "relu",
        hidden: int = 0,
        dropout: float = 0.0,
        batchnorm: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        check_choice("in_channels", in_channels, (1, 3))
        check_choice("input_size", input_size, (28, 32))
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, ("paper", "torch"))
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(f"widths must name 3 conv layers, got {widths}")
        self.num_classes, self.input_size, self.in_channels = num_classes, input_size, in_channels
        self.config = {
            "name": "small",
            "options": {
                "num_classes": num_classes,
                "in_channels": in_channels,
                "input_size": input_size,
                "widths": list(widths),
                "lrn": lrn,
                "pool": pool,
                "activation": activation,
                "hidden": hidden,
                "dropout": dropout,
                "batchnorm": batchnorm,
                "init": init,
            },
        }
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, size = in_channels, input_size
        for i, width in enumerate(widths, start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, width, 5, padding=2, bias=not batchnorm)
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm2d(width)
            layers[f"act{i}"] = make_activation(activation)
            layers[f"pool{i}"] = pool_layer(pool)
            if lrn and i < 3:
                layers[f"norm{i}"] = LRN(inplace=True)
            channels, size = width, _pooled(size, pool)
        self.features = nn.Sequential(layers)
        flat = channels * size * size
        head: OrderedDict[str, nn.Module] = OrderedDict()
        if hidden:
            head["fc4"] = nn.Linear(flat, hidden)
            head["act4"] = make_activation(activation)
            head["drop4"] = nn.Dropout(dropout)
        self.head = nn.Sequential(head)
        self.fc = nn.Linear(hidden or flat, num_classes)
        if init == "paper":
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)):
                        init_normal(m, 0.01, 0.0)

    def forward_features(self, x: Tensor) -> Tensor:
        check_input(self, x)
        return self.head(torch.flatten(self.features(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))
