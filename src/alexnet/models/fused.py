"""Run a model's layer stack, with LRN -> max-pool pairs as one CPU kernel (§3.3-3.4).

In the paper's net, LRN's output is only ever read by the max-pool right after it. On the CPU
`run_sequential` hands such a pair (an `LRN` then a `MaxPool`) to `fused_kernel.c`, which
normalizes one image at a time into a scratch buffer in cache and pools from there, and in
the backward scatters the pooled gradient there and runs LRN's backward from it. The two
full-size activations LRN would write and the pool would read (and their gradients) never
touch memory. The results are bitwise those of the layers run one by one, which is what runs
whenever the pair cannot be fused: not float32 on the CPU, other pooling settings, tracing,
or any hook on either module (so `alexnet summary` and user hooks see every layer).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

import alexnet.models.lrn as lrn_module
from alexnet.models import native
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool


class _LRNMaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, hyper: tuple, kernel: int, stride: int, train: bool) -> Tensor:
        out, places = native.lrn_max_pool(x, hyper, kernel, stride, train)
        if train:
            ctx.save_for_backward(x, places)
        ctx.geometry = (hyper, kernel, stride)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, places = ctx.saved_tensors
        hyper, kernel, stride = ctx.geometry
        grad_in = native.lrn_max_pool_backward(x, grad_out, places, hyper, kernel, stride)
        return grad_in, None, None, None, None


def _hooked(layer: nn.Module) -> bool:
    return bool(
        layer._forward_hooks
        or layer._forward_pre_hooks
        or layer._backward_hooks
        or layer._backward_pre_hooks
        or module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_backward_hooks
        or module_hooks._global_backward_pre_hooks
    )


def fusable(norm: nn.Module, pool: nn.Module, x: Tensor) -> tuple[int, int] | None:
    """(kernel, stride) when norm -> pool can run as the fused kernel on x, else None."""
    if not isinstance(norm, LRN) or not isinstance(pool, MaxPool):
        return None
    if x.device.type != "cpu" or x.dtype != torch.float32 or lrn_module.CPU_PATH != "native":
        return None
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.jit.is_scripting():
        return None
    if _hooked(norm) or _hooked(pool) or x.shape[1] % norm.groups:
        return None
    return pool._kernel_args(x)


def lrn_max_pool(x: Tensor, norm: LRN, pool: MaxPool, kernel: int, stride: int) -> Tensor:
    """pool(norm(x)) through the fused kernel. x: (N, C, H, W) -> (N, C, OH, OW)."""
    hyper = (norm.size, norm.alpha, norm.beta, norm.k, norm.groups)
    train = torch.is_grad_enabled() and x.requires_grad
    return _LRNMaxPoolFunction.apply(x, hyper, kernel, stride, train)


def run_sequential(layers: nn.Sequential, x: Tensor) -> Tensor:
    """layers(x), with each fusable LRN -> MaxPool pair run as one kernel."""
    children = list(layers)
    i = 0
    while i < len(children):
        if i + 1 < len(children):
            args = fusable(children[i], children[i + 1], x)
            if args is not None:
                x = lrn_max_pool(x, children[i], children[i + 1], *args)
                i += 2
                continue
        x = children[i](x)
        i += 1
    return x
