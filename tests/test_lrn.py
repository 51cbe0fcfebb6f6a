"""LRN against an independent float64 implementation of the paper's formula (§3.3)."""

from __future__ import annotations

import pytest
import torch

from alexnet.models import native
from alexnet.models.lrn import CPU_PATHS, LRN

PATHS = list(CPU_PATHS)


@pytest.fixture(autouse=True, params=PATHS)
def cpu_path(request):
    """Every test runs on each CPU path: the C kernel, chunked torch ops, whole batch."""
    return request.param


def reference_lrn(a: torch.Tensor, n=5, alpha=1e-4, beta=0.75, k=2.0, groups=1) -> torch.Tensor:
    """b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta, per group."""
    a = a.double()
    out = torch.empty_like(a)
    per = a.shape[1] // groups
    for g in range(groups):
        for i in range(per):
            lo, hi = max(0, i - n // 2), min(per - 1, i + n // 2)
            s = (a[:, g * per + lo : g * per + hi + 1] ** 2).sum(1)
            out[:, g * per + i] = a[:, g * per + i] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("groups", [1, 2])
def test_values_match_float64_reference(groups, cpu_path):
    torch.manual_seed(0)
    # large activations so the normalization matters; negative values too
    x = torch.randn(3, 12, 5, 4) * 40
    got = LRN(groups=groups, cpu_path=cpu_path)(x)
    assert torch.allclose(got.double(), reference_lrn(x, groups=groups), rtol=1e-5, atol=1e-4)


def test_first_and_last_channels_use_clipped_windows(cpu_path):
    x = torch.zeros(1, 6, 1, 1)
    x[0, 0] = 100.0  # only channels 0..2 see it
    out = LRN(5, 1e-2, 1.0, 1.0, cpu_path=cpu_path)(x)
    assert out[0, 0, 0, 0].item() == pytest.approx(100.0 / (1 + 1e-2 * 100.0**2))
    # channel 5 is 5 away from channel 0: untouched (and it is zero)
    assert out[0, 5].item() == 0.0


def test_gradcheck_float64_all_channels(cpu_path):
    torch.manual_seed(1)
    x = (torch.randn(2, 7, 3, 3, dtype=torch.float64) * 30).requires_grad_()
    assert torch.autograd.gradcheck(LRN(5, 1e-3, 0.75, 2.0, cpu_path=cpu_path), (x,))
    assert torch.autograd.gradcheck(LRN(3, 1e-3, 0.6, 1.0, groups=1, cpu_path=cpu_path), (x,))
    x8 = (torch.randn(2, 8, 2, 2, dtype=torch.float64) * 30).requires_grad_()
    assert torch.autograd.gradcheck(LRN(5, 1e-3, 0.75, 2.0, groups=2, cpu_path=cpu_path), (x8,))


def test_float32_gradients_match_float64_autograd_across_chunks(cpu_path):
    """A batch big enough to be processed in several chunks on the CPU."""
    torch.manual_seed(2)
    x = torch.randn(3, 96, 55, 55).relu_() * 60
    g = torch.randn_like(x)
    xd = x.double().requires_grad_()
    # autograd through the formula, written independently with avg_pool-free sums
    sq = torch.nn.functional.pad(xd * xd, (0, 0, 0, 0, 2, 2))
    s = sum(sq[:, i : i + 96] for i in range(5))
    ref = xd / (2.0 + 1e-4 * s) ** 0.75
    ref.backward(g.double())
    xf = x.clone().requires_grad_()
    out = LRN(cpu_path=cpu_path)(xf)
    out.backward(g)
    assert torch.allclose(out.double(), ref.detach(), rtol=1e-5, atol=1e-4)
    assert torch.allclose(xf.grad.double(), xd.grad, rtol=1e-4, atol=1e-5)


def test_equals_torch_layer_with_alpha_times_n(cpu_path):
    """torch divides alpha by n: the paper's layer is LocalResponseNorm(5, alpha=5e-4)."""
    torch.manual_seed(3)
    x = torch.randn(2, 10, 6, 6) * 50
    theirs = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(x)
    assert torch.allclose(LRN(cpu_path=cpu_path)(x), theirs, rtol=1e-5, atol=1e-5)
    as_torch = LRN.from_torch_convention(5, alpha=1e-4, beta=0.75, k=1.0)
    as_torch.cpu_path = cpu_path
    theirs = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    assert torch.allclose(as_torch(x), theirs, rtol=1e-5, atol=1e-5)
    # and the paper's layer is *not* torch's with the same alpha
    same_alpha = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x)
    assert not torch.allclose(LRN(cpu_path=cpu_path)(x), same_alpha, rtol=1e-4, atol=1e-4)


