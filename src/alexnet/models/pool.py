"""Max-pooling with a faster CPU path, for the paper's overlapping pooling (§3.4).

`MaxPool` is an `nn.MaxPool2d` (same arguments, state, repr and results) whose CPU forward and
backward run in `pool_kernel.c` for NCHW float32/bfloat16 inputs without padding or dilation
(channels-last inputs use torch's kernel, which is as fast there; the fused ReLU -> LRN -> pool
kernel handles both layouts). In
training it keeps one byte per output for the winner's place in its window, where torch keeps
an int64 index, and its backward writes each input-gradient plane once while it is in cache,
where torch first fills the whole gradient with zeros. Ties and NaNs pick the same winner as
torch's CPU kernel, so outputs and gradients are identical. Everything else (CUDA, padding,
dilation, ceil_mode, return_indices, other dtypes, tracing for ONNX export) is `nn.MaxPool2d`
itself. The kernel is a torch custom op (`native_ops`): `torch.compile` traces through it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alexnet.models import native, native_ops


def _square(value) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


class _MaxPoolFunction:
    """The C kernel with autograd (the `alexnet::max_pool_c` op): `apply(x, kernel, stride,
    train)` -> (N, C, OH, OW) in x's layout (NCHW or channels-last)."""

    @staticmethod
    def apply(x: Tensor, kernel: int, stride: int, train: bool) -> Tensor:
        return native_ops.max_pool(x, kernel, stride, train)


class MaxPool(nn.MaxPool2d):
    """`nn.MaxPool2d` with the CPU kernel where it applies. (N, C, H, W) -> (N, C, OH, OW)."""

    def _kernel_args(self, x: Tensor, channels_last: bool = False) -> tuple[int, int] | None:
        """(kernel, stride) when the CPU kernel can pool x, else None (torch's pooling)."""
        kernel, stride = _square(self.kernel_size), _square(self.stride or self.kernel_size)
        if (
            kernel is None
            or stride is None
            or not 1 <= kernel <= 16
            or stride < 1
            or self.padding not in (0, (0, 0))
            or self.dilation not in (1, (1, 1))
            or self.ceil_mode
            or self.return_indices
            or x.dim() != 4
            or min(x.shape[2:]) < kernel
            or not native.supports(x)
            or not (x.is_contiguous() or channels_last)  # channels-last: torch's is as fast
            or not native.available()
        ):
            return None
        return kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        traced = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        args = self._kernel_args(x) if x.device.type == "cpu" and not traced else None
        if args is None:
            return super().forward(x)
        train = torch.is_grad_enabled() and x.requires_grad
        return _MaxPoolFunction.apply(x, *args, train)
