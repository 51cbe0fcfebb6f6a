"""LRN -> max-pool as one kernel: bitwise the layers run one by one, and only when allowed."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import alexnet
from alexnet.models import native
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool, run_sequential
from alexnet.models.summary import layer_table

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C compiler here")


def block(channels: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            act=nn.ReLU(inplace=True),
            norm=LRN(groups=groups, inplace=True),
            pool=MaxPool(3, 2),
            after=nn.Conv2d(channels, 4, 1),
        )
    )


def count_fused(monkeypatch) -> list[tuple[bool, bool]]:
    calls: list[tuple[bool, bool]] = []
    real = native._call

    def spy(name: str, what: str, **args):
        if name == "alexnet_lrn_max_pool" and args["g"] is None:  # the forwards
            calls.append((args["places"] is not None, args["relu"]))
        return real(name, what, **args)

    monkeypatch.setattr(native, "_call", spy)
    return calls


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    "shape,groups", [((3, 96, 55, 55), 2), ((2, 256, 27, 27), 2), ((2, 6, 9, 8), 1)]
)
def test_fused_equals_layer_by_layer(monkeypatch, shape, groups, fmt):
    torch.manual_seed(0)
    layers = block(shape[1], groups).to(memory_format=fmt)
    x = (torch.randn(shape) * 40).contiguous(memory_format=fmt)
    calls = count_fused(monkeypatch)
    fused_in = x.clone().requires_grad_()
    fused = run_sequential(layers, fused_in * 1.0)
    fused.square().sum().backward()
    assert calls == [(True, True)]  # (train, relu fused)
    plain_in = x.clone().requires_grad_()
    plain = layers(plain_in * 1.0)
    plain.square().sum().backward()
    assert calls == [(True, True)]  # calling the Sequential itself never fuses
    assert torch.equal(fused, plain)
    assert torch.equal(fused_in.grad, plain_in.grad)
    # and both are torch's own layers' result
    ref_in = x.clone().requires_grad_()
    ref = F.relu(ref_in)
    ref = torch.cat([F.local_response_norm(p, 5, 5e-4, 0.75, 2.0) for p in ref.chunk(groups, 1)], 1)
    ref = layers.after(F.max_pool2d(ref, 3, 2))
    ref.square().sum().backward()
    assert torch.allclose(fused, ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(
        fused_in.grad, ref_in.grad, rtol=1e-3, atol=1e-3 * ref_in.grad.abs().max()
    )


def test_inference_keeps_nothing_and_matches(monkeypatch):
    torch.manual_seed(1)
    layers = block(8, 2)
    x = torch.randn(2, 8, 11, 11) * 40
    calls = count_fused(monkeypatch)
    with torch.inference_mode():
        fused = run_sequential(layers, x.clone())
        plain = layers(x.clone())
    assert calls == [(False, True)] and torch.equal(fused, plain)


def test_hooks_and_other_dtypes_are_not_fused(monkeypatch):
    torch.manual_seed(2)
    layers = block(8, 2)
    x = torch.randn(2, 8, 11, 11) * 40
    calls = count_fused(monkeypatch)
    seen = []
    handle = layers.norm.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    out = run_sequential(layers, x.clone())
    handle.remove()
    assert calls == [] and seen == [torch.Size([2, 8, 11, 11])]
    assert torch.equal(out, run_sequential(layers, x.clone()))
    assert calls == [(False, True)]
    handle = layers.act.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert torch.equal(out, run_sequential(layers, x.clone()))  # ReLU on its own, pair fused
    handle.remove()
    assert calls == [(False, True), (False, False)] and len(seen) == 2
    run_sequential(layers.double(), x.double())
    assert len(calls) == 2


def test_paper_model_fuses_both_blocks_and_summary_sees_every_layer(monkeypatch):
    calls = count_fused(monkeypatch)
    model = alexnet.get_model("paper", num_classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(x)
    assert calls == [(False, True), (False, True)]

    names = [row.name for row in layer_table(model, 224)]
    assert {"norm1", "pool1", "norm2", "pool2"} <= set(names)


@pytest.mark.slow
def test_torch_compile_runs_the_paper_model_with_the_kernels():
    """torch.compile (the --compile flag, Inductor) around the kernels: the same logits and
    gradients, up to rounding. The whole model is one graph, so Inductor's convolutions differ
    from eager's in the last bit, and where two inputs of a max-pool window are that close the
    other one wins: one winner of 173,056 in pool2 here moves conv2's weight gradient by ~1e-3
    of its norm (layers after the pools agree to ~1e-6). Hence norms for the conv gradients;
    a wrong gradient is off by its own size. Kaiming init: the paper's makes such ties common."""
    torch.manual_seed(3)
    model = alexnet.get_model("paper", num_classes=10, dropout=0.0, init="kaiming")
    x = torch.randn(4, 3, 224, 224)
    eager = model(x)
    eager.sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model)(x)
    compiled.sum().backward()
    assert torch.allclose(compiled, eager, rtol=1e-4, atol=1e-4)
    for name, p in model.named_parameters():
        error = ((p.grad - grads[name]).norm() / grads[name].norm()).item()
        assert error < (1e-2 if name.startswith(("features.conv1", "features.conv2")) else 1e-4), (
            name
        )


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_bfloat16_fused_equals_layer_by_layer(monkeypatch, fmt):
    """bf16 (CPU autocast): widened in scratch, rounded where the layers would store bf16."""
    torch.manual_seed(4)
    layers = block(48, 2).to(memory_format=fmt)
    x = (torch.randn(2, 48, 27, 27) * 40).bfloat16().contiguous(memory_format=fmt)
    calls = count_fused(monkeypatch)
    fused_in = x.clone().requires_grad_()
    fused = run_sequential(layers[:3], fused_in * 1.0)
    g = torch.randn_like(fused)
    fused.backward(g)
    plain_in = x.clone().requires_grad_()
    plain = layers[:3](plain_in * 1.0)
    plain.backward(g)
    assert calls == [(True, True)] and fused.dtype == torch.bfloat16
    assert fused.is_contiguous(memory_format=fmt)
    assert torch.equal(fused, plain)
    if fmt == torch.contiguous_format:  # our NCHW pool unfused: the same float32 sums
        assert torch.equal(fused_in.grad, plain_in.grad)
    else:  # torch's channels-last bf16 pool backward rounds its sums otherwise (1 bf16 ulp),
        # which LRN's backward spreads to the neighbouring channels
        ours, theirs = fused_in.grad.float(), plain_in.grad.float()
        assert torch.allclose(ours, theirs, rtol=2e-2, atol=1e-2 * theirs.abs().max().item())


