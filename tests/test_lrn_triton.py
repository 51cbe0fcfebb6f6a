"""The Triton LRN kernels (§3.3) against the float64 formula, and the dispatch to them.

Without a GPU the kernels run on CPU tensors in Triton's interpreter, which must be chosen
before they are defined (the first import of `alexnet.models.lrn_triton`): this module sets
TRITON_INTERPRET=1 first when there is no CUDA device. With one, they run compiled on it.
Shapes stay small: the interpreter runs each program as numpy code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import warnings

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from proc_helpers import python_stdout  # noqa: E402
from test_lrn import reference_lrn  # noqa: E402

import alexnet  # noqa: E402
from alexnet.errors import UserError  # noqa: E402
from alexnet.models import lrn as lrn_module  # noqa: E402
from alexnet.models.lrn import LRN  # noqa: E402
from alexnet.models.native import LRNParams  # noqa: E402

lrn_triton = lrn_module.triton_module()
if lrn_triton is None:
    DEVICE, WHY = "cpu", f"Triton unavailable: {lrn_module.triton_error()}"
elif lrn_triton.INTERPRET:
    DEVICE, WHY = "cpu", ""
elif torch.cuda.is_available():
    DEVICE, WHY = "cuda", ""
else:
    DEVICE, WHY = "cpu", "the Triton kernels were compiled (TRITON_INTERPRET unset) and no GPU"
needs_triton = pytest.mark.skipif(bool(WHY), reason=WHY)
CL = torch.channels_last


def run(x: torch.Tensor, p: LRNParams, g: torch.Tensor | None = None):
    """(output, dL/dx) of the Triton LRN on DEVICE for x (and upstream gradient g)."""
    xt = x.to(DEVICE).detach().requires_grad_()
    out = lrn_triton.lrn(xt, p)
    g = torch.randn_like(x) if g is None else g
    out.backward(g.to(DEVICE, out.dtype))
    return out.cpu(), xt.grad.cpu()


def reference(x: torch.Tensor, g: torch.Tensor, n, alpha, beta, k, groups):
    """(the formula in float64, its gradient) for x and upstream gradient g."""
    xd = x.double().requires_grad_()
    ref = reference_lrn(xd, n, alpha, beta, k, groups)
    ref.backward(g.double())
    return ref.detach(), xd.grad


@needs_triton
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("convention", ["paper", "per_size"])
def test_float32_values_and_gradients_match_float64(groups, fmt, convention):
    """Both tower scopes (2 towers or all channels), both layouts, both alpha readings."""
    torch.manual_seed(0)
    x = (torch.randn(2, 12, 5, 7) * 40).contiguous(memory_format=fmt)
    g = torch.randn_like(x)
    k = 2.0 if convention == "paper" else 1.0
    p = LRNParams.from_convention(5, 1e-4, 0.75, k, groups, convention)
    out, grad = run(x, p, g)
    assert out.is_contiguous(memory_format=fmt) and grad.is_contiguous(memory_format=fmt)
    alpha = 1e-4 if convention == "paper" else 1e-4 / 5
    ref, ref_grad = reference(x, g, 5, alpha, 0.75, k, groups)
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)


@needs_triton
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_first_and_last_channels_of_each_tower_use_clipped_windows(fmt):
    x = torch.zeros(1, 12, 2, 3)
    x[:, 0] = 100.0  # first channel: only channels 0..2 see it
    x[:, 5] = 50.0  # last channel of tower 1: tower 2 (channels 6..11) must not see it
    x[:, 6] = 3.0
    x = x.contiguous(memory_format=fmt)
    towers = lrn_triton.lrn(x.to(DEVICE), LRNParams(5, 1e-2, 1.0, 1.0, groups=2)).cpu()
    assert towers[0, 0, 0, 0].item() == pytest.approx(100.0 / (1 + 1e-2 * 100.0**2), rel=1e-6)
    assert towers[0, 6, 0, 0].item() == pytest.approx(3.0 / (1 + 1e-2 * 9.0), rel=1e-6)
    across = lrn_triton.lrn(x.to(DEVICE), LRNParams(5, 1e-2, 1.0, 1.0, groups=1)).cpu()
    expected = 3.0 / (1 + 1e-2 * (9.0 + 2500.0))  # the window crosses the towers' boundary
    assert across[0, 6, 0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert across[0, 3, 0, 0].item() == 0.0 and across[0, 11, 0, 0].item() == 0.0
    # gradients at the ends against the formula
    torch.manual_seed(1)
    x = (torch.randn(2, 12, 3, 3) * 50).contiguous(memory_format=fmt)
    g = torch.randn_like(x)
    for groups in (1, 2):
        _, grad = run(x, LRNParams(5, 1e-3, 0.75, 2.0, groups), g)
        _, ref_grad = reference(x, g, 5, 1e-3, 0.75, 2.0, groups)
        ends = [0, 5, 6, 11]
        assert torch.allclose(grad[:, ends].double(), ref_grad[:, ends], rtol=1e-4, atol=1e-6)


@needs_triton
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_bfloat16_within_its_rounding(fmt):
    """bf16 in and out, float32 inside: values within one bf16 rounding of the formula."""
    torch.manual_seed(2)
    x = (torch.randn(2, 16, 6, 6) * 30).bfloat16().contiguous(memory_format=fmt)
    g = torch.randn(x.shape).bfloat16().contiguous(memory_format=fmt)
    p = LRNParams(5, 1e-4, 0.75, 2.0, groups=2)
    out, grad = run(x, p, g)
    assert out.dtype == grad.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=fmt)
    ref, ref_grad = reference(x.float(), g.float(), 5, 1e-4, 0.75, 2.0, 2)
    assert torch.allclose(out.double(), ref, rtol=2**-8, atol=1e-6)  # round to nearest: half ulp
    # dL/dx adds two terms of opposite sign before its one rounding
    assert torch.allclose(
        grad.double(), ref_grad, rtol=2**-7, atol=2e-3 * ref_grad.abs().max().item()
    )


@needs_triton
@pytest.mark.parametrize(
    "size,beta,channels", [(3, 0.6, 7), (4, 1.0, 9), (5, 0.75, 3), (7, 0.75, 10)]
)
def test_other_sizes_exponents_and_few_channels(size, beta, channels):
    """Even sizes use the paper's symmetric window (n // 2 each side), other betas pow."""
    torch.manual_seed(3)
    x = torch.randn(2, channels, 4, 3) * 40
    g = torch.randn_like(x)
    out, grad = run(x, LRNParams(size, 1e-3, beta, 1.5), g)
    ref, ref_grad = reference(x, g, size, 1e-3, beta, 1.5, 1)
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.allclose(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)


