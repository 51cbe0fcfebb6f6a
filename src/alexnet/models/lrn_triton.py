"""The paper's LRN (§3.3, formulas in `alexnet.models.lrn`) as one Triton kernel each way,
the backward recomputing d from the saved input. With `relu` the input is ReLU's (§3.1).
float32, bfloat16 or float16 storage, float32 arithmetic; NCHW ((N*C) rows of H*W pixels) or
channels-last ((N*H*W) rows of C channels), so loads coalesce in both."""

from __future__ import annotations

import contextlib
from dataclasses import astuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from alexnet.models import native
from alexnet.models.native import LRNParams

_INT32_LIMIT = 2**31 - 1


@triton.jit
def _tile(
    rows, width, channels, per_group, col_blocks,
    CL: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, WIDE: tl.constexpr,
):  # fmt: skip
    """This program's tile: offsets, mask, channel position in its group, channel step."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    r = (pid // col_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)
    w = (pid % col_blocks) * BLOCK_W + tl.arange(0, BLOCK_W)
    inside = (r[:, None] < rows) & (w[None, :] < width)
    offs = r[:, None] * width + w[None, :]
    if CL:  # rows are pixels, columns channels
        pos = (w % per_group)[None, :]
        step = 1
    else:  # rows are (image, channel) planes, columns pixels
        pos = ((r % channels) % per_group)[:, None]
        step = width
    return offs, inside, pos, step


@triton.jit
def _neg_pow(d, beta, BETA34: tl.constexpr):
    """(d^-beta, d^(-beta-1)); beta 0.75 (the paper's) as rsqrt(d) * sqrt(rsqrt(d))."""
    if BETA34:
        r = tl.rsqrt(d)
        p = r * tl.sqrt(r)
        q = p * r * r
    else:
        p = tl.exp2(-beta * tl.log2(d))
        q = p / d
    return p, q


@triton.jit
def _load_a(ptr, offs, mask, RELU: tl.constexpr):
    """The layer's input a as float32; RELU: x is ReLU's input, a = max(x, 0) (NaN stays)."""
    v = tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if RELU:
        v = tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL)
    return v


@triton.jit
def _valid(inside, pos, per_group, u: tl.constexpr):
    """inside, and channel (pos + u) within the group: one comparison per element."""
    if u < 0:
        ok = inside & (pos >= -u)
    elif u > 0:
        ok = inside & (pos < per_group - u)
    else:
        ok = inside
    return ok


@triton.jit
def _window_sq(
    x_ptr, offs, inside, pos, step, per_group,
    shift: tl.constexpr, HALF: tl.constexpr, RELU: tl.constexpr,
):  # fmt: skip
    """Sum of a^2 over the channels within HALF of (each element's channel + shift), in its
    group; float32."""
    # tl.full: tl.zeros, jitted at triton's import, cannot run if it preceded TRITON_INTERPRET
    total = tl.full(offs.shape, 0.0, tl.float32)
    for i in tl.static_range(2 * HALF + 1):
        u = shift + i - HALF
        valid = _valid(inside, pos, per_group, u)
        v = _load_a(x_ptr, offs + u * step, valid, RELU)
        total += v * v
    return total


