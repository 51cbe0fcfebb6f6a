"""Max-pooling with a faster CPU path (§3.4), and [ReLU ->] LRN -> max-pool as one CPU kernel
(§3.1, §3.3-3.4), one image at a time in cache. The kernels keep one byte per output for the
winner's place and resolve ties and NaNs as torch does: outputs and gradients equal torch's.
"""

from __future__ import annotations

from dataclasses import astuple

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from alexnet.models import native
from alexnet.models.lrn import LRN, kernel_for, triton_module

# c_max_pool(x, kernel, stride, train): (N, C, H, W) -> (N, C, OH, OW) by the C kernel
c_max_pool = native.kernel_op(
    "max_pool_c", native.max_pool, native.max_pool_backward, native.pooled_empty
)
# MaxPool(LRN(x)), of LRN(ReLU(x)) with relu: (N, C, H, W) float32/bfloat16 on the CPU
_c_lrn_max_pool = native.kernel_op(
    "lrn_max_pool_c", native.lrn_max_pool, native.lrn_max_pool_backward, native.pooled_empty
)


def _square(value) -> int:
    """An int, or a pair of equal ints, as that int; else 0."""
    if isinstance(value, tuple):
        return int(value[0]) if len(value) == 2 and value[0] == value[1] else 0
    return value


class MaxPool(nn.MaxPool2d):
    """`nn.MaxPool2d` with the CPU kernel where it applies. (N, C, H, W) -> (N, C, OH, OW)."""

    def _kernel_args(self, x: Tensor, channels_last: bool = False) -> tuple[int, int] | None:
        """(kernel, stride) when the CPU kernel can pool x, else None (torch's pooling)."""
        kernel, stride = _square(self.kernel_size), _square(self.stride or self.kernel_size)
        if (
            not 1 <= kernel <= 16
            or stride < 1
            or self.padding not in (0, (0, 0))
            or self.dilation not in (1, (1, 1))
            or self.ceil_mode
            or self.return_indices
            or x.dim() != 4
            or min(x.shape[2:]) < kernel
            or _exporting()
            or not native.supports(x)
            or not (x.is_contiguous() or channels_last)  # channels-last: torch's is as fast
            or not native.available()
        ):
            return None
        return kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        args = self._kernel_args(x)
        if args is None:
            return super().forward(x)
        return c_max_pool(x, *args, torch.is_grad_enabled() and x.requires_grad)


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _hooked(layer: nn.Module) -> bool:
    """Whether a hook (the layer's own, or a global one) must see this layer run."""
    return any(getattr(layer, n) or getattr(module_hooks, "_global" + n) for n in _HOOKS)


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.jit.is_scripting()


def _lrn_kernel(norm: nn.Module, x: Tensor) -> str | None:
    """`kernel_for` of an `LRN` that may run fused with its neighbours on x, else None."""
    if not isinstance(norm, LRN) or _exporting() or _hooked(norm):
        return None
    if x.dim() < 2 or x.shape[1] % norm.groups:
        return None
    return kernel_for(x, norm.cpu_path)


def run_sequential(layers: nn.Sequential, x: Tensor) -> Tensor:
    """layers(x), with each [ReLU ->] LRN -> MaxPool run as one kernel where it can be (the
    CPU's C kernel), or ReLU -> LRN as one (the Triton kernels); bitwise the layers one by one,
    which run instead where they cannot be fused or are hooked."""
    children = list(layers)
    i = 0
    while i < len(children):
        relu = type(children[i]) is nn.ReLU and not _hooked(children[i])
        first = i + 1 if relu else i
        norm = children[first] if first < len(children) else None
        kernel = _lrn_kernel(norm, x)
        pool = children[first + 1] if first + 1 < len(children) else None
        if kernel == "c" and isinstance(pool, MaxPool) and not _hooked(pool):
            args = pool._kernel_args(x, channels_last=True)
            if args is not None:
                train = torch.is_grad_enabled() and x.requires_grad
                x = _c_lrn_max_pool(x, *args, train, relu, *astuple(norm.params))
                i = first + 2
                continue
        if kernel == "triton" and relu:
            x = triton_module().lrn(x, norm.params, relu=True)  # type: ignore[union-attr]
            i = first + 1
            continue
        x = children[i](x)
        i += 1
    return x
