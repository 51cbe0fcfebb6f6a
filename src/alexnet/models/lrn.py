"""Local Response Normalization exactly as the paper writes it (Krizhevsky et al. 2012, §3.3).

    b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75 and the sum over n adjacent channels at the same position.
The sum is **not** divided by n: `torch.nn.LocalResponseNorm`, Caffe and cuda-convnet divide
alpha by n, so the paper's layer is `nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)` there.

The forward and the analytic backward are written with a few in-place tensor operations (no
`avg_pool3d` over a padded copy, as torch's version does), which makes forward+backward several
times faster than `nn.LocalResponseNorm` on the CPU and keeps it exact on any device:

    d_i = k + alpha * S_i,  S_i = window sum of a^2,  b_i = a_i * d_i^-beta
    dL/da_m = g_m * d_m^-beta - 2 * alpha * beta * a_m * window_sum(g * b / d)_m
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _window_add_(out: Tensor, x: Tensor, size: int, groups: int = 1) -> Tensor:
    """out[:, i] += sum of x[:, j] for 0 < |i - j| <= size // 2, within i's channel group.

    With `out` starting as a copy of x (plus any constant) this gives the centred window sum,
    clipped at the ends of each group. x: (N, C, ...); `out` must not alias `x`. Shifted in-place
    adds along the channel dim keep each add a large block and work for any memory format.
    """
    if groups > 1:
        out, x = out.unflatten(1, (groups, -1)), x.unflatten(1, (groups, -1))
    dim = 2 if groups > 1 else 1
    channels = x.shape[dim]
    for shift in range(1, size // 2 + 1):
        if shift >= channels:
            break
        out.narrow(dim, shift, channels - shift).add_(x.narrow(dim, 0, channels - shift))
        out.narrow(dim, 0, channels - shift).add_(x.narrow(dim, shift, channels - shift))
    return out


# Elements per chunk on the CPU: the temporaries of one chunk stay in cache (about 1 MiB each).
_CPU_CHUNK_ELEMENTS = 1 << 18


def _chunks(x: Tensor) -> list[slice]:
    """Batch slices processed together: small ones on the CPU (cache-sized), one on CUDA."""
    n = x.shape[0]
    if x.device.type != "cpu" or n == 0:
        return [slice(0, n)]
    per_item = max(1, x[0].numel())
    step = max(1, _CPU_CHUNK_ELEMENTS // per_item)
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


class _Workspace:
    """Three reusable temporaries the size of one chunk."""

    def __init__(self, like: Tensor) -> None:
        self.squares = torch.empty_like(like)
        self.denom = torch.empty_like(like)
        self.spare = torch.empty_like(like)

    def view(self, count: int) -> tuple[Tensor, Tensor, Tensor]:
        return self.squares[:count], self.denom[:count], self.spare[:count]


def _denom_and_scale(
    x: Tensor,
    ws: tuple[Tensor, Tensor, Tensor],
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int,
) -> tuple[Tensor, Tensor]:
    """d = k + alpha * window_sum(x^2) and d^-beta, written into the workspace `ws`."""
    squares, denom, spare = ws
    torch.mul(x, x, out=squares).mul_(alpha)
    torch.add(squares, k, out=denom)
    _window_add_(denom, squares, size, groups)
    scale = squares
    if beta == 0.75:  # the paper's beta: rsqrt twice is several times faster than pow
        root = torch.rsqrt(denom, out=spare)  # d^-1/2
        scale.copy_(root).sqrt_().mul_(root)  # d^-1/4 * d^-1/2
    elif beta == 0.5:
        torch.rsqrt(denom, out=scale)
    else:
        torch.pow(denom, -beta, out=scale)
    return denom, scale


class _LRNFunction(torch.autograd.Function):
    """Forward saves only x and the output; backward recomputes d chunk by chunk in cache."""

    @staticmethod
    def forward(
        ctx, x: Tensor, size: int, alpha: float, beta: float, k: float, groups: int
    ) -> Tensor:
        out = torch.empty_like(x)
        chunks = _chunks(x)
        work = _Workspace(x[chunks[0]])
        for part in chunks:
            xs = x[part]
            _, scale = _denom_and_scale(xs, work.view(xs.shape[0]), size, alpha, beta, k, groups)
            torch.mul(xs, scale, out=out[part])
        ctx.save_for_backward(x, out)
        ctx.hyper = (size, alpha, beta, k, groups)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, out = ctx.saved_tensors
        size, alpha, beta, k, groups = ctx.hyper
        grad_in = torch.empty_like(x)
        chunks = _chunks(x)
        work = _Workspace(x[chunks[0]])
        for part in chunks:
            xs, gs = x[part], grad_out[part]
            ws = work.view(xs.shape[0])
            denom, scale = _denom_and_scale(xs, ws, size, alpha, beta, k, groups)
            ratio = torch.mul(gs, out[part], out=ws[2]).div_(denom)  # g * b / d
            summed = denom.copy_(ratio)
            _window_add_(summed, ratio, size, groups)
            # dL/da = g * d^-beta - 2 alpha beta * a * window_sum(g * b / d)
            torch.mul(gs, scale, out=grad_in[part]).addcmul_(summed, xs, value=-2.0 * alpha * beta)
        return grad_in, None, None, None, None, None


def lrn(
    x: Tensor,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 2.0,
    groups: int = 1,
) -> Tensor:
    """Functional LRN in the paper's convention (alpha not divided by size). x: (N, C, ...).

    `groups` > 1 normalizes each of that many equal channel blocks on its own, as the paper's
    two GPUs did (each GPU's LRN sees only its own kernel maps). Half-precision inputs are
    normalized in float32 and cast back.
    """
    if x.dim() < 2:
        raise ValueError(f"LRN expects an input of shape (N, C, ...), got {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise ValueError(f"LRN: {x.shape[1]} channels do not split into {groups} groups")
    if x.dtype in (torch.float16, torch.bfloat16):
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
    ) -> None:
        super().__init__()
        if size < 1 or groups < 1:
            raise ValueError(f"LRN size and groups must be >= 1, got {size}, {groups}")
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    @classmethod
    def from_torch_convention(
        cls, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
    ) -> LRN:
        """The layer equal to `nn.LocalResponseNorm(size, alpha, beta, k)` (alpha / size).

        Exact for odd sizes; torch's window is asymmetric for even sizes, the paper's is not.
        """
        return cls(size, alpha / size, beta, k)

    def forward(self, x: Tensor) -> Tensor:
        return lrn(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        text = f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        return text + (f", groups={self.groups}" if self.groups > 1 else "")
