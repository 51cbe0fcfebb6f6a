"""The model family on the device under test ($ALEXNET_TEST_DEVICE; the CPU by default).

On CUDA every comparison runs with TF32 off (conftest's `no_tf32`): in plain fp32 the GPU and
the CPU agree to ~1e-6 of the output's scale, so the 1e-3 tolerances below test the code."""

from __future__ import annotations

import pytest
import torch
from test_lrn import reference_lrn

import alexnet
from alexnet.models.lrn import LRN
from alexnet.models.parallel import TwoDeviceAlexNet

pytestmark = pytest.mark.usefixtures("no_tf32")


def needs_other_device(device: torch.device) -> None:
    """Skip a CPU-against-CPU comparison: it would pass without testing anything."""
    if device.type == "cpu":
        pytest.skip("compares the device with the CPU; set ALEXNET_TEST_DEVICE to a GPU")


def close_to(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Within 1e-3 relative, or 1e-3 of the largest |expected| (logits of a fresh model are
    ~0.02, so a fixed atol of 1e-4 would pass a 0.5 % error)."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3 * scale)


def test_comparisons_run_with_tf32_off(device):
    assert not torch.backends.cuda.matmul.allow_tf32  # this module runs under no_tf32
    assert not torch.backends.cudnn.allow_tf32


def test_lrn_on_device_matches_float64_reference(device):
    torch.manual_seed(0)
    x = torch.randn(4, 96, 13, 13) * 30
    g = torch.randn_like(x)
    xd = x.to(device).clone().requires_grad_()
    out = LRN(groups=2)(xd)
    out.backward(g.to(device))
    assert torch.allclose(out.double().cpu(), reference_lrn(x, groups=2), rtol=1e-4, atol=1e-4)
    xr = x.detach().double().requires_grad_()
    reference_lrn(xr, groups=2).backward(g.double())
    assert torch.allclose(xd.grad.double().cpu(), xr.grad, rtol=1e-3, atol=1e-5)
    cl = LRN()(x.to(device).contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl.double().cpu(), reference_lrn(x), rtol=1e-4, atol=1e-4)


def test_paper_model_on_device_matches_cpu(device):
    needs_other_device(device)
    torch.manual_seed(0)
    model = alexnet.get_model("paper", num_classes=10, init="kaiming").eval()
    x = torch.randn(2, 3, 224, 224)
    expected = model(x)
    got = model.to(device)(x.to(device)).cpu()
    close_to(got.detach(), expected.detach())


def test_train_step_on_device_lowers_the_loss(device):
    torch.manual_seed(0)
    model = alexnet.get_model("small", num_classes=4, input_size=32).to(device)
    x = torch.randn(16, 3, 32, 32, device=device)
    y = torch.randint(0, 4, (16,), device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_two_device_split_across_device_and_cpu(device):
    needs_other_device(device)
    torch.manual_seed(0)
    paper = alexnet.get_model("paper", num_classes=6, dropout=0.0, init="kaiming")
    x = torch.randn(2, 3, 224, 224)
    expected = paper(x)
    split = TwoDeviceAlexNet.from_paper(paper, (str(device), "cpu"))
    got = split(x.to(device))
    assert got.device.type == device.type
    close_to(got.detach().cpu(), expected.detach())
    got.sum().backward()
    assert split.tower_b.fc6.weight.grad.device.type == "cpu"
