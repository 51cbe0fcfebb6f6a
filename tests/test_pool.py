"""MaxPool (the CPU kernel) against torch's own max-pooling: same values, same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alexnet.models import native
from alexnet.models.pool import MaxPool, c_max_pool

needs_kernel = pytest.mark.skipif(native.library() is None, reason="no C compiler here")


def with_ties(shape, seed=0) -> torch.Tensor:
    """ReLU'd and coarsely rounded values: many equal maxima (zeros and repeats) per window."""
    torch.manual_seed(seed)
    return (torch.randn(shape) * 3).round().relu()


def pool_both(x, kernel, stride, fmt):
    x = x.contiguous(memory_format=fmt)
    ours_in = x.clone().requires_grad_()
    theirs_in = x.clone().requires_grad_()
    # the kernel itself in either layout (MaxPool hands channels-last to torch; the fused
    # ReLU -> LRN -> pool kernel uses this code for channels-last)
    ours = c_max_pool(ours_in, kernel, stride, True)
    theirs = F.max_pool2d(theirs_in, kernel, stride)
    grad = torch.randn_like(theirs)
    ours.backward(grad)
    theirs.backward(grad)
    return ours, theirs, ours_in.grad, theirs_in.grad


@needs_kernel
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    "shape,kernel,stride",
    [
        ((3, 16, 55, 55), 3, 2),  # pool1
        ((2, 32, 27, 27), 3, 2),  # pool2
        ((2, 32, 13, 13), 3, 2),  # pool5
        ((2, 8, 14, 14), 2, 2),  # non-overlapping (the ablation)
        ((2, 5, 10, 7), 3, 2),  # even and non-square sizes, a dropped last row/column
        ((1, 3, 9, 9), 3, 3),
    ],
)
def test_values_and_gradients_equal_torch(shape, kernel, stride, fmt):
    ours, theirs, ours_grad, theirs_grad = pool_both(with_ties(shape), kernel, stride, fmt)
    assert torch.equal(ours, theirs)
    assert ours.is_contiguous(memory_format=fmt)
    assert torch.equal(ours_grad, theirs_grad)  # ties resolved to the same input
    assert ours_grad.is_contiguous(memory_format=fmt)


@needs_kernel
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_nan_and_infinity_pick_the_same_winner_as_torch(fmt):
    x = with_ties((2, 4, 11, 11), seed=1)
    x[0, 0, 2, 2] = float("nan")
    x[0, 0, 2, 4] = float("nan")  # two NaNs in one window: torch takes the later one
    x[1, 2, 5, 5] = float("inf")
    x[1, 3] = float("-inf")  # a whole plane of -inf
    ours, theirs, ours_grad, theirs_grad = pool_both(x, 3, 2, fmt)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.nan_to_num(), theirs.nan_to_num())
    assert torch.equal(ours_grad, theirs_grad)


@needs_kernel
def test_kernel_runs_and_inference_keeps_no_places(monkeypatch):
    calls = []
    real = native._call
    monkeypatch.setattr(
        native, "_call", lambda *a, **kw: calls.append(kw["argmax"] is not None) or real(*a, **kw)
    )
    x = with_ties((2, 4, 9, 9))
    with torch.inference_mode():
        a = MaxPool(3, 2)(x)
    b = MaxPool(3, 2)(x.clone().requires_grad_())
    assert calls == [False, True]
    assert torch.equal(a, F.max_pool2d(x, 3, 2)) and torch.equal(b, a)


def test_bfloat16_values_exact_gradients_close():
    x = with_ties((2, 8, 13, 13), seed=2).bfloat16()
    ours, theirs, ours_grad, theirs_grad = pool_both(x, 3, 2, torch.contiguous_format)
    assert ours.dtype == torch.bfloat16 and torch.equal(ours, theirs)
    # overlapping windows add up to 4 gradients: float32 sums rounded once vs bf16 steps
    assert torch.allclose(ours_grad.float(), theirs_grad.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "layer",
    [
        MaxPool(3, 2, padding=1),
        MaxPool(3, 2, ceil_mode=True),
        MaxPool(3, 2, dilation=2),
        MaxPool((3, 2), 2),
    ],
)
def test_other_settings_are_torchs_own(layer, monkeypatch):
    monkeypatch.setattr(native, "_call", None)  # no kernel may run
    x = with_ties((2, 3, 12, 12))
    assert torch.equal(layer(x), torch.nn.MaxPool2d.forward(layer, x))


def test_without_the_kernel_it_is_torchs_pooling(monkeypatch):
    monkeypatch.setattr(native, "library", lambda: None)
    x = with_ties((2, 3, 12, 12)).double().requires_grad_()  # float64: torch's path anyway
    out = MaxPool(3, 2)(x)
    assert torch.equal(out, F.max_pool2d(x, 3, 2))
    assert isinstance(MaxPool(3, 2), torch.nn.MaxPool2d)


def test_channels_last_module_uses_torchs_kernel(monkeypatch):
    monkeypatch.setattr(native, "_call", None)  # no kernel may run
    x = with_ties((2, 8, 13, 13)).contiguous(memory_format=torch.channels_last)
    out = MaxPool(3, 2)(x)
    assert torch.equal(out, F.max_pool2d(x, 3, 2))
