"""torch.compile traces the paper model, LRN and the CPU kernels without a graph break.

The kernels are torch custom ops (`lrn`, `pool`, `lrn_triton`) and the choice between them is
a constant to Dynamo (`lrn.lrn_backend`, `native.available`), so `torch._dynamo.explain`
finds one graph; `aot_eager` (Dynamo + AOTAutograd, eager kernels) gives what eager gives.
"""

from __future__ import annotations

import pytest
import torch
from proc_helpers import python_stdout

import alexnet
from alexnet.models import native
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool

needs_kernels = pytest.mark.skipif(native.library() is None, reason="no C compiler here")


def explain(module, *args):
    torch._dynamo.reset()
    return torch._dynamo.explain(module)(*args)


def ops_in(result) -> str:
    """The text of every graph Dynamo captured."""
    return "\n".join(str(graph.graph) for graph in result.graphs)


@needs_kernels
@pytest.mark.parametrize("grad", [True, False])
def test_paper_model_has_no_graph_break(grad):
    """Training (gradients wanted) and inference: one graph, the fused C kernels inside it."""
    model = alexnet.get_model("paper", num_classes=10)
    x = torch.randn(1, 3, 224, 224)
    with torch.set_grad_enabled(grad):
        result = explain(model, x)
    assert result.graph_break_count == 0, [b.reason for b in result.break_reasons]
    assert result.graph_count == 1
    text = ops_in(result)
    assert text.count("alexnet.lrn_max_pool_c") == 2  # ReLU -> LRN -> pool of conv1, conv2
    assert text.count("alexnet.max_pool_c") == 1  # pool5


@needs_kernels
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("grad", [True, False])
def test_layers_have_no_graph_break_and_compile_to_eager_values(inplace, grad):
    torch.manual_seed(0)
    layers = torch.nn.Sequential(
        LRN(groups=2, inplace=inplace), MaxPool(3, 2), torch.nn.Conv2d(8, 4, 1)
    )
    x = torch.randn(2, 8, 11, 11) * 40
    with torch.set_grad_enabled(grad):
        result = explain(layers, x.clone())
    assert result.graph_break_count == 0, [b.reason for b in result.break_reasons]
    assert "alexnet.lrn_c" in ops_in(result) and "alexnet.max_pool_c" in ops_in(result)
    compiled = torch.compile(layers, backend="aot_eager")
    with torch.set_grad_enabled(grad):
        eager, traced = layers(x.clone()), compiled(x.clone())
    assert torch.equal(traced, eager)


@needs_kernels
def test_compiled_paper_model_equals_eager():
    """Logits and a gradient through Dynamo + AOTAutograd: the same kernels, the same numbers."""
    torch.manual_seed(1)
    model = alexnet.get_model("paper", num_classes=10, dropout=0.0)
    x = torch.randn(1, 3, 224, 224)
    eager = model(x)
    eager.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    torch._dynamo.reset()
    traced = torch.compile(model, backend="aot_eager")(x)
    traced.square().sum().backward()
    assert torch.allclose(traced, eager, rtol=1e-6, atol=1e-7)
    for ours, theirs in zip([p.grad for p in model.parameters()], grads):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6 * theirs.abs().max().item())


def test_torch_ops_path_has_no_graph_break():
    """LRN by torch ops (no C kernel; CUDA without Triton): traced as whole-batch ops."""
    torch.manual_seed(2)
    x = (torch.randn(2, 6, 5, 5) * 40).requires_grad_()
    for path in ("chunked", "whole"):
        result = explain(LRN(cpu_path=path), x)
        assert result.graph_break_count == 0, [b.reason for b in result.break_reasons]
        layer = LRN(cpu_path=path)
        traced = torch.compile(layer, backend="aot_eager")(x)
        assert torch.allclose(traced, layer(x), rtol=1e-6, atol=1e-6)


def test_eager_calls_do_not_import_dynamo():
    """Eager runs take autograd.Functions, not the custom ops (whose first call would import
    Dynamo: seconds of start-up), and the gating needs no Dynamo either."""
    code = (
        "import sys, torch\n"
        "from alexnet.models.registry import get_model\n"
        "model = get_model('paper', num_classes=10)\n"
        "model(torch.randn(1, 3, 224, 224)).sum().backward()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    assert python_stdout(code).strip() == "False"
