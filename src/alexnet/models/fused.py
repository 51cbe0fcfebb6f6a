"""Run a model's layer stack with ReLU -> LRN -> max-pool as one CPU kernel (§3.1, §3.3-3.4).

In the paper's net, LRN's output is only ever read by the max-pool right after it. On the CPU
`run_sequential` hands such a pair (an `LRN` then a `MaxPool`), with the `nn.ReLU` before it
when there is one, to `fused_kernel.c`, which normalizes one image at a time into a scratch
buffer in cache and pools from there, and in the backward scatters the pooled gradient there
and runs LRN's backward from it. The full-size activations ReLU and LRN would write and the
next layer read (and their gradients) never touch memory. The results are bitwise those of the
layers run one by one (bfloat16 included: what those would store as bfloat16 is rounded so in
scratch), which is what runs whenever they cannot be fused: not float32/bfloat16 on the CPU,
other pooling settings, tracing, or any hook on one of the modules (so `alexnet summary` and
user hooks see every layer). Where LRN runs in Triton (CUDA), ReLU -> LRN is one kernel each
way instead (ReLU applied as the input is read, its gradient mask as dL/dx is written; the
pooling is torch's): ReLU's own pass over memory, and its gradient's, are saved.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from alexnet.models import dispatch, native_ops
from alexnet.models.lrn import LRN, kernel_for
from alexnet.models.pool import MaxPool


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
    """(kernel, stride) when norm -> pool can run as the fused kernel on x, else None.

    Only an `LRN` whose `cpu_path` is "native" is fused (its other paths run torch ops).
    """
    if not isinstance(norm, LRN) or not isinstance(pool, MaxPool):
        return None
    if x.device.type != "cpu" or norm.cpu_path != "native":
        return None
    if dispatch.lrn_backend(x.device.type) != "c":  # ALEXNET_LRN=triton: the layers apart
        return None
    if _exporting() or _hooked(norm) or _hooked(pool) or x.shape[1] % norm.groups:
        return None
    return pool._kernel_args(x, channels_last=True)


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.jit.is_scripting()


def triton_after_relu(norm: nn.Module, x: Tensor) -> bool:
    """Whether ReLU -> norm can run as one Triton kernel on x (ReLU applied as x is read)."""
    if not isinstance(norm, LRN) or _exporting() or _hooked(norm):
        return False
    return (
        x.dim() >= 2 and x.shape[1] % norm.groups == 0 and kernel_for(x, norm.cpu_path) == "triton"
    )


def lrn_max_pool(
    x: Tensor, norm: LRN, pool: MaxPool, kernel: int, stride: int, relu: bool = False
) -> Tensor:
    """pool(norm(x)), or pool(norm(relu(x))) with `relu`, through the fused kernel.

    x: (N, C, H, W) float32/bfloat16 on the CPU -> (N, C, OH, OW). x is left as it is.
    """
    train = torch.is_grad_enabled() and x.requires_grad
    return native_ops.lrn_max_pool(x, norm.params, kernel, stride, train, relu)


def run_sequential(layers: nn.Sequential, x: Tensor) -> Tensor:
    """layers(x), with each fusable [ReLU ->] LRN -> MaxPool run as one kernel (the CPU's C
    kernel), or ReLU -> LRN as one (the Triton kernels)."""
    children = list(layers)
    i = 0
    while i < len(children):
        relu = type(children[i]) is nn.ReLU and not _hooked(children[i])
        first = i + 1 if relu else i
        if first + 1 < len(children):
            args = fusable(children[first], children[first + 1], x)
            if args is not None:
                x = lrn_max_pool(x, children[first], children[first + 1], *args, relu=relu)
                i = first + 2
                continue
        if relu and first < len(children) and triton_after_relu(children[first], x):
            x = dispatch.triton_lrn(x, children[first].params, relu=True)
            i = first + 1
            continue
        x = children[i](x)
        i += 1
    return x
