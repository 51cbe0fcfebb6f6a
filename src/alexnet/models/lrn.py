"""Local Response Normalization exactly as the paper writes it (Krizhevsky et al. 2012, §3.3).

    b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75 and the sum over n adjacent channels at the same position.
The sum is **not** divided by n: `torch.nn.LocalResponseNorm`, Caffe and cuda-convnet divide
alpha by n, so the paper's layer is `nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)` there.

On the CPU, float32 and bfloat16 inputs go through a fused C kernel (`lrn_kernel.c`, built
on first use by `native`): one pass over memory each way, tiles in cache, the backward
recomputing d from the input, so only the input is saved. Without a C compiler, and for other
dtypes, the same formulas run as a few in-place tensor ops over cache-sized chunks on
single-threaded worker threads; on CUDA as whole-batch tensor ops. (In the paper model the
ReLU -> LRN -> max-pool blocks run as one kernel instead, see `fused`.) Exact on every path:

    d_i = k + alpha * S_i,  S_i = window sum of a^2,  b_i = a_i * d_i^-beta
    dL/da_m = g_m * d_m^-beta - 2 * alpha * beta * a_m * window_sum(g * b / d)_m
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from alexnet.models import native

# Elements per chunk on the CPU: three float32 temporaries of this size stay in a core's cache.
_CPU_CHUNK_ELEMENTS = 1 << 17
# How CPU inputs are computed: "native" (the fused kernel where it applies), "chunked" (torch ops
# on cache-sized chunks) or "whole" (whole-batch torch ops, the CUDA path); tests switch it.
CPU_PATH = "native"
_POOL: ThreadPoolExecutor | None = None


def _single_threaded_worker(barrier: threading.Barrier) -> None:
    """Make this pool thread run torch ops inline (its own OpenMP setting is 1 thread)."""
    torch.set_num_threads(1)
    torch.ones(1).add_(1)  # initialize this thread's intra-op settings now, with 1 thread
    # Flush denormals in this thread (the CPU flag is per thread): the paper's init makes tiny
    # gradients whose products are denormal and many times slower; the change is below 1e-38.
    torch.set_flush_denormal(True)
    barrier.wait()


def _pool(threads: int) -> ThreadPoolExecutor:
    """Worker threads that each run torch ops on one core, without OpenMP fork/join per op.

    Many small parallel ops are fast on an idle machine but can each wait a scheduler slice when
    another process holds a core; whole chunks per thread avoid that. The process-wide thread
    count is restored once the workers are set up.
    """
    global _POOL
    if _POOL is None or _POOL._max_workers < threads:
        saved = torch.get_num_threads()
        pool = ThreadPoolExecutor(threads, thread_name_prefix="alexnet-lrn")
        barrier = threading.Barrier(threads)
        for future in [pool.submit(_single_threaded_worker, barrier) for _ in range(threads)]:
            future.result()
        torch.set_num_threads(saved)
        _POOL = pool
    return _POOL


def _window_add_(out: Tensor, x: Tensor, size: int, groups: int = 1) -> Tensor:
    """out[i] += sum of x[j] for 0 < |i - j| <= size // 2 within i's group; channels on dim -2.

    With `out` starting as a copy of x (plus any constant) this gives the centred window sum,
    clipped at the ends of each group. x: (..., C, L); `out` must not alias `x`.
    """
    if groups > 1:
        out, x = out.unflatten(-2, (groups, -1)), x.unflatten(-2, (groups, -1))
    channels = x.shape[-2]
    for shift in range(1, size // 2 + 1):
        if shift >= channels:
            break
        out.narrow(-2, shift, channels - shift).add_(x.narrow(-2, 0, channels - shift))
        out.narrow(-2, 0, channels - shift).add_(x.narrow(-2, shift, channels - shift))
    return out


def _denom_and_scale(
    x: Tensor, work: tuple[Tensor, Tensor, Tensor], hyper: tuple
) -> tuple[Tensor, Tensor]:
    """D = k/alpha + window_sum(x^2) (so d = alpha * D) and d^-beta.

    x: a (C, L) chunk or an (N, C, L) batch; results are written into `work`.
    """
    size, alpha, beta, k, groups = hyper
    squares, denom, spare = work
    torch.mul(x, x, out=squares)
    torch.add(squares, k / alpha, out=denom)
    _window_add_(denom, squares, size, groups)
    scale = squares
    if beta == 0.75:  # the paper's beta: two rsqrt-style ops are several times faster than pow
        root = torch.rsqrt(denom, out=spare)  # D^-1/2
        # d^-3/4 = alpha^-3/4 * D^-3/4 = sqrt(alpha^-3/2 * D^-1/2) * D^-1/2
        torch.mul(root, alpha**-1.5, out=scale).sqrt_().mul_(root)
    else:
        torch.pow(denom, -beta, out=scale).mul_(alpha**-beta)
    return denom, scale


def _forward_chunk(x: Tensor, out: Tensor, work: tuple, hyper: tuple) -> None:
    _, scale = _denom_and_scale(x, work, hyper)
    torch.mul(x, scale, out=out)


def _backward_chunk(
    x: Tensor, out: Tensor, grad_out: Tensor, grad_in: Tensor, work: tuple, hyper: tuple
) -> None:
    size, _, beta, _, groups = hyper
    denom, scale = _denom_and_scale(x, work, hyper)
    ratio = torch.mul(grad_out, out, out=work[2]).div_(denom)  # alpha * g * b / d
    summed = denom.copy_(ratio)
    _window_add_(summed, ratio, size, groups)
    # dL/da = g * d^-beta - 2 alpha beta * a * window_sum(g * b / d)
    torch.mul(grad_out, scale, out=grad_in).addcmul_(summed, x, value=-2.0 * beta)


def _as_ncl(t: Tensor) -> Tensor:
    """(N, C, *spatial) -> a (N, C, L) view (NCHW and channels-last both flatten as views)."""
    return t.reshape(t.shape[0], t.shape[1], -1)


def _run_chunked(kernel, tensors: list[Tensor], channels: int) -> None:
    """Apply kernel(*parts, workspace) to (C, L) chunks of (N, C, L) tensors, on all threads.

    CUDA: one chunk, the whole batch (the caching allocator makes temporaries cheap).
    """
    first = tensors[0]
    n, length = first.shape[0], first.shape[2]
    if first.device.type != "cpu" or CPU_PATH == "whole":
        work = tuple(torch.empty_like(first) for _ in range(3))
        kernel(*tensors, work)
        return
    step = max(1, _CPU_CHUNK_ELEMENTS // channels)
    parts = [(i, j, min(j + step, length)) for i in range(n) for j in range(0, length, step)]
    threads = max(1, min(torch.get_num_threads(), len(parts)))
    inference = torch.is_inference_mode_enabled()

    def work_on(share: list[tuple[int, int, int]]) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            buffers = [torch.empty(channels, step, dtype=first.dtype) for _ in range(3)]
            for i, j, end in share:
                width = end - j
                chunk = [t[i, :, j:end] for t in tensors]
                kernel(*chunk, tuple(b[:, :width] for b in buffers))

    if threads == 1:
        work_on(parts)
        return
    futures = [_pool(threads).submit(work_on, parts[t::threads]) for t in range(threads)]
    for future in futures:
        future.result()


def _native(x: Tensor) -> bool:
    """Whether x goes through the fused C kernel (CPU float32/bfloat16 with the kernel built)."""
    return CPU_PATH == "native" and native.supports(x) and native.library() is not None


def _forward_values(x: Tensor, hyper: tuple, out: Tensor | None = None) -> Tensor:
    """b = LRN(x) into `out` (a new tensor if None; `out` may be x itself). No autograd."""
    if _native(x):
        return native.lrn(x, None, hyper, out=out)
    out = torch.empty_like(x) if out is None else out
    _run_chunked(
        lambda a, b, work: _forward_chunk(a, b, work, hyper),
        [_as_ncl(x), _as_ncl(out)],
        x.shape[1],
    )
    return out


class _LRNFunction(torch.autograd.Function):
    """Forward saves the input (and, off the fused kernel, the output); backward recomputes d."""

    @staticmethod
    def forward(
        ctx, x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int
    ) -> Tensor:
        hyper = (size, alpha, beta, k, groups)
        ctx.hyper = hyper
        if x.device.type == "cpu" and not _as_ncl(x).is_contiguous() and not _cl_flat(x):
            x = x.contiguous()
        ctx.native = _native(x)
        out = _forward_values(x, hyper)
        ctx.save_for_backward(*((x,) if ctx.native else (x, out)))
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        hyper = ctx.hyper
        if ctx.native:
            (x,) = ctx.saved_tensors
            fmt = torch.channels_last if native.layout(x) == "cl" else torch.contiguous_format
            grad_out = grad_out.to(x.dtype).contiguous(memory_format=fmt)
            return native.lrn(x, grad_out, hyper), None, None, None, None, None
        x, out = ctx.saved_tensors
        grad_out = grad_out.contiguous(memory_format=_format_of(x))
        grad_in = torch.empty_like(x)
        _run_chunked(
            lambda a, b, g, gi, work: _backward_chunk(a, b, g, gi, work, hyper),
            [_as_ncl(x), _as_ncl(out), _as_ncl(grad_out), _as_ncl(grad_in)],
            x.shape[1],
        )
        return grad_in, None, None, None, None, None


def _cl_flat(x: Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _format_of(x: Tensor) -> torch.memory_format:
    return torch.channels_last if _cl_flat(x) and not x.is_contiguous() else torch.contiguous_format


def lrn(
    x: Tensor,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    groups: int = 1,
    inplace: bool = False,
) -> Tensor:
    """Functional LRN in the paper's convention (alpha not divided by size). x: (N, C, ...).

    `groups` > 1 normalizes each of that many equal channel blocks on its own, as the paper's
    two GPUs did (each GPU's LRN sees only its own kernel maps). bfloat16 on the CPU's fused
    kernel is read and written as bfloat16 with float32 arithmetic; other half-precision inputs
    are normalized in float32 and cast back. `inplace` overwrites a dense float32 x (bfloat16
    too, on the CPU kernel) when no gradient is wanted (inference: no new activation memory);
    otherwise, and when x needs a gradient (the backward needs x), it returns a new tensor.
    """
    if x.dim() < 2:
        raise ValueError(f"LRN expects an input of shape (N, C, ...), got {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise ValueError(f"LRN: {x.shape[1]} channels do not split into {groups} groups")
    wants_grad = torch.is_grad_enabled() and x.requires_grad
    dense = x.is_contiguous() or _cl_flat(x)
    if inplace and not wants_grad and dense and x.dtype in (torch.float32, torch.bfloat16):
        if x.dtype == torch.float32 or _native(x):
            _forward_values(x, (size, alpha, beta, k, groups), out=x)
            if not x.is_inference():
                torch.autograd.graph.increment_version(x)  # as any in-place op does
            return x
    if x.dtype in (torch.float16, torch.bfloat16) and not _native(x):
        return _LRNFunction.apply(x.float(), size, alpha, beta, k, groups).to(x.dtype)
    return _LRNFunction.apply(x, size, alpha, beta, k, groups)


class LRN(nn.Module):
    """Local Response Normalization across channels, the paper's formula (§3.3).

    Args:
        size: n, the number of adjacent channels summed (centred window, clipped at the ends).
        alpha: the paper's alpha, *not* divided by `size` (pass `alpha / size` semantics nowhere).
        beta: the exponent.
        k: the additive constant.
        groups: normalize each of `groups` equal channel blocks separately (the paper's towers).
        inplace: overwrite the input when no gradient is wanted (as `nn.ReLU(inplace=True)`).

    Shape: (N, C, H, W) -> (N, C, H, W); channels-last inputs keep their memory format.
    `LRN.from_torch_convention(size, alpha, beta, k)` builds the layer that equals
    `torch.nn.LocalResponseNorm(size, alpha, beta, k)` (whose alpha is divided by size).
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        groups: int = 1,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        if size < 1 or groups < 1:
            raise ValueError(f"LRN size and groups must be >= 1, got {size}, {groups}")
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups
        self.inplace = inplace

    @classmethod
    def from_torch_convention(
        cls, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
    ) -> LRN:
        """The layer equal to `nn.LocalResponseNorm(size, alpha, beta, k)` (alpha / size).

        Exact for odd sizes; torch's window is asymmetric for even sizes, the paper's is not.
        """
        return cls(size, alpha / size, beta, k)

    def forward(self, x: Tensor) -> Tensor:
        return lrn(x, self.size, self.alpha, self.beta, self.k, self.groups, self.inplace)

    def extra_repr(self) -> str:
        text = f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        text += f", groups={self.groups}" if self.groups > 1 else ""
        return text + (", inplace=True" if self.inplace else "")