def test_channels_last_and_bfloat16(cpu_path):
    torch.manual_seed(4)
    x = torch.randn(2, 16, 7, 7) * 30
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    out = LRN(cpu_path=cpu_path)(xc)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out.double(), reference_lrn(x), rtol=1e-5, atol=1e-4)
    out.sum().backward()
    xr = x.clone().requires_grad_()
    LRN(cpu_path=cpu_path)(xr).sum().backward()
    assert torch.allclose(xc.grad, xr.grad, rtol=1e-5, atol=1e-6)
    half = LRN(cpu_path=cpu_path)(x.bfloat16())
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.double(), reference_lrn(x), rtol=2e-2, atol=1e-1)


def test_bad_arguments(cpu_path):
    with pytest.raises(ValueError):
        LRN(size=0)
    with pytest.raises(ValueError, match="groups"):
        LRN(groups=2, cpu_path=cpu_path)(torch.randn(1, 5, 2, 2))


@pytest.mark.parametrize("channels_last", [False, True])
def test_paths_agree_across_tiles_towers_and_layouts(channels_last, cpu_path):
    """conv2-like maps (27x27, two towers): several kernel tiles, the last one partial."""
    if cpu_path != "native":
        pytest.skip("runs every path itself")
    torch.manual_seed(5)
    x = torch.randn(3, 96, 27, 27).relu_() * 60
    g = torch.randn_like(x)
    if channels_last:
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    results = {}
    for path in PATHS:
        xp = x.clone().requires_grad_()
        out = LRN(groups=2, cpu_path=path)(xp)
        out.backward(g)
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
        results[path] = (out, xp.grad)
    assert torch.allclose(results["native"][0].double(), reference_lrn(x, groups=2), 1e-5, 1e-4)
    for path in ("chunked", "whole"):
        for ours, theirs in zip(results["native"], results[path]):
            assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6), path


def test_inference_mode_and_no_grad(cpu_path):
    x = torch.randn(2, 8, 4, 4) * 30
    with torch.inference_mode():
        a = LRN(cpu_path=cpu_path)(x)
    with torch.no_grad():
        b = LRN(cpu_path=cpu_path)(x)
    assert torch.allclose(a.double(), reference_lrn(x), rtol=1e-5, atol=1e-4)
    assert torch.equal(a, b)


def test_native_kernel_is_built_and_used_here(monkeypatch, cpu_path):
    """This machine has a C compiler: float32 LRN on the CPU must take the fused kernel."""
    if cpu_path != "native":
        pytest.skip("about the native path")
    if native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert native.library() is not None, native.reason_unavailable()
    calls = []
    real = native.lrn
    monkeypatch.setattr(
        native, "lrn", lambda *a, **kw: calls.append(a[1] is None) or real(*a, **kw)
    )
    x = (torch.randn(2, 8, 3, 3) * 30).requires_grad_()
    LRN(cpu_path=cpu_path)(x).sum().backward()
    assert calls == [True, False]  # forward, then backward


def test_native_results_do_not_depend_on_thread_count(cpu_path):
    torch.manual_seed(6)
    x = torch.randn(4, 96, 13, 13) * 40
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = LRN(groups=2, cpu_path=cpu_path)(x)
        torch.set_num_threads(max(2, saved))
        many = LRN(groups=2, cpu_path=cpu_path)(x)
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one, many)


