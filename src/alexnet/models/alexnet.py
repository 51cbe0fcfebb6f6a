"""The 2012 network exactly as the paper describes it (Krizhevsky et al., §3, Fig. 2), with
options that switch each feature off for the paper's ablations (§3.1-3.4, §4, §7)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

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
from alexnet.models.native import ALPHA_CONVENTIONS
from alexnet.models.pool import MaxPool, run_sequential
from alexnet.values import POSITIVE, POSITIVE_INT, SWITCH, UNIT_INTERVAL_OPEN_TOP, Choice

POOLS = ("overlap", "nonoverlap")
PAPER_WIDTHS = (96, 256, 384, 384, 256)
MIDDLE_CONVS = ("conv2", "conv3", "conv4")
# §3.2's one-GPU comparison net: half the kernels of each conv layer but the last, one tower
ONE_GPU_OPTIONS = {"widths": (48, 128, 192, 192, 256), "towers": 1}

# §5: "biases in the second, fourth, and fifth convolutional layers, as well as in the
# fully-connected hidden layers, with the constant 1" (Caffe's bvlc_alexnet: 0.1)
_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")
_CAFFE_STD = {"fc6": 0.005, "fc7": 0.005}


# conv1..conv5 apart from their widths (§3.5, Fig. 2): kernel, stride, padding (None: conv1's,
# 2 at input 224 and 0 at 227, both giving 55x55 maps), grouped (reads only its own tower's maps,
# §3.2), normed (LRN after its ReLU, §3.3), pooled (max-pooling after it, §3.4)
CONVS = (
    (11, 4, None, False, True, True),
    (5, 1, 2, True, True, True),
    (3, 1, 1, False, False, False),
    (3, 1, 1, True, False, False),
    (3, 1, 1, True, False, True),
)


@dataclass(frozen=True)
class PaperOptions(ModelOptions):
    """The paper network's options (§3), each a feature that can be switched off."""

    num_classes: int = option(1000, POSITIVE_INT)  # size of fc8
    # 224 (conv1 padding 2, the paper's text, torchvision) or 227 (Caffe)
    input_size: int = option(224, Choice((224, 227)))
    lrn: bool = option(True, SWITCH)  # LRN after the ReLUs of conv1, conv2 (§3.3)
    pool: str = option("overlap", Choice(POOLS))  # "overlap" (3/2, §3.4) or "nonoverlap" (2/2)
    dropout: float = option(0.5, UNIT_INTERVAL_OPEN_TOP)  # drop probability, fc6/fc7 (§4.2; 0: off)
    # 2: conv2/4/5 and LRN per tower (§3.2, the two GPUs); 1: one tower
    towers: int = option(2, Choice((1, 2)))
    activation: str = option("relu", Choice(ACTIVATIONS))  # "relu" (§3.1) or "tanh"
    # "paper": N(0, 0.01), bias 1 on conv2/4/5 and fc6/7 (§5); "caffe": bias 0.1, fc6/7 std
    # 0.005; "kaiming": He fan-out, zero biases; "torch": PyTorch's defaults
    init: str = option("paper", Choice(("paper", "caffe", "kaiming", "torch")))
    widths: tuple[int, ...] = PAPER_WIDTHS  # kernels of conv1..conv5
    # a middle conv layer to remove with its activation and LRN, its pooling kept (§7:
    # "removing any of the middle convolutional layers results in a loss of about 2%")
    remove_conv: str | None = option(None, Choice((None, *MIDDLE_CONVS)))
    lrn_k: float = option(2.0, POSITIVE)  # LRN's k (the paper's 2; Caffe's bvlc_alexnet: 1)
    # "paper": LRN's alpha multiplies the window sum (§3.3); "per_size": alpha / 5 does (Caffe)
    lrn_alpha_convention: str = option("paper", Choice(ALPHA_CONVENTIONS))
    # "tower": each tower's maps normalized apart (§3.2-3.3); "all": across both (Caffe)
    lrn_scope: str = option("tower", Choice(("tower", "all")))

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "widths", check_widths(self.widths, 5, self.towers))
        object.__setattr__(self, "lrn_k", float(self.lrn_k))


