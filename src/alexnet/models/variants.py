"""The well-known variants: the seed's code, torchvision's alexnet, and the paper's small CNN."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from alexnet.models.alexnet import pool_layer
from alexnet.models.common import (
    ACTIVATIONS,
    AlexNetModel,
    check_choice,
    check_input,
    check_widths,
    init_normal,
    make_activation,
)
from alexnet.models.lrn import LRN


class SeedAlexNet(AlexNetModel):
    """Exactly the PyTorch code of the project's seed note (d2l-style AlexNet).

    96-256-384-384-256 like the paper, but no LRN, no towers, and dropout *before* fc6/fc7;
    62,378,344 parameters for 1000 classes. Input (N, 3, 224, 224); state_dict keys
    `features.N.*`, `classifier.N.*` as in the seed.
    """

    name = "seed"

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self._declare(
            {"num_classes": num_classes, "dropout": dropout},
            input_size=224, in_channels=3, penultimate_dim=4096, penultimate_name="fc7",
        )  # fmt: skip
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

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x)
        return self.classifier[:6](torch.flatten(self.features(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) -> logits (N, num_classes)."""
        return self.classifier[6](self.forward_penultimate(x))


class TorchvisionAlexNet(AlexNetModel):
    """torchvision's `alexnet` ("One weird trick", Krizhevsky 2014), module for module.

    64-192-384-256-256, no LRN, AdaptiveAvgPool2d(6), dropout before fc6/fc7; 61,100,840
    parameters. Same state_dict keys as `torchvision.models.alexnet`, so its weights
    (`alexnet-owt-7be5be79.pth`) load with strict=True. Input (N, 3, H, W), nominally 224.
    """

    name = "torchvision"

    def __init__(self, num_classes: int = 1000, *, dropout: float = 0.5) -> None:
        super().__init__()
        self._declare(
            {"num_classes": num_classes, "dropout": dropout},
            input_size=224, in_channels=3, penultimate_dim=4096, penultimate_name="fc7",
        )  # fmt: skip
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

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> fc7 activations after ReLU (N, 4096)."""
        check_input(self, x, fixed_size=False)
        if min(x.shape[-2:]) < 63:
            raise ValueError(f"model 'torchvision' needs H, W >= 63, got {tuple(x.shape)}")
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> logits (N, num_classes)."""
        return self.classifier[6](self.forward_penultimate(x))


def _pooled(size: int, pool: str) -> int:
    return (size - 3) // 2 + 1 if pool == "overlap" else (size - 2) // 2 + 1


class SmallCNN(AlexNetModel):
    """The paper's CIFAR-10-scale four-layer CNN family (§3.1 Fig. 1, §3.3), for 28-32 px.

    After cuda-convnet's `layers-18pct` net: three 5x5 conv layers (pad 2), each followed by the
    activation, a pool (max, then average, average in cuda-convnet; here max throughout) and,
    on the first two, LRN; then one fully-connected layer to the classes — four weight layers.
    `hidden` > 0 inserts a fully-connected hidden layer with dropout (a fifth weight layer).

    Args:
        num_classes: outputs.
        in_channels: 1 (Fashion-MNIST) or 3 (CIFAR-10).
        input_size: 28 or 32.
        widths: channels of the three conv layers; `one_tower_widths(widths)` with `towers=1`
            is the comparison net for `towers=2` (§3.2: half of each but the last).
        lrn, pool, activation: as in `PaperAlexNet` (the paper's LRN constants).
        dropout: on the hidden layer (only with hidden > 0).
        batchnorm: BatchNorm after each conv (not in the paper; a modern option for fast runs).
        init: "paper" (N(0, 0.01), zero biases) or "torch" (PyTorch defaults).
        towers: 2 splits conv2 and conv3 into two groups that each read only their own
            tower's maps, and LRN normalizes within a tower, like the paper's net (§3.2).
        remove_conv: None or "conv2", the family's one middle conv layer (§7: the first and
            last are kept); it goes with its activation and LRN, its pooling stays, and conv3
            reads conv1's maps.

    Input (N, in_channels, input_size, input_size); `forward_penultimate` gives what the last
    layer reads: the flattened last conv block (`penultimate_name` "conv3 (flattened)") or
    the hidden layer ("hidden (H)"); `forward` the logits.
    """

    name = "small"

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
        towers: int = 1,
        remove_conv: str | None = None,
    ) -> None:
        super().__init__()
        check_choice("in_channels", in_channels, (1, 3))
        check_choice("input_size", input_size, (28, 32))
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, ("paper", "torch"))
        check_choice("towers", towers, (1, 2))
        check_choice("remove_conv", remove_conv, (None, "conv2"))
        widths = check_widths(widths, 3, towers)
        options = dict(
            num_classes=num_classes, in_channels=in_channels, input_size=input_size,
            widths=list(widths), lrn=lrn, pool=pool, activation=activation, hidden=hidden,
            dropout=dropout, batchnorm=batchnorm, init=init, towers=towers,
            remove_conv=remove_conv,
        )  # fmt: skip
        self.features, flat = _small_stack(options)
        head: OrderedDict[str, nn.Module] = OrderedDict()
        if hidden:
            head["fc4"] = nn.Linear(flat, hidden)
            head["act4"] = make_activation(activation)
            head["drop4"] = nn.Dropout(dropout)
        self.head = nn.Sequential(head)
        self.fc = nn.Linear(hidden or flat, num_classes)
        self._declare(
            options, input_size=input_size, in_channels=in_channels,
            penultimate_dim=hidden or flat,
            penultimate_name=f"hidden ({hidden})" if hidden else "conv3 (flattened)",
        )  # fmt: skip
        if init == "paper":
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


def _small_stack(o: dict) -> tuple[nn.Sequential, int]:
    """The small family's conv blocks from its options `o`, and the flattened output size."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, size, towers = o["in_channels"], o["input_size"], o["towers"]
    for i, width in enumerate(o["widths"], start=1):
        if o["remove_conv"] != f"conv{i}":
            groups = towers if i > 1 else 1
            bias = not o["batchnorm"]
            layers[f"conv{i}"] = nn.Conv2d(channels, width, 5, padding=2, groups=groups, bias=bias)
            if o["batchnorm"]:
                layers[f"bn{i}"] = nn.BatchNorm2d(width)
            layers[f"act{i}"] = make_activation(o["activation"])
            channels = width
        layers[f"pool{i}"] = pool_layer(o["pool"])
        if o["lrn"] and i < 3 and o["remove_conv"] != f"conv{i}":
            layers[f"norm{i}"] = LRN(groups=towers, inplace=True)
        size = _pooled(size, o["pool"])
    return nn.Sequential(layers), channels * size * size
