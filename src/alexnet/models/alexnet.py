"""The 2012 network exactly as the paper describes it (Krizhevsky et al., §3, Fig. 2).

conv1 96x11x11/4 -> ReLU -> LRN -> maxpool 3/2
conv2 256x5x5 pad 2, 2 towers (groups=2) -> ReLU -> LRN -> maxpool 3/2
conv3 384x3x3 pad 1, reads both towers -> ReLU
conv4 384x3x3 pad 1, 2 towers -> ReLU
conv5 256x3x3 pad 1, 2 towers -> ReLU -> maxpool 3/2
fc6 9216->4096 ReLU dropout 0.5; fc7 4096->4096 ReLU dropout 0.5; fc8 4096->num_classes

60,965,224 parameters for 1000 classes; about 724 M multiply-adds per 224 image.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from alexnet.models.common import (
    ACTIVATIONS,
    INITS,
    check_choice,
    check_input,
    init_kaiming,
    init_normal,
    make_activation,
)
from alexnet.models.fused import run_sequential
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool

POOLS = ("overlap", "nonoverlap")
INPUT_SIZES = (224, 227)

# Paper §5: "biases in the second, fourth, and fifth convolutional layers, as well as in the
# fully-connected hidden layers, with the constant 1"; all weights N(0, 0.01).
_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")
# Caffe's bvlc_alexnet: the same layers get bias 0.1 (bias 1 gave a flat loss there), and the
# FC hidden layers get std 0.005.
_CAFFE_STD = {"fc6": 0.005, "fc7": 0.005}


def pool_layer(kind: str) -> nn.MaxPool2d:
    """Overlapping max-pooling z=3, s=2 (paper §3.4) or the traditional non-overlapping 2/2."""
    check_choice("pool", kind, POOLS)
    return MaxPool(3, 2) if kind == "overlap" else MaxPool(2, 2)


class PaperAlexNet(nn.Module):
    """The paper's two-tower AlexNet (§3), every feature a switch for ablations.

    Args:
        num_classes: size of fc8 (1000 for ILSVRC).
        input_size: 224 (conv1 padding 2, as the paper's text and torchvision) or 227 (no
            padding, as Caffe); both give 55x55 conv1 maps.
        lrn: local response normalization after the ReLUs of conv1 and conv2 (§3.3).
        pool: "overlap" (3/2, §3.4) or "nonoverlap" (2/2).
        dropout: drop probability on fc6 and fc7 (§4.2; 0.5 in the paper, 0 disables).
        towers: 2 = conv2, conv4, conv5 see only their own tower's maps and LRN normalizes
            within a tower (§3.2, the two GPUs); 1 = fully connected convs.
        activation: "relu" (§3.1) or "tanh".
        init: "paper" (N(0, 0.01), bias 1 on conv2/4/5, fc6/7; §5), "caffe" (bias 0.1,
            fc6/7 std 0.005), "kaiming" (He fan-out, zero biases) or "torch" (PyTorch defaults).

    Input (N, 3, input_size, input_size) float; `forward` gives logits (N, num_classes),
    `forward_features` the fc7 activations after ReLU (N, 4096).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        input_size: int = 224,
        lrn: bool = True,
        pool: str = "overlap",
        dropout: float = 0.5,
        towers: int = 2,
        activation: str = "relu",
        init: str = "paper",
    ) -> None:
        super().__init__()
        check_choice("input_size", input_size, INPUT_SIZES)
        check_choice("towers", towers, (1, 2))
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("init", init, INITS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_classes, self.input_size, self.in_channels = num_classes, input_size, 3
        self.config = {
            "name": "paper",
            "options": {
                "num_classes": num_classes,
                "input_size": input_size,
                "lrn": lrn,
                "pool": pool,
                "dropout": dropout,
                "towers": towers,
                "activation": activation,
                "init": init,
            },
        }

        def act() -> nn.Module:
            return make_activation(activation)

        pad1 = 2 if input_size == 224 else 0
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 96, 11, stride=4, padding=pad1),
                act1=act(),
                norm1=LRN(groups=towers, inplace=True) if lrn else nn.Identity(),
                pool1=pool_layer(pool),
                conv2=nn.Conv2d(96, 256, 5, padding=2, groups=towers),
                act2=act(),
                norm2=LRN(groups=towers, inplace=True) if lrn else nn.Identity(),
                pool2=pool_layer(pool),
                conv3=nn.Conv2d(256, 384, 3, padding=1),
                act3=act(),
                conv4=nn.Conv2d(384, 384, 3, padding=1, groups=towers),
                act4=act(),
                conv5=nn.Conv2d(384, 256, 3, padding=1, groups=towers),
                act5=act(),
                pool5=pool_layer(pool),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(256 * 6 * 6, 4096),
                act6=act(),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(4096, 4096),
                act7=act(),
            )
        )
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        self.reset_parameters(init)

    def named_layers(self) -> dict[str, nn.Module]:
        """conv1..conv5 and fc6..fc8 by their paper names."""
        layers = {n: m for n, m in self.features.named_children() if n.startswith("conv")}
        layers.update({n: m for n, m in self.classifier.named_children() if n.startswith("fc")})
        layers["fc8"] = self.fc8
        return layers

    @torch.no_grad()
    def reset_parameters(self, init: str = "paper") -> None:
        """Initialize weights and biases by the named scheme (see the class docstring)."""
        for name, layer in self.named_layers().items():
            if init == "paper":
                init_normal(layer, 0.01, 1.0 if name in _BIAS_ONE else 0.0)
            elif init == "caffe":
                init_normal(layer, _CAFFE_STD.get(name, 0.01), 0.1 if name in _BIAS_ONE else 0.0)
            elif init == "kaiming":
                init_kaiming(layer)
            else:
                layer.reset_parameters()

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> fc7 activations after ReLU, (N, 4096) (paper §6.1's feature)."""
        check_input(self, x)
        # = self.features(x); on the CPU each LRN -> max-pool pair runs as one kernel
        return self.classifier(torch.flatten(run_sequential(self.features, x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> logits (N, num_classes); softmax is left to the loss."""
        return self.fc8(self.drop7(self.forward_features(x)))
