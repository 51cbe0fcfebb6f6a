"""Max-pooling with a faster CPU path (§3.4), and ReLU -> LRN -> max-pool as one CPU kernel
(§3.1, §3.3-3.4).

`MaxPool` is an `nn.MaxPool2d` whose CPU forward and backward run in `pool_kernel.c` for dense
float32/bfloat16 inputs without padding or dilation: one byte per output for the winner's place
(torch keeps an int64 index), ties and NaNs resolved as torch does, so outputs and gradients are
identical. `run_sequential` runs each [ReLU ->] `LRN` -> `MaxPool` in `fused_kernel.c`, one
image at a time in cache, so ReLU's and LRN's full-size outputs never touch memory (bitwise the
layers one by one, which run instead where they cannot be fused, or are hooked); where LRN runs
in Triton, ReLU -> LRN is one kernel. Both are torch custom ops inside `torch.compile` and
`autograd.Function`s in eager mode (a custom op's first call imports Dynamo: seconds).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

from alexnet.models import native
from alexnet.models.lrn import LRN, kernel_for, triton_module
from alexnet.models.native import LRNParams


def _or_empty(out: Tensor, places: Tensor | None) -> tuple[Tensor, Tensor]:
    """(pooled, places), places an empty tensor when the forward kept none (inference)."""
    empty = torch.empty(0, dtype=torch.uint8, device=out.device)
    return out, empty if places is None else places


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


@max_pool_c.register_fake
def _(x, kernel, stride, train):
    return _or_empty(*native.pooled_empty(x, kernel, stride, train))


@max_pool_c_backward.register_fake
def _(grad_out, places, input_shape, kernel, stride):
    fmt = native.memory_format(places)
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


def lrn_max_pool(x: Tensor, p: LRNParams, kernel: int, stride: int, relu: bool) -> Tensor:
    """MaxPool(LRN(x)) (of LRN(ReLU(x)) with `relu`) through the fused C kernel, with autograd.

    x: (N, C, H, W) float32/bfloat16 on the CPU -> (N, C, OH, OW). x is left as it is.
    """
    train = torch.is_grad_enabled() and x.requires_grad
    if torch.compiler.is_compiling():
        args = (p.size, p.groups, p.alpha, p.beta, p.k, kernel, stride, train, relu)
        return lrn_max_pool_c(x, *args)[0]
    return _LRNMaxPoolFunction.apply(x, p, kernel, stride, train, relu)


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
    CPU's C kernel), or ReLU -> LRN as one (the Triton kernels)."""
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
                x = lrn_max_pool(x, norm.params, *args, relu=relu)
                i = first + 2
                continue
        if kernel == "triton" and relu:
            x = triton_module().lrn(x, norm.params, relu=True)  # type: ignore[union-attr]
            i = first + 1
            continue
        x = children[i](x)
        i += 1
    return x
