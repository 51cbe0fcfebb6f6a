"""The CPU kernels of `native` with autograd, as torch custom ops inside `torch.compile`.

Each kernel (LRN §3.3, max-pooling §3.4, [ReLU ->] LRN -> max-pool §3.1-3.4) is an
`alexnet::*` op with a fake (shape-only) implementation and its backward registered as the
op's autograd formula; Dynamo traces a model through them without a graph break. Eager calls
take an `autograd.Function` around the very same C calls instead (a custom op's first call
imports Dynamo, seconds of start-up). The entry points at the end choose; both call `native`'s
functions by module attribute at run time, so results are bitwise the same. Callers check
`native.supports` and `native.available()` first.
"""

from __future__ import annotations

import torch
from torch import Tensor

from alexnet.models import native
from alexnet.models.lrn_params import LRNParams


def _params(size: int, groups: int, alpha: float, beta: float, k: float) -> LRNParams:
    return LRNParams(size, alpha, beta, k, groups)


def _format(x: Tensor) -> torch.memory_format:
    return torch.channels_last if native.layout(x) == "cl" else torch.contiguous_format


def _pooled_shape(x: Tensor, kernel: int, stride: int) -> list:
    n, c, h, w = x.shape
    return [n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1]


def _no_places(x: Tensor) -> Tensor:
    """The places output of an inference call: nothing kept."""
    return torch.empty(0, dtype=torch.uint8, device=x.device)


# ---- LRN ------------------------------------------------------------------------------------
@torch.library.custom_op("alexnet::lrn_c", mutates_args=())
def lrn_c(x: Tensor, size: int, groups: int, alpha: float, beta: float, k: float) -> Tensor:
    """b = LRN(x) by the C kernel: (N, C, ...) float32/bfloat16, x's layout."""
    return native.lrn(x, None, _params(size, groups, alpha, beta, k))


@torch.library.custom_op("alexnet::lrn_c_backward", mutates_args=())
def lrn_c_backward(
    x: Tensor, grad_out: Tensor, size: int, groups: int, alpha: float, beta: float, k: float
) -> Tensor:
    """dL/dx from the saved input and dL/db (made x's dtype and layout)."""
    grad_out = grad_out.to(x.dtype).contiguous(memory_format=_format(x))
    return native.lrn(x, grad_out, _params(size, groups, alpha, beta, k))


@torch.library.custom_op("alexnet::lrn_c_", mutates_args=("x",))
def lrn_c_(x: Tensor, size: int, groups: int, alpha: float, beta: float, k: float) -> None:
    """x = LRN(x) in place (inference; each tile is read whole before it is written)."""
    native.lrn(x, None, _params(size, groups, alpha, beta, k), out=x)


@lrn_c.register_fake
def _(x, size, groups, alpha, beta, k):
    return torch.empty_like(x)


@lrn_c_backward.register_fake
def _(x, grad_out, size, groups, alpha, beta, k):
    return torch.empty_like(x)


@lrn_c_.register_fake
def _(x, size, groups, alpha, beta, k):
    return None


def _lrn_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.args = inputs[1:]


def _lrn_backward(ctx, grad_out: Tensor):
    (x,) = ctx.saved_tensors
    return lrn_c_backward(x, grad_out, *ctx.args), None, None, None, None, None


lrn_c.register_autograd(_lrn_backward, setup_context=_lrn_setup)


# ---- max-pooling ----------------------------------------------------------------------------
@torch.library.custom_op("alexnet::max_pool_c", mutates_args=())
def max_pool_c(x: Tensor, kernel: int, stride: int, train: bool) -> tuple[Tensor, Tensor]:
    """(pooled, places): places (uint8) only with `train`, else an empty tensor."""
    out, places = native.max_pool(x, kernel, stride, train)
    return out, _no_places(x) if places is None else places


@torch.library.custom_op("alexnet::max_pool_c_backward", mutates_args=())
def max_pool_c_backward(
    grad_out: Tensor, places: Tensor, input_shape: list[int], kernel: int, stride: int
) -> Tensor:
    """dL/dx (input_shape) from dL/d(pooled) and the forward's places, in their layout."""
    return native.max_pool_backward(grad_out, places, torch.Size(input_shape), kernel, stride)


def _pooled_fake(x: Tensor, kernel: int, stride: int, train: bool) -> tuple[Tensor, Tensor]:
    """Empty (pooled, places) of the shapes, dtypes and layout the pooling kernels return."""
    shape, fmt = _pooled_shape(x, kernel, stride), _format(x)
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if not train:
        return out, _no_places(x)
    return out, torch.empty(shape, dtype=torch.uint8, device=x.device, memory_format=fmt)


@max_pool_c.register_fake
def _(x, kernel, stride, train):
    return _pooled_fake(x, kernel, stride, train)


@max_pool_c_backward.register_fake
def _(grad_out, places, input_shape, kernel, stride):
    fmt = _format(places)
    return torch.empty(input_shape, dtype=grad_out.dtype, device=grad_out.device, memory_format=fmt)