def test_caffe_lrn_fused_matches_float64_formula(monkeypatch):
    """Caffe's LRN (k=1, alpha/n) in the fused block: float64 ReLU -> formula -> max-pool."""
    torch.manual_seed(5)
    layers = nn.Sequential(
        nn.ReLU(inplace=True),
        LRN(5, 1e-4, 0.75, 1.0, groups=2, inplace=True, alpha_convention="per_size"),
        MaxPool(3, 2),
    )
    x = torch.randn(2, 16, 13, 13) * 100
    calls = count_fused(monkeypatch)
    xf = x.clone().requires_grad_()
    out = run_sequential(layers, xf * 1.0)
    g = torch.randn_like(out)
    out.backward(g)
    assert calls == [(True, True)]
    xd = x.double().requires_grad_()
    a = F.relu(xd)
    halves = []
    for t in range(2):  # each tower's 8 maps with its own clipped window, alpha / n
        sq = F.pad((a * a)[:, 8 * t : 8 * t + 8], (0, 0, 0, 0, 2, 2))
        s = sum(sq[:, i : i + 8] for i in range(5))
        halves.append(a[:, 8 * t : 8 * t + 8] / (1.0 + 1e-4 / 5 * s) ** 0.75)
    ref = F.max_pool2d(torch.cat(halves, 1), 3, 2)
    ref.backward(g.double())
    assert torch.allclose(out.double(), ref.detach(), rtol=1e-5, atol=1e-4)
    assert torch.allclose(xf.grad.double(), xd.grad, rtol=1e-4, atol=1e-6)


def test_layer_on_a_torch_path_is_not_fused(monkeypatch):
    layers = nn.Sequential(LRN(cpu_path="chunked"), MaxPool(3, 2))
    calls = count_fused(monkeypatch)
    x = torch.randn(1, 8, 9, 9) * 40
    out = run_sequential(layers, x)
    assert calls == [] and torch.equal(out, layers(x))