@needs_triton
def test_strided_input_and_64_bit_offsets(monkeypatch):
    """A non-dense input is read through a copy; int64 offsets give the same numbers."""
    torch.manual_seed(4)
    x = torch.randn(3, 10, 6, 8)[:, :, :, ::2] * 40
    p = LRNParams(5, 1e-4, 0.75, 2.0, 2)
    g = torch.randn(x.shape)
    out, grad = run(x, p, g)
    ref, ref_grad = reference(x, g, 5, 1e-4, 0.75, 2.0, 2)
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(lrn_triton, "_INT32_LIMIT", 16)  # as if the tensor were huge
    for fmt in (torch.contiguous_format, CL):
        wide_out, wide_grad = run(x.contiguous(memory_format=fmt), p, g)
        assert torch.equal(wide_out, out) and torch.equal(wide_grad, grad)


@needs_triton
def test_forced_by_environment_on_any_device(monkeypatch):
    """ALEXNET_LRN=triton: LRN takes the Triton kernels (here on CPU tensors too)."""
    calls = []
    real = lrn_triton._launch
    monkeypatch.setattr(
        lrn_triton, "_launch", lambda t, *a: calls.append(t[0].device) or real(t, *a)
    )
    torch.manual_seed(5)
    x = (torch.randn(2, 8, 5, 5) * 40).to(DEVICE)
    c_kernel = LRN(groups=2)(x)
    assert calls == ([] if DEVICE == "cpu" else [x.device])
    monkeypatch.setenv("ALEXNET_LRN", "triton")
    forced = LRN(groups=2, inplace=True)(x)
    assert calls[-1] == x.device and forced is not x
    assert torch.allclose(forced, c_kernel, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("ALEXNET_LRN", "cuda")
    with pytest.raises(UserError, match="ALEXNET_LRN"):
        LRN()(x)


def test_without_triton_cuda_runs_torch_ops_with_one_warning(monkeypatch):
    monkeypatch.setattr(lrn_module, "_TRITON", None)
    monkeypatch.setattr(lrn_module, "_TRITON_ERROR", "ImportError: No module named 'triton'")
    monkeypatch.setattr(lrn_module, "_WARNED", False)
    with pytest.warns(RuntimeWarning, match="Triton is unavailable"):
        assert lrn_module.lrn_backend("cuda") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lrn_module.lrn_backend("cuda") == "torch"  # said once
    assert lrn_module.lrn_backend("cpu") in ("c", "torch")  # the CPU never asks for Triton
    monkeypatch.setenv("ALEXNET_LRN", "triton")
    with pytest.raises(UserError, match="Triton cannot be used"):
        lrn_module.lrn_backend("cpu")


@contextlib.contextmanager
def no_tf32():
    """On a GPU: no TF32, whose 10-bit rounding of conv inputs would magnify LRN's last bits."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


@needs_triton
def test_paper_model_through_triton_equals_torch_ops(monkeypatch):
    """The whole `paper` network, LRN by the Triton kernels vs by torch ops: logits and a
    gradient (batch 1, the model's 224 px input). Kaiming init: the paper's bias-1 layers
    make near-tied maxima in the pools, where a last-bit difference in LRN's output hands
    the gradient to another input (either answer is right; this test would not say which)."""
    torch.manual_seed(6)
    model = alexnet.get_model("paper", num_classes=10, dropout=0.0, init="kaiming").to(DEVICE)
    x = torch.randn(1, 3, 224, 224, device=DEVICE)

    def logits_and_grad(env: str):
        monkeypatch.setenv("ALEXNET_LRN", env)
        model.zero_grad()
        with no_tf32():
            out = model(x)
            out.square().sum().backward()
        return out.detach().cpu(), model.features.conv1.weight.grad.cpu()

    calls = []
    real = lrn_triton._launch
    monkeypatch.setattr(lrn_triton, "_launch", lambda *a: calls.append(a[2:]) or real(*a))
    triton_out, triton_grad = logits_and_grad("triton")
    # (backward, relu): both ReLU -> LRN ran in Triton, fused, each way
    assert calls == [(False, True), (False, True), (True, True), (True, True)]
    for layer in model.modules():  # torch ops: the whole-batch path on every device
        if isinstance(layer, LRN):
            layer.cpu_path = "whole"
    torch_out, torch_grad = logits_and_grad("torch")
    assert torch.allclose(
        triton_out, torch_out, rtol=1e-5, atol=1e-5 * torch_out.abs().max().item()
    )
    scale = torch_grad.abs().max().item()
    assert torch.allclose(triton_grad, torch_grad, rtol=1e-4, atol=1e-5 * scale)


@needs_triton
def test_compiles_without_graph_break_to_eager_values(monkeypatch):
    """torch.compile sees the Triton kernels as one opaque op each way."""
    monkeypatch.setenv("ALEXNET_LRN", "triton")
    torch.manual_seed(7)
    layer = LRN(groups=2)
    x = torch.randn(2, 8, 5, 5, device=DEVICE) * 40
    torch._dynamo.reset()
    result = torch._dynamo.explain(layer)(x.clone().requires_grad_())
    assert result.graph_break_count == 0, [b.reason for b in result.break_reasons]
    assert "alexnet.lrn_triton" in "\n".join(str(g.graph) for g in result.graphs)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = [layer(xs[0]), torch.compile(layer, backend="aot_eager")(xs[1])]
    g = torch.randn_like(outs[0])
    for out in outs:
        out.backward(g)
    assert torch.equal(outs[0], outs[1]) and torch.equal(xs[0].grad, xs[1].grad)


@needs_triton
@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
def test_relu_fused_into_lrn_matches_float64(fmt):
    """ReLU -> LRN as one kernel: ReLU applied as x is read, its mask on dL/dx; x unchanged."""
    torch.manual_seed(8)
    x = (torch.randn(2, 12, 5, 6) * 40).contiguous(memory_format=fmt)
    x[0, 3, 1, 1] = 0.0  # ReLU's gradient at 0 is 0, as torch's
    g = torch.randn_like(x)
    xt = x.to(DEVICE).detach().requires_grad_()
    before = xt.detach().clone()
    out = lrn_triton.lrn(xt, LRNParams(5, 1e-4, 0.75, 2.0, 2), relu=True)
    out.backward(g.to(DEVICE))
    assert torch.equal(xt.detach(), before)
    xd = x.double().requires_grad_()
    ref = reference_lrn(torch.relu(xd), 5, 1e-4, 0.75, 2.0, 2)
    ref.backward(g.double())
    assert torch.allclose(out.cpu().double(), ref.detach(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(xt.grad.cpu().double(), xd.grad, rtol=1e-4, atol=1e-6)
    assert (xt.grad.cpu()[x <= 0] == 0).all() and xt.grad.is_contiguous(memory_format=fmt)


COMPILE_FOR_SM90 = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from alexnet.models import lrn_triton as T

def build(kernel, pointers, dtype, **constexprs):
    sig = {}
    for i, name in enumerate(kernel.arg_names):
        if i < pointers:
            sig[name] = "*" + dtype
        elif name in ("alpha", "beta", "k"):
            sig[name] = "fp32"
        else:
            sig[name] = "constexpr" if name.isupper() else "i32"
    src = ASTSource(fn=kernel, signature=sig, constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert len(compiled.asm["cubin"]) > 1000

base = dict(HALF=2, BETA34=True, BLOCK_R=32, BLOCK_W=32, WIDE=False, RNE=False, RELU=False)
build(T._lrn_kernel, 3, "bf16", **{**base, "CL": True, "RELU": True, "BACKWARD": False})
build(T._lrn_kernel, 3, "bf16", **{**base, "CL": True, "RELU": True, "BACKWARD": True})
build(T._lrn_kernel, 3, "fp32", **{**base, "CL": False, "BETA34": False, "WIDE": True,
                                   "BACKWARD": True})
print("compiled")
"""


@pytest.mark.slow
@pytest.mark.skipif(lrn_triton is None, reason=WHY or "Triton unavailable")
def test_kernels_compile_for_a_gpu_without_one():
    """Triton's real compiler (to sm_90 machine code, no GPU needed) accepts the kernels: the
    interpreter runs plain Python and would not notice what the compiler refuses."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_SM90], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]


def test_interpreter_works_when_triton_was_imported_first():
    """torch (Dynamo) may import triton before TRITON_INTERPRET=1 is set, as in a full test
    run: the kernels must not call Triton's own @jit helpers (made compiled at that import)."""
    code = (
        "import os, triton, torch\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from alexnet.models import lrn_triton\n"
        "from alexnet.models.native import LRNParams\n"
        "x = torch.randn(2, 6, 3, 3, requires_grad=True)\n"
        "lrn_triton.lrn(x, LRNParams(), relu=True).sum().backward()\n"
        "print(lrn_triton.INTERPRET, bool(torch.isfinite(x.grad).all()))\n"
    )
    assert python_stdout(code).split() == ["True", "True"]