def pool_layer(kind: str) -> nn.MaxPool2d:
    """Overlapping max-pooling z=3, s=2 (paper §3.4) or the traditional non-overlapping 2/2."""
    return MaxPool(3, 2) if kind == "overlap" else MaxPool(2, 2)


def conv_stack(o: PaperOptions, tower: bool = False) -> nn.Sequential:
    """conv1..conv5 with activations, LRN and pooling from the options `o` (`CONVS`); `tower`:
    one device's half of the two towers (`parallel`): half the kernels, conv3 reading both."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, towers = 3, 1 if tower else o.towers
    for i, (width, (kernel, stride, pad, grouped, normed, pooled)) in enumerate(
        zip(o.widths, CONVS), start=1
    ):
        if o.remove_conv != f"conv{i}":
            pad = (2 if o.input_size == 224 else 0) if pad is None else pad
            width = width // 2 if tower else width
            reads = 2 * channels if tower and i == 3 else channels  # conv3 reads both (§3.2)
            groups = towers if grouped else 1
            conv = nn.Conv2d(reads, width, kernel, stride, pad, groups=groups)
            layers[f"conv{i}"] = conv
            layers[f"act{i}"] = make_activation(o.activation)
            if normed and o.lrn:
                layers[f"norm{i}"] = LRN(
                    k=o.lrn_k,
                    groups=towers if o.lrn_scope == "tower" else 1,
                    inplace=True,
                    alpha_convention=o.lrn_alpha_convention,
                )
            channels = width
        if pooled:  # kept when the conv before it is removed: later layers see the same size
            layers[f"pool{i}"] = pool_layer(o.pool)
    return nn.Sequential(layers)


class PaperAlexNet(AlexNetModel):
    """The paper's two-tower AlexNet (§3), 60,965,224 parameters for 1000 classes; options:
    `PaperOptions`' fields. (N, 3, S, S) -> logits (N, num_classes)."""

    name = "paper"
    Options = PaperOptions

    def __init__(self, num_classes: int = 1000, **options: Any) -> None:
        super().__init__()
        o = PaperOptions(num_classes=num_classes, **options)
        self._declare(o, penultimate_dim=4096, penultimate_name="fc7")
        self.features = conv_stack(o)
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(o.widths[4] * 6 * 6, 4096),
                act6=make_activation(o.activation),
                drop6=nn.Dropout(o.dropout),
                fc7=nn.Linear(4096, 4096),
                act7=make_activation(o.activation),
            )
        )
        self.drop7 = nn.Dropout(o.dropout)
        self.fc8 = nn.Linear(4096, o.num_classes)
        self.reset_parameters(o.init)

    def named_layers(self) -> dict[str, nn.Module]:
        """conv1..conv5 and fc6..fc8 by their paper names."""
        layers = {n: m for n, m in self.features.named_children() if n.startswith("conv")}
        layers.update({n: m for n, m in self.classifier.named_children() if n.startswith("fc")})
        layers["fc8"] = self.fc8
        return layers

    @torch.no_grad()
    def reset_parameters(self, init: str = "paper") -> None:
        """Initialize weights and biases by the named scheme (`PaperOptions.init`, §5)."""
        for name, layer in self.named_layers().items():
            if init == "paper":
                init_normal(layer, 0.01, 1.0 if name in _BIAS_ONE else 0.0)
            elif init == "caffe":
                init_normal(layer, _CAFFE_STD.get(name, 0.01), 0.1 if name in _BIAS_ONE else 0.0)
            elif init == "kaiming":  # He et al. 2015 fan-out for convs, N(0, 0.01) for fc layers
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.zeros_(layer.bias)
            else:
                layer.reset_parameters()

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> fc7 activations after ReLU, (N, 4096) (paper §6.1's feature)."""
        check_input(self, x)  # run_sequential: self.features(x), ReLU -> LRN -> pool fused
        return self.classifier(torch.flatten(run_sequential(self.features, x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) -> logits (N, num_classes); softmax is left to the loss."""
        return self.fc8(self.drop7(self.forward_penultimate(x)))
