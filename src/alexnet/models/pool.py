"""Max-pooling with a faster CPU path (§3.4), and ReLU -> LRN -> max-pool as one CPU kernel
(§3.1, §3.3-3.4).

`MaxPool` is an `nn.MaxPool2d` (same arguments, state, repr and results) whose CPU forward and
backward run in `pool_kernel.c` for NCHW float32/bfloat16 inputs without padding or dilation
(channels-last inputs use torch's kernel, as fast there). In training it keeps one byte per
output for the winner's place in its window, where torch keeps an int64 index, and its backward
writes each input-gradient plane once while it is in cache, where torch first fills the whole
gradient with zeros. Ties and NaNs pick torch's winner, so outputs and gradients are identical.
Everything else (CUDA, padding, dilation, ceil_mode, return_indices, other dtypes, tracing for
ONNX export) is `nn.MaxPool2d` itself.

In the paper's net LRN's output is only read by the max-pool after it. On the CPU
`run_sequential` hands such a pair (an `LRN` then a `MaxPool`, with the `nn.ReLU` before it if
any) to `fused_kernel.c`, which normalizes one image at a time into a scratch buffer in cache
and pools from there, and in the backward scatters the pooled gradient there and runs LRN's
backward from it: the full-size activations of ReLU and LRN (and their gradients) never touch
memory. The results are bitwise those of the layers one by one (bfloat16 included), which is
what runs when they cannot be fused: not float32/bfloat16 on the CPU, other pooling settings,
tracing, or a hook on one of the modules (so `alexnet summary` and user hooks see every layer).
Where LRN runs in Triton (CUDA), ReLU -> LRN is one kernel each way instead (ReLU applied as the
input is read, its gradient mask as dL/dx is written; the pooling is torch's).

Both kernels are torch custom ops inside `torch.compile` (traced without a graph break) and
`autograd.Function`s in eager mode (a custom op's first call imports Dynamo: seconds).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from alexnet.models import native
from alexnet.models.lrn import LRN, kernel_for, lrn_backend, triton_module
from alexnet.models.native import LRNParams


# ---- max-pooling: the C kernel with autograd ------------------------------------------------
@torch.library.custom_op("alexnet::max_pool_c", mutates_args=())
def max_pool_c(x: Tensor, kernel: int, stride: int, train: bool) -> tuple[Tensor, Tensor]:
    """(pooled, places): places (uint8) only with `train`, else an empty tensor."""
    return _or_empty(*native.max_pool(x, kernel, stride, train))


@torch.library.custom_op("alexnet::max_pool_c_backward", mutates_args=())
def max_pool_c_backward(
    grad_out: Tensor, places: Tensor, input_shape: list[int], kernel: int, stride: int
) -> Tensor:
    """dL/dx (input_shape) from dL/d(pooled) and the forward's places, in their layout."""
    return native.max_pool_backward(grad_out, places, torch.Size(input_shape), kernel, stride)


def _or_empty(out: Tensor, places: Tensor | None) -> tuple[Tensor, Tensor]:
    """(pooled, places), places an empty tensor when the forward kept none (inference)."""
    empty = torch.empty(0, dtype=torch.uint8, device=out.device)
    return out, empty if places is None else places


@max_pool_c.register_fake
def _(x, kernel, stride, train):
    return _or_empty(*native.pooled_empty(x, kernel, stride, train))


@max_pool_c_backward.register_fake
def _(grad_out, places, input_shape, kernel, stride):
    fmt = torch.channels_last if native.layout(places) == "cl" else torch.contiguous_format
    return torch.empty(input_shape, dtype=grad_out.dtype, device=grad_out.device, memory_format=fmt)


def _pool_setup(ctx, inputs, output) -> None:
    x, kernel, stride, _ = inputs
    ctx.save_for_backward(output[1])
    ctx.geometry = (list(x.shape), kernel, stride)


def _pool_backward(ctx, grad_out: Tensor, _grad_places):
    (places,) = ctx.saved_tensors
    return max_pool_c_backward(grad_out, places, *ctx.geometry), None, None, None


max_pool_c.register_autograd(_pool_backward, setup_context=_pool_setup)


class _MaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kernel: int, stride: int, train: bool) -> Tensor:
        out, places = native.max_pool(x, kernel, stride, train)
        if places is not None:
            ctx.save_for_backward(places)
        ctx.geometry = (x.shape, kernel, stride)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (places,) = ctx.saved_tensors
        return native.max_pool_backward(grad_out, places, *ctx.geometry), None, None, None


def c_max_pool(x: Tensor, kernel: int, stride: int, train: bool) -> Tensor:
    """Max-pool (N, C, H, W) -> (N, C, OH, OW) through the C kernel, with autograd."""
    if torch.compiler.is_compiling():
        return max_pool_c(x, kernel, stride, train)[0]
    return _MaxPoolFunction.apply(x, kernel, stride, train)