@triton.jit
def _store(ptr, offs, value, mask, RNE: tl.constexpr):
    """Store float32 `value` in ptr's dtype, rounded to nearest even; RNE: by hand, for bfloat16
    in Triton's interpreter (whose cast truncates)."""
    if RNE:
        bits = value.to(tl.uint32, bitcast=True)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).to(tl.uint16)
        out = tl.where(value == value, rounded, (bits >> 16).to(tl.uint16) | 0x40)  # NaN stays
        tl.store(ptr + offs, out.to(tl.bfloat16, bitcast=True), mask=mask)
    else:
        tl.store(ptr + offs, value.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _neighbour(
    x_ptr, g_ptr, offs, inside, pos, step, per_group, alpha, beta, k,
    shift: tl.constexpr, HALF: tl.constexpr, BETA34: tl.constexpr, RELU: tl.constexpr,
):  # fmt: skip
    """g_i a_i d_i^(-beta-1) at channel i = (each element's channel + shift); 0 outside its
    group."""
    d = k + alpha * _window_sq(x_ptr, offs, inside, pos, step, per_group, shift, HALF, RELU)
    _, q = _neg_pow(d, beta, BETA34)
    valid = _valid(inside, pos, per_group, shift)
    a = _load_a(x_ptr, offs + shift * step, valid, RELU)
    g = tl.load(g_ptr + offs + shift * step, mask=valid, other=0.0).to(tl.float32)
    return tl.where(valid, g * a * q, 0.0)


@triton.jit
def _lrn_kernel(
    x_ptr, g_ptr, out_ptr, rows, width, channels, per_group, col_blocks, alpha, beta, k,
    HALF: tl.constexpr, CL: tl.constexpr, BETA34: tl.constexpr, BLOCK_R: tl.constexpr,
    BLOCK_W: tl.constexpr, WIDE: tl.constexpr, RNE: tl.constexpr, RELU: tl.constexpr,
    BACKWARD: tl.constexpr,
):  # fmt: skip
    """b = a d^-beta into out; BACKWARD: dL/da from g = dL/db (g_ptr unread in the forward)."""
    offs, inside, pos, step = _tile(
        rows, width, channels, per_group, col_blocks, CL, BLOCK_R, BLOCK_W, WIDE
    )
    d = k + alpha * _window_sq(x_ptr, offs, inside, pos, step, per_group, 0, HALF, RELU)
    p, q = _neg_pow(d, beta, BETA34)
    a = _load_a(x_ptr, offs, inside, RELU)
    if BACKWARD:
        # sum over the neighbours i of g_i a_i d_i^(-beta-1), each d_i recomputed from a
        g = tl.load(g_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        spread = g * a * q
        for i in tl.static_range(1, HALF + 1):
            for sign in tl.static_range(-1, 2, 2):
                spread += _neighbour(
                    x_ptr, g_ptr, offs, inside, pos, step, per_group, alpha, beta, k,
                    sign * i, HALF, BETA34, RELU,
                )  # fmt: skip
        value = g * p - 2.0 * alpha * beta * a * spread
        if RELU:  # ReLU's gradient: dL/dx = 0 where x <= 0 (and where x is NaN)
            value = tl.where(a > 0.0, value, 0.0)
    else:
        value = a * p
    _store(out_ptr, offs, value, inside, RNE)


# Triton's interpreter runs the kernels above on CPU tensors (TRITON_INTERPRET=1 at import).
INTERPRET = not isinstance(_lrn_kernel, triton.runtime.jit.JITFunction)


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _geometry(x: Tensor) -> tuple[int, int, bool]:
    """(rows, width, channels_last) of a dense x (see the module docstring)."""
    n, c = x.shape[0], x.shape[1]
    length = x.numel() // max(1, n * c)
    if x.is_contiguous():
        return n * c, length, False
    return n * length, c, True


def _blocks(rows: int, width: int, cl: bool, backward: bool) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_W, num_warps): ~8 elements a thread on a GPU; big tiles interpreted."""
    tile = 1 << 18 if INTERPRET else (1024 if backward else 2048)
    if cl:  # a column block divides C where it can (96 = 3 x 32, 256 = 2 x 128)
        block_w = next((b for b in (128, 64, 32) if width % b == 0), min(128, _pow2(width)))
    else:
        block_w = min(1 << 12 if INTERPRET else 256, _pow2(width))
    block_r = max(1, min(tile // block_w, _pow2(rows)))
    return block_r, block_w, 4 if backward else 8


def _launch(tensors: list[Tensor], p: LRNParams, backward: bool, relu: bool) -> None:
    x = tensors[0]
    rows, width, cl = _geometry(x)
    block_r, block_w, warps = _blocks(rows, width, cl, backward)
    col_blocks = triton.cdiv(width, block_w)
    grid = (triton.cdiv(rows, block_r) * col_blocks,)
    wide = x.numel() + (2 * (p.size // 2) + 1) * width >= _INT32_LIMIT
    # Triton launches on the current device (and its current stream): make that x's
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _lrn_kernel[grid](
            *tensors, rows, width, x.shape[1], x.shape[1] // p.groups, col_blocks,
            p.alpha, p.beta, p.k, HALF=p.size // 2, CL=cl, BETA34=p.beta == 0.75,
            BLOCK_R=block_r, BLOCK_W=block_w, WIDE=wide,
            RNE=INTERPRET and x.dtype == torch.bfloat16, RELU=relu, BACKWARD=backward,
            num_warps=warps,
        )  # fmt: skip


def forward(
    x: Tensor, relu: bool, size: int, alpha: float, beta: float, k: float, groups: int
) -> tuple[Tensor, Tensor]:
    """(b, empty): b = LRN(x), or LRN(ReLU(x)) with `relu`: (N, C, ...) dense -> the same
    shape, dtype and memory format; the constants as `LRNParams` has them."""
    out = torch.empty_like(x)
    if x.numel():
        _launch([x, x, out], LRNParams(size, alpha, beta, k, groups), False, relu)
    return out, x.new_empty(0)


def backward(
    x: Tensor, grad_out: Tensor, _: Tensor, relu: bool, size: int, alpha: float, beta: float,
    k: float, groups: int,
) -> Tensor:  # fmt: skip
    """dL/dx from the saved input x and dL/db (any layout; read in x's), in x's layout."""
    grad_out = grad_out.to(x.dtype).contiguous(memory_format=native.memory_format(x))
    grad_in = torch.empty_like(x)
    if x.numel():
        _launch([x, grad_out, grad_in], LRNParams(size, alpha, beta, k, groups), True, relu)
    return grad_in


_lrn = native.kernel_op("lrn_triton", forward, backward)


def lrn(x: Tensor, p: LRNParams, relu: bool = False) -> Tensor:
    """LRN(x) (LRN(ReLU(x)) with `relu`, x left as it is) with autograd through the Triton
    kernels; x: (N, C, ...) float32, bfloat16 or float16, C divisible by `p.groups`."""
    x = x if native.layout(x) else x.contiguous()  # the kernels read NCHW or channels-last
    return _lrn(x, relu, *astuple(p))
