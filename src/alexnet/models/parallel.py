"""The paper's two-GPU model parallelism (§3.2, Fig. 2) on any two devices: each tower holds
half the kernels and exchanges activations where the paper does (into conv3 and every fully-
connected layer), computing what `PaperAlexNet(towers=2)` does."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alexnet.models.alexnet import PAPER_WIDTHS, PaperAlexNet, PaperOptions, conv_stack
from alexnet.models.common import AlexNetModel, check_input, make_activation
from alexnet.models.pool import run_sequential
from alexnet.weights.safetensors_io import fc8_split, paper_to_two_device, two_device_to_paper


class _Tower(nn.Module):
    """One device's half of the network: conv1..conv5 and its half of fc6..fc8."""

    def __init__(self, o: PaperOptions, fc8_out: int) -> None:
        super().__init__()
        stack = conv_stack(o, tower=True)
        cut = list(stack._modules).index("pool2") + 1
        self.block1, self.block2 = stack[:cut], stack[cut:]  # conv1..pool2, conv3..pool5
        self.fc6 = nn.Linear(256 * 6 * 6, 2048)
        self.fc7 = nn.Linear(4096, 2048)
        self.fc8 = nn.Linear(4096, fc8_out)
        self.act = make_activation(o.activation)
        self.drop6 = nn.Dropout(o.dropout)
        self.drop7 = nn.Dropout(o.dropout)


class TwoDeviceAlexNet(AlexNetModel):
    """`PaperAlexNet` split over two devices, tower A on devices[0] (where input and outputs
    live), tower B on devices[1]; `from_paper(model, devices)` copies a model's weights.
    Dropout draws its masks on each device, so training matches `PaperAlexNet` in distribution.
    """

    name = "paper"  # its config rebuilds the single-device model, whose weights convert
    Options = PaperOptions

    def __init__(
        self, num_classes: int = 1000, *, devices: tuple[str, str] = ("cpu", "cpu"), **options
    ) -> None:
        super().__init__()
        o = PaperOptions(num_classes=num_classes, **options)
        if o.towers != 2:
            raise ValueError("the two-device split needs the two-tower model (towers=2)")
        if o.widths != PAPER_WIDTHS or o.remove_conv is not None:
            raise ValueError("the two-device split needs the paper's widths and all five convs")
        if o.lrn_scope != "tower":
            raise ValueError("the two-device split normalizes each tower on its device (§3.2)")
        reference = PaperAlexNet(num_classes, **options)  # the weights, drawn as the paper's
        self._declare(o, penultimate_dim=4096, penultimate_name="fc7")
        self.devices = (torch.device(devices[0]), torch.device(devices[1]))
        fc8_a, fc8_b = fc8_split(num_classes)
        self.tower_a = _Tower(o, fc8_a).to(self.devices[0])
        self.tower_b = _Tower(o, fc8_b).to(self.devices[1])
        self.load_paper_state_dict(reference.state_dict())

    @classmethod
    def from_paper(cls, model: PaperAlexNet, devices: tuple[str, str]) -> TwoDeviceAlexNet:
        """The same network as `model` (weights copied), split over `devices`."""
        wrapper = cls(devices=devices, **model.config["options"])
        wrapper.load_paper_state_dict(model.state_dict())
        return wrapper

    def load_paper_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a `PaperAlexNet` state_dict (two towers) into the two devices."""
        self.load_state_dict(paper_to_two_device(state, self.num_classes))

    def paper_state_dict(self) -> dict[str, Tensor]:
        """This network's weights in the `PaperAlexNet` layout (on the CPU)."""
        return two_device_to_paper(self.state_dict())

    def to_paper(self) -> PaperAlexNet:
        """A single-device `PaperAlexNet` with these weights."""
        model = PaperAlexNet(**self.config["options"])
        model.load_state_dict(self.paper_state_dict())
        return model

    def _exchange(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """Both towers' maps concatenated (A first), on each tower's own device."""
        dev_a, dev_b = self.devices
        return torch.cat([a, b.to(dev_a)], 1), torch.cat([a.to(dev_b), b], 1)

    def forward_penultimate(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) on devices[0] -> fc7 after ReLU (N, 4096) on devices[0]."""
        check_input(self, x)
        ta, tb = self.tower_a, self.tower_b
        a = run_sequential(ta.block1, x)  # = ta.block1(x), LRN -> pool fused on the CPU
        b = run_sequential(tb.block1, x.to(self.devices[1]))
        a, b = self._exchange(a, b)  # into conv3 (§3.2)
        a = torch.flatten(ta.block2(a), 1)
        b = torch.flatten(tb.block2(b), 1)
        a, b = self._exchange(a, b)  # into fc6
        a, b = ta.drop6(ta.act(ta.fc6(a))), tb.drop6(tb.act(tb.fc6(b)))
        a, b = self._exchange(a, b)  # into fc7
        a, b = ta.act(ta.fc7(a)), tb.act(tb.fc7(b))
        return torch.cat([a, b.to(self.devices[0])], 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) on devices[0] -> logits (N, num_classes) on devices[0]."""
        features = self.forward_penultimate(x)  # fc8 reads both towers (§3.2)
        a = self.tower_a.drop7(features)
        b = self.tower_b.drop7(features.to(self.devices[1]))
        return torch.cat([self.tower_a.fc8(a), self.tower_b.fc8(b).to(self.devices[0])], 1)