def _pool_setup(ctx, inputs, output) -> None:
    x, kernel, stride, _ = inputs
    ctx.save_for_backward(output[1])
    ctx.geometry = (list(x.shape), kernel, stride)


def _pool_backward(ctx, grad_out: Tensor, _grad_places):
    (places,) = ctx.saved_tensors
    return max_pool_c_backward(grad_out, places, *ctx.geometry), None, None, None


max_pool_c.register_autograd(_pool_backward, setup_context=_pool_setup)


# ---- [ReLU ->] LRN -> max-pooling -----------------------------------------------------------
@torch.library.custom_op("alexnet::lrn_max_pool_c", mutates_args=())
def lrn_max_pool_c(
    x: Tensor, size: int, groups: int, alpha: float, beta: float, k: float,
    kernel: int, stride: int, train: bool, relu: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(MaxPool(LRN([ReLU](x))), places if `train` else an empty tensor)."""
    p = _params(size, groups, alpha, beta, k)
    out, places = native.lrn_max_pool(x, p, kernel, stride, train, relu)
    return out, _no_places(x) if places is None else places


@torch.library.custom_op("alexnet::lrn_max_pool_c_backward", mutates_args=())
def lrn_max_pool_c_backward(
    x: Tensor, grad_out: Tensor, places: Tensor, size: int, groups: int, alpha: float,
    beta: float, k: float, kernel: int, stride: int, relu: bool,
) -> Tensor:  # fmt: skip
    """dL/dx of `lrn_max_pool_c` from its input, dL/d(pooled) and the places."""
    p = _params(size, groups, alpha, beta, k)
    return native.lrn_max_pool_backward(x, grad_out, places, p, kernel, stride, relu)


@lrn_max_pool_c.register_fake
def _(x, size, groups, alpha, beta, k, kernel, stride, train, relu):
    return _pooled_fake(x, kernel, stride, train)


@lrn_max_pool_c_backward.register_fake
def _(x, grad_out, places, size, groups, alpha, beta, k, kernel, stride, relu):
    return torch.empty_like(x)


def _fused_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], output[1])
    ctx.args = (*inputs[1:8], inputs[9])  # size .. stride, relu


def _fused_backward(ctx, grad_out: Tensor, _grad_places):
    x, places = ctx.saved_tensors
    size, groups, alpha, beta, k, kernel, stride, relu = ctx.args
    grad_in = lrn_max_pool_c_backward(
        x, grad_out, places, size, groups, alpha, beta, k, kernel, stride, relu
    )
    return grad_in, *([None] * 9)


lrn_max_pool_c.register_autograd(_fused_backward, setup_context=_fused_setup)


# ---- eager: the same kernels through autograd.Function (no custom-op dispatch, which would
# import Dynamo on the first call: seconds of start-up for a model that is never compiled)
class _LRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: LRNParams) -> Tensor:
        ctx.params = p
        ctx.save_for_backward(x)
        return native.lrn(x, None, p)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (x,) = ctx.saved_tensors
        grad_out = grad_out.to(x.dtype).contiguous(memory_format=_format(x))
        return native.lrn(x, grad_out, ctx.params), None


class _MaxPool(torch.autograd.Function):
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


class _LRNMaxPool(torch.autograd.Function):
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


# ---- entry points: the custom ops inside torch.compile, autograd.Functions in eager ---------
def lrn(x: Tensor, p: LRNParams) -> Tensor:
    """LRN(x) through the C kernel, with autograd."""
    if torch.compiler.is_compiling():
        return lrn_c(x, p.size, p.groups, p.alpha, p.beta, p.k)
    return _LRN.apply(x, p)


def lrn_(x: Tensor, p: LRNParams) -> Tensor:
    """x = LRN(x) in place through the C kernel (no autograd); returns x."""
    if torch.compiler.is_compiling():
        lrn_c_(x, p.size, p.groups, p.alpha, p.beta, p.k)
        return x
    native.lrn(x, None, p, out=x)
    if not x.is_inference():
        torch.autograd.graph.increment_version(x)  # as any in-place op does
    return x


def max_pool(x: Tensor, kernel: int, stride: int, train: bool) -> Tensor:
    """Max-pool (N, C, H, W) -> (N, C, OH, OW) through the C kernel, with autograd."""
    if torch.compiler.is_compiling():
        return max_pool_c(x, kernel, stride, train)[0]
    return _MaxPool.apply(x, kernel, stride, train)


def lrn_max_pool(
    x: Tensor, p: LRNParams, kernel: int, stride: int, train: bool, relu: bool
) -> Tensor:
    """MaxPool(LRN(x)) (of LRN(ReLU(x)) with `relu`) through the fused C kernel."""
    if torch.compiler.is_compiling():
        args = (p.size, p.groups, p.alpha, p.beta, p.k, kernel, stride, train, relu)
        return lrn_max_pool_c(x, *args)[0]
    return _LRNMaxPool.apply(x, p, kernel, stride, train, relu)