@pytest.mark.parametrize("channels,groups", [(1, 1), (3, 3), (4, 1), (6, 2)])
def test_fewer_channels_than_the_window(channels, groups, cpu_path):
    torch.manual_seed(7)
    x = (torch.randn(2, channels, 4, 3) * 50).requires_grad_()
    out = LRN(groups=groups, cpu_path=cpu_path)(x)
    assert torch.allclose(out.double(), reference_lrn(x, groups=groups), rtol=1e-5, atol=1e-4)
    g = torch.randn_like(out)
    out.backward(g)
    xd = x.detach().double().requires_grad_()
    reference_lrn(xd, groups=groups).backward(g.double())
    assert torch.allclose(x.grad.double(), xd.grad, rtol=1e-4, atol=1e-6)


def test_bfloat16_gradients_close_to_float64(cpu_path):
    torch.manual_seed(8)
    x = (torch.randn(2, 16, 6, 6) * 30).bfloat16()
    xb = x.clone().requires_grad_()
    out = LRN(cpu_path=cpu_path)(xb)
    g = torch.randn_like(out)
    out.backward(g)
    assert xb.grad.dtype == torch.bfloat16
    xd = x.double().requires_grad_()
    reference_lrn(xd).backward(g.double())
    assert torch.allclose(xb.grad.double(), xd.grad, rtol=3e-2, atol=2e-3)


def test_inplace_with_grad_keeps_the_input(cpu_path):
    torch.manual_seed(10)
    x = (torch.randn(2, 8, 4, 4) * 40).requires_grad_()
    inplace = LRN(inplace=True, cpu_path=cpu_path)
    out = inplace(x * 1.0)
    out.sum().backward()
    xr = x.detach().clone().requires_grad_()
    LRN(cpu_path=cpu_path)(xr).sum().backward()
    assert torch.allclose(x.grad, xr.grad, rtol=1e-5, atol=1e-6)
    assert "inplace=True" in repr(inplace)


@pytest.mark.parametrize("groups", [1, 2])
def test_caffe_convention_k1_alpha_per_size_matches_float64(groups, cpu_path):
    """Caffe's LRN (k=1, alpha/n): values and gradients against the formula in float64."""
    torch.manual_seed(12)
    x = torch.randn(2, 16, 9, 7) * 100
    layer = LRN(5, 1e-4, 0.75, 1.0, groups=groups, alpha_convention="per_size", cpu_path=cpu_path)
    assert layer.alpha == pytest.approx(2e-5)
    xf = x.clone().requires_grad_()
    out = layer(xf)
    xd = x.double().requires_grad_()
    ref = reference_lrn(xd, 5, alpha=1e-4 / 5, beta=0.75, k=1.0, groups=groups)
    assert torch.allclose(out.double(), ref.detach(), rtol=1e-5, atol=1e-4)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g.double())
    assert torch.allclose(xf.grad.double(), xd.grad, rtol=1e-4, atol=1e-6)
    # the paper's reading of the same numbers differs (alpha not divided by n)
    paper = reference_lrn(x, 5, alpha=1e-4, beta=0.75, k=1.0, groups=groups)
    assert not torch.allclose(out.double(), paper, rtol=1e-3, atol=1e-3)


def test_caffe_convention_equals_torch_local_response_norm(cpu_path):
    torch.manual_seed(13)
    x = (torch.randn(2, 12, 6, 5) * 100).contiguous(memory_format=torch.channels_last)
    theirs = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)(x)
    ours = LRN(5, 1e-4, 0.75, 1.0, alpha_convention="per_size", cpu_path=cpu_path)(x)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_unknown_convention_and_path_are_refused(cpu_path):
    with pytest.raises(ValueError, match="alpha_convention"):
        LRN(alpha_convention="caffe", cpu_path=cpu_path)
    with pytest.raises(ValueError, match="cpu_path"):
        LRN(cpu_path="gpu")