def _square(value) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


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
        args = self._kernel_args(x) if x.device.type == "cpu" and not _exporting() else None
        if args is None:
            return super().forward(x)
        return c_max_pool(x, *args, torch.is_grad_enabled() and x.requires_grad)


# ---- [ReLU ->] LRN -> max-pooling: the fused C kernel with autograd -------------------------
@torch.library.custom_op("alexnet::lrn_max_pool_c", mutates_args=())
def lrn_max_pool_c(
    x: Tensor, size: int, groups: int, alpha: float, beta: float, k: float,
    kernel: int, stride: int, train: bool, relu: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(MaxPool(LRN([ReLU](x))), places if `train` else an empty tensor)."""
    p = LRNParams(size, alpha, beta, k, groups)
    return _or_empty(*native.lrn_max_pool(x, p, kernel, stride, train, relu))


@torch.library.custom_op("alexnet::lrn_max_pool_c_backward", mutates_args=())
def lrn_max_pool_c_backward(
    x: Tensor, grad_out: Tensor, places: Tensor, size: int, groups: int, alpha: float,
    beta: float, k: float, kernel: int, stride: int, relu: bool,
) -> Tensor:  # fmt: skip
    """dL/dx of `lrn_max_pool_c` from its input, dL/d(pooled) and the places."""
    p = LRNParams(size, alpha, beta, k, groups)
    return native.lrn_max_pool_backward(x, grad_out, places, p, kernel, stride, relu)


@lrn_max_pool_c.register_fake
def _(x, size, groups, alpha, beta, k, kernel, stride, train, relu):
    return _or_empty(*native.pooled_empty(x, kernel, stride, train))


lrn_max_pool_c_backward.register_fake(lambda x, *args: torch.empty_like(x))


def _fused_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], output[1])
    ctx.args = (*inputs[1:8], inputs[9])  # size .. stride, relu


def _fused_backward(ctx, grad_out: Tensor, _grad_places):
    x, places = ctx.saved_tensors
    return lrn_max_pool_c_backward(x, grad_out, places, *ctx.args), *([None] * 9)


lrn_max_pool_c.register_autograd(_fused_backward, setup_context=_fused_setup)


class _LRNMaxPoolFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: LRNParams, kernel: int, stride: int, train: bool, relu: bool):
        out, places = native.lrn_max_pool(x, p, kernel, stride, train, relu)
        if train:
            ctx.save_for_backward(x, places)
        ctx.geometry = (p, kernel, stride, relu)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, places = ctx.saved_tensors
        grad_in = native.lrn_max_pool_backward(x, grad_out, places, *ctx.geometry)
        return grad_in, None, None, None, None, None


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


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.jit.is_scripting()


def fusable(norm: nn.Module, pool: nn.Module, x: Tensor) -> tuple[int, int] | None:
    """(kernel, stride) when norm -> pool can run as the fused kernel on x, else None.

    Only an `LRN` whose `cpu_path` is "native" is fused (its other paths run torch ops).
    """
    if not isinstance(norm, LRN) or not isinstance(pool, MaxPool):
        return None
    if x.device.type != "cpu" or norm.cpu_path != "native":
        return None
    if lrn_backend(x.device.type) != "c":  # ALEXNET_LRN=triton: the layers apart
        return None
    if _exporting() or _hooked(norm) or _hooked(pool) or x.shape[1] % norm.groups:
        return None
    return pool._kernel_args(x, channels_last=True)


def lrn_max_pool(x: Tensor, p: LRNParams, kernel: int, stride: int, relu: bool) -> Tensor:
    """MaxPool(LRN(x)) (of LRN(ReLU(x)) with `relu`) through the fused C kernel, with autograd.

    x: (N, C, H, W) float32/bfloat16 on the CPU -> (N, C, OH, OW). x is left as it is.
    """
    train = torch.is_grad_enabled() and x.requires_grad
    if torch.compiler.is_compiling():
        args = (p.size, p.groups, p.alpha, p.beta, p.k, kernel, stride, train, relu)
        return lrn_max_pool_c(x, *args)[0]
    return _LRNMaxPoolFunction.apply(x, p, kernel, stride, train, relu)


def triton_after_relu(norm: nn.Module, x: Tensor) -> bool:
    """Whether ReLU -> norm can run as one Triton kernel on x (ReLU applied as x is read)."""
    if not isinstance(norm, LRN) or _exporting() or _hooked(norm):
        return False
    return (
        x.dim() >= 2 and x.shape[1] % norm.groups == 0 and kernel_for(x, norm.cpu_path) == "triton"
    )


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
                x = lrn_max_pool(x, children[first].params, *args, relu=relu)
                i = first + 2
                continue
        if relu and first < len(children) and triton_after_relu(children[first], x):
            x = triton_module().lrn(x, children[first].params, relu=True)  # type: ignore[union-attr]
            i = first + 1
            continue
        x = children[i](x)
        i += 1
    return x
