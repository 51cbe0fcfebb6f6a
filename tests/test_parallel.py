"""The two-device split (paper §3.2) equals the grouped single-device model."""

from __future__ import annotations

import pytest
import torch

import alexnet
from alexnet.models.parallel import TwoDeviceAlexNet
from alexnet.weights.safetensors_io import paper_to_two_device, two_device_to_paper


def test_outputs_and_gradients_equal_paper_model():
    """In float64: the two nets sum their convolutions in other orders, and float32's rounding
    could tip a max-pool window whose two largest values nearly tie to the other one, which
    moves a gradient to another place; float64's rounding is 1e-9 of float32's."""
    torch.manual_seed(0)
    paper = alexnet.get_model("paper", num_classes=11, dropout=0.0, init="kaiming").double()
    split = TwoDeviceAlexNet.from_paper(paper, ("cpu", "cpu")).double()
    x = torch.randn(3, 3, 224, 224, dtype=torch.float64)
    target = torch.randint(0, 11, (3,))
    out_p, out_s = paper(x), split(x)
    assert out_s.shape == (3, 11)
    assert torch.allclose(out_p, out_s, rtol=1e-10, atol=1e-12)
    torch.nn.functional.cross_entropy(out_p, target).backward()
    torch.nn.functional.cross_entropy(out_s, target).backward()
    grads_split = two_device_to_paper({n: p.grad for n, p in split.named_parameters()})
    for name, p in paper.named_parameters():
        assert torch.allclose(p.grad, grads_split[name], rtol=1e-9, atol=1e-12), name


def test_exchange_points_follow_the_paper():
    """conv3 reads both towers: changing tower B's conv2 output changes tower A's conv3."""
    split = TwoDeviceAlexNet(num_classes=10, devices=("cpu", "cpu"))
    params_a = sum(p.numel() for p in split.tower_a.parameters())
    params_b = sum(p.numel() for p in split.tower_b.parameters())
    assert params_a + params_b == sum(
        p.numel() for p in alexnet.get_model("paper", num_classes=10).parameters()
    )
    assert split.tower_a.block2.conv3.in_channels == 256  # both towers
    assert split.tower_a.block2.conv4.in_channels == 192  # own tower only
    assert split.tower_a.fc6.in_features == 9216 and split.tower_a.fc7.in_features == 4096


def test_state_dicts_convert_both_ways():
    torch.manual_seed(1)
    paper = alexnet.get_model("paper", num_classes=7)
    state = paper.state_dict()
    back = two_device_to_paper(paper_to_two_device(state, 7))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    rebuilt = TwoDeviceAlexNet.from_paper(paper, ("cpu", "cpu")).to_paper()
    assert all(torch.equal(rebuilt.state_dict()[k], state[k]) for k in state)


def test_caffe_lrn_options_carry_over_and_other_shapes_are_refused():
    torch.manual_seed(2)
    options = {"lrn_k": 1.0, "lrn_alpha_convention": "per_size", "dropout": 0.0}
    paper = alexnet.get_model("paper", num_classes=4, init="kaiming", **options).eval()
    split = TwoDeviceAlexNet.from_paper(paper, ("cpu", "cpu")).eval()
    x = torch.randn(1, 3, 224, 224) * 3
    with torch.no_grad():
        assert torch.allclose(paper(x), split(x), rtol=1e-5, atol=1e-6)
    for bad in ({"remove_conv": "conv3"}, {"widths": (48, 128, 192, 192, 256)}):
        with pytest.raises(ValueError, match="paper's widths"):
            TwoDeviceAlexNet(num_classes=4, **bad)
