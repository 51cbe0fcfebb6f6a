"""Local Response Normalization exactly as the paper writes it (Krizhevsky et al. 2012, §3.3):

    b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75 over n adjacent channels at one position. The sum is
**not** divided by n: `torch.nn.LocalResponseNorm`, Caffe and cuda-convnet divide alpha by n,
so the paper's layer is `nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)` there. With
d = k + alpha * window_sum(a^2), dL/da_m = g_m d_m^-beta - 2 alpha beta a_m window_sum(g b / d)_m.
`$ALEXNET_LRN` (auto, triton or torch; read at each call) picks the kernel (`lrn_backend`).
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple
from types import ModuleType

import torch
from torch import Tensor, nn

from alexnet.errors import UserError
from alexnet.models import native
from alexnet.models.native import LRNParams

CHOICES = ("auto", "triton", "torch")  # of $ALEXNET_LRN
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRITON: ModuleType | None = None
_TRITON_ERROR = ""
_WARNED = False

# Elements per chunk on the CPU: three float32 temporaries of this size stay in a core's cache.
_CPU_CHUNK_ELEMENTS = 1 << 17
CPU_PATHS = ("native", "chunked", "whole")
_POOL: ThreadPoolExecutor | None = None


def choice() -> str:
    """$ALEXNET_LRN, checked: one of `CHOICES` (unset or empty means auto)."""
    value = os.environ.get("ALEXNET_LRN", "").strip().lower() or "auto"
    if value not in CHOICES:
        raise UserError(f"ALEXNET_LRN={value!r} is not one of {', '.join(CHOICES)}")
    return value


def triton_module() -> ModuleType | None:
    """`alexnet.models.lrn_triton`, imported once; None (`triton_error()` says why) without it."""
    global _TRITON, _TRITON_ERROR
    if _TRITON is None and not _TRITON_ERROR:
        try:
            from alexnet.models import lrn_triton  # optional: Triton
        except Exception as err:  # ImportError, or a Triton that cannot start on this machine
            _TRITON_ERROR = f"{type(err).__name__}: {err}".splitlines()[0]
        else:
            _TRITON = lrn_triton
    return _TRITON


def triton_error() -> str:
    """Why `triton_module()` is None ('' when it is not, or was not tried)."""
    return _TRITON_ERROR


@native.compile_constant
def lrn_backend(device_type: str) -> str:
    """ "c", "triton" or "torch": what computes LRN on `device_type` (a constant to Dynamo)."""
    global _WARNED
    wanted = choice()
    if wanted == "triton":
        if triton_module() is None:
            raise UserError(f"ALEXNET_LRN=triton, but Triton cannot be used: {triton_error()}")
        return "triton"
    if device_type == "cpu":
        return "c" if native.available() else "torch"
    if device_type != "cuda" or wanted == "torch":
        return "torch"
    if triton_module() is not None:
        return "triton"
    if not _WARNED:
        _WARNED = True
        warnings.warn(
            f"alexnet: Triton is unavailable ({triton_error()}); LRN on CUDA runs as torch "
            "ops (slower)",
            RuntimeWarning,
            stacklevel=3,
        )
    return "torch"


def kernel_for(x: Tensor, cpu_path: str = "native") -> str:
    """What computes LRN of x: "c", "triton" or "torch" (`lrn_backend`, for x's dtype)."""
    backend = lrn_backend(x.device.type)
    if backend == "triton":
        return "triton" if x.dtype in TRITON_DTYPES and x.numel() else "torch"
    if backend == "c" and cpu_path == "native" and native.supports(x):
        return "c"
    return "torch"


def _c_forward(
    x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int
) -> tuple[Tensor, Tensor]:
    return native.lrn(x, None, LRNParams(size, alpha, beta, k, groups)), x.new_empty(0)


def _c_backward(
    x: Tensor, grad_out: Tensor, _: Tensor, size: int, alpha: float, beta: float, k: float,
    groups: int,
) -> Tensor:  # fmt: skip
    grad_out = grad_out.to(x.dtype).contiguous(memory_format=native.memory_format(x))
    return native.lrn(x, grad_out, LRNParams(size, alpha, beta, k, groups))


# lrn_c(x, *astuple(p)): LRN by the C kernel, (N, C, ...) float32/bfloat16 in x's layout
lrn_c = native.kernel_op("lrn_c", _c_forward, _c_backward)


def _single_threaded_worker(barrier: threading.Barrier) -> None:
    torch.set_num_threads(1)
    torch.ones(1).add_(1)  # initialize this thread's intra-op settings now, with 1 thread
    # the paper's init makes denormal products, many times slower; the flag is per thread
    torch.set_flush_denormal(True)
    barrier.wait()


def _pool(threads: int) -> ThreadPoolExecutor:
    """Threads that each run torch ops on one core (no OpenMP fork/join per small op)."""
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
    """out[i] += x[j] for 0 < |i - j| <= size // 2 in i's group; x, out: (..., C, L), apart."""
    if groups > 1:
        out, x = out.unflatten(-2, (groups, -1)), x.unflatten(-2, (groups, -1))
    channels = x.shape[-2]
    for shift in range(1, size // 2 + 1):
        if shift >= channels:
            break
        out.narrow(-2, shift, channels - shift).add_(x.narrow(-2, 0, channels - shift))
        out.narrow(-2, 0, channels - shift).add_(x.narrow(-2, shift, channels - shift))
    return out


def _denom_and_scale(x: Tensor, work: tuple, p: LRNParams) -> tuple[Tensor, Tensor]:
    """D = k/alpha + window_sum(x^2) (so d = alpha * D) and d^-beta, written into `work`."""
    squares, denom, spare = work
    torch.mul(x, x, out=squares)
    torch.add(squares, p.k / p.alpha, out=denom)
    _window_add_(denom, squares, p.size, p.groups)
    scale = squares
    if p.beta == 0.75:  # the paper's beta: two rsqrt-style ops are several times faster than pow
        root = torch.rsqrt(denom, out=spare)  # D^-1/2
        # d^-3/4 = alpha^-3/4 * D^-3/4 = sqrt(alpha^-3/2 * D^-1/2) * D^-1/2
        torch.mul(root, p.alpha**-1.5, out=scale).sqrt_().mul_(root)
    else:
        torch.pow(denom, -p.beta, out=scale).mul_(p.alpha**-p.beta)
    return denom, scale


def _forward_chunk(x: Tensor, out: Tensor, work: tuple, p: LRNParams) -> None:
    _, scale = _denom_and_scale(x, work, p)
    torch.mul(x, scale, out=out)


def _backward_chunk(
    x: Tensor, out: Tensor, grad_out: Tensor, grad_in: Tensor, work: tuple, p: LRNParams
) -> None:
    denom, scale = _denom_and_scale(x, work, p)
    ratio = torch.mul(grad_out, out, out=work[2]).div_(denom)  # alpha * g * b / d
    summed = denom.copy_(ratio)
    _window_add_(summed, ratio, p.size, p.groups)
    # dL/da = g * d^-beta - 2 alpha beta * a * window_sum(g * b / d)
    torch.mul(grad_out, scale, out=grad_in).addcmul_(summed, x, value=-2.0 * p.beta)


def _run_chunked(kernel, tensors: list[Tensor], p: LRNParams, path: str) -> None:
    """kernel(*parts, workspace, p) on (C, L) chunks of the (N, C, ...) tensors, on all threads;
    on CUDA (or path "whole") one chunk, the whole batch."""
    tensors = [t.reshape(t.shape[0], t.shape[1], -1) for t in tensors]  # views in both layouts
    first = tensors[0]
    n, channels, length = first.shape
    if first.device.type != "cpu" or path == "whole":
        kernel(*tensors, tuple(torch.empty_like(first) for _ in range(3)), p)
        return
    step = max(1, _CPU_CHUNK_ELEMENTS // channels)
    parts = [(i, j, min(j + step, length)) for i in range(n) for j in range(0, length, step)]
    threads = max(1, min(torch.get_num_threads(), len(parts)))
    inference = torch.is_inference_mode_enabled()

    def work_on(share: list[tuple[int, int, int]]) -> None:
        with torch.inference_mode(inference), torch.no_grad():
            buffers = [torch.empty(channels, step, dtype=first.dtype) for _ in range(3)]
            for i, j, end in share:
                chunk = [t[i, :, j:end] for t in tensors]
                kernel(*chunk, tuple(b[:, : end - j] for b in buffers), p)

    if threads == 1:
        work_on(parts)
        return
    futures = [_pool(threads).submit(work_on, parts[t::threads]) for t in range(threads)]
    for future in futures:
        future.result()


def _torch_forward(x: Tensor, p: LRNParams, path: str) -> tuple[Tensor, Tensor]:
    """LRN by torch ops (x dense on the CPU), the output saved for the backward."""
    out = torch.empty_like(x)
    _run_chunked(_forward_chunk, [x, out], p, path)
    return out, out


def _torch_backward(x: Tensor, grad_out: Tensor, out: Tensor, p: LRNParams, path: str) -> Tensor:
    grad_out = grad_out.contiguous(memory_format=native.memory_format(x))
    grad_in = torch.empty_like(x)
    _run_chunked(_backward_chunk, [x, out, grad_out, grad_in], p, path)
    return grad_in


class LRN(nn.Module):
    """Local Response Normalization across channels, the paper's formula (§3.3).

    `size`: n, the centred window (clipped at the ends); `groups`: channel blocks normalized
    apart (the paper's towers, §3.2); `inplace`: overwrite a dense input when no gradient is
    wanted (not on Triton); `alpha_convention`: "paper" (alpha multiplies the sum) or "per_size"
    (alpha / size does); `cpu_path`: "native" (the C kernel), "chunked" or "whole" (torch ops),
    same values. `params`: an `LRNParams`. (N, C, ...) -> the same shape and memory format.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        groups: int = 1,
        inplace: bool = False,
        *,
        alpha_convention: str = "paper",
        cpu_path: str = "native",
    ) -> None:
        super().__init__()
        if cpu_path not in CPU_PATHS:
            raise ValueError(f"LRN cpu_path {cpu_path!r} is not one of {', '.join(CPU_PATHS)}")
        self.params = LRNParams.from_convention(size, alpha, beta, k, groups, alpha_convention)
        self.inplace, self.cpu_path = inplace, cpu_path
        self.alpha_convention, self._given_alpha = alpha_convention, alpha

    size = property(lambda self: self.params.size, doc="n, the window's channels")
    alpha = property(lambda self: self.params.alpha, doc="the window sum's multiplier")
    beta = property(lambda self: self.params.beta, doc="the exponent")
    k = property(lambda self: self.params.k, doc="the additive constant")
    groups = property(lambda self: self.params.groups, doc="channel blocks normalized apart")

    @classmethod
    def from_torch_convention(
        cls, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
    ) -> LRN:
        """The layer equal to `nn.LocalResponseNorm(size, alpha, beta, k)` (alpha / size);
        exact for odd sizes (torch's window is asymmetric for even sizes)."""
        return cls(size, alpha, beta, k, alpha_convention="per_size")

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, ...) -> LRN of x, the same shape."""
        p = self.params
        if x.dim() < 2:
            raise ValueError(f"LRN expects an input of shape (N, C, ...), got {tuple(x.shape)}")
        if x.shape[1] % p.groups:
            raise ValueError(f"LRN: {x.shape[1]} channels do not split into {p.groups} groups")
        dense = native.layout(x) is not None
        if x.device.type == "cpu" and not dense:
            x = x.contiguous()
        overwrite = self.inplace and dense and not (torch.is_grad_enabled() and x.requires_grad)
        kernel = kernel_for(x, self.cpu_path)
        if kernel == "triton":
            return triton_module().lrn(x, p)  # type: ignore[union-attr]
        compiling = torch.compiler.is_compiling()
        if kernel == "c" and (compiling or not overwrite):  # a compiled graph owns its memory
            return lrn_c(x, *astuple(p))
        path = "whole" if compiling else self.cpu_path  # compiled: whole-batch, no threads
        if kernel == "torch" and not (overwrite and x.dtype == torch.float32):
            wide = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            out = native.KernelFunction.apply(_torch_forward, _torch_backward, wide, p, path)
            return out.to(x.dtype)
        if kernel == "c":
            native.lrn(x, None, p, out=x)
        else:
            _run_chunked(_forward_chunk, [x, x], p, path)
        if not compiling and not x.is_inference():
            torch.autograd.graph.increment_version(x)  # as any in-place op does
        return x

    def extra_repr(self) -> str:
        text = f"size={self.size}, alpha={self._given_alpha}, beta={self.beta}, k={self.k}"
        text += f", alpha_convention={self.alpha_convention!r}"
        text += f", groups={self.groups}" if self.groups > 1 else ""
        text += f", cpu_path={self.cpu_path!r}" if self.cpu_path != "native" else ""
        return text + (", inplace=True" if self.inplace else "")
