"""The CPU kernels (LRN, max-pool, the two fused; paper §3.3-3.4), built on first use with the
system's C compiler into `cache_dir()` and called through ctypes with the signatures of
`kernels.h`. Without a compiler (or with `ALEXNET_NATIVE=0`) the layers run torch ops: same
values, slower, said once."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

_NAMES = ("lrn_kernel.c", "pool_kernel.c", "fused_kernel.c")
SOURCES = [Path(__file__).with_name(name) for name in _NAMES]
HEADER = Path(__file__).with_name("kernels.h")
HEADERS = [Path(__file__).with_name("kernel_common.h"), HEADER]
# The C types the kernels use, as ctypes types (any pointer is a c_void_p).
_C_TYPES = {"int64_t": ctypes.c_int64, "int": ctypes.c_int, "float": ctypes.c_float, "void": None}
_PROTOTYPE = re.compile(r"^\s*([A-Za-z_][\w ]*?)\s+(alexnet_\w+)\s*\(([^)]*)\)\s*;", re.M)
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fPIC", "-shared", "-pthread"]
_LOCK = threading.Lock()
_LIBRARY: ctypes.CDLL | None = None
_SIGNATURES: dict[str, tuple[Any, list[tuple[str, Any]]]] = {}  # `parse_prototypes`
_TRIED = False
_REASON = ""

ALPHA_CONVENTIONS = ("paper", "per_size")


@dataclass(frozen=True)
class LRNParams:
    """LRN's constants (§3.3): `alpha` multiplies the window sum itself (the paper's reading);
    `groups` > 1 normalizes that many channel blocks apart (the paper's towers, §3.2)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    groups: int = 1

    def __post_init__(self) -> None:
        if self.size < 1 or self.groups < 1:
            raise ValueError(f"LRN size and groups must be >= 1, got {self.size}, {self.groups}")

    @classmethod
    def from_convention(
        cls, size: int, alpha: float, beta: float, k: float, groups: int = 1, convention="paper"
    ) -> LRNParams:
        """convention "paper": alpha multiplies the sum; "per_size": alpha / size does."""
        if convention not in ALPHA_CONVENTIONS:
            raise ValueError(
                f"LRN alpha_convention {convention!r} is not one of {', '.join(ALPHA_CONVENTIONS)}"
            )
        scale = 1.0 / size if convention == "per_size" else 1.0
        return cls(int(size), float(alpha) * scale, float(beta), float(k), int(groups))


class CompileError(subprocess.SubprocessError):
    """The C compiler ran and failed."""


def _c_type(declaration: str, where: str) -> Any:
    """The ctypes type of a C type ("const void *", "int64_t", ...); None for void."""
    if "*" in declaration:
        return ctypes.c_void_p
    base = declaration.replace("const", "").strip()
    if base not in _C_TYPES:
        raise ValueError(f"kernels.h: {where}: unsupported C type {declaration!r}")
    return _C_TYPES[base]


def parse_prototypes(text: str) -> dict[str, tuple[Any, list[tuple[str, Any]]]]:
    """The `alexnet_*` prototypes of a C header, by function name (comments ignored): the ctypes
    return type and (name, ctypes type) per parameter."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    signatures = {}
    for match in _PROTOTYPE.finditer(text):
        restype, name, params = match.group(1), match.group(2), match.group(3)
        parsed = []
        for param in filter(None, (p.strip() for p in params.split(","))):
            decl = re.fullmatch(r"(.*?[\s*])(\w+)", param)
            if decl is None or param == "void":
                raise ValueError(f"kernels.h: {name}: cannot read parameter {param!r}")
            parsed.append((decl.group(2), _c_type(decl.group(1), name)))
        signatures[name] = (_c_type(restype, name), parsed)
    return signatures


def _call(name: str, what: str, **args: Any) -> None:
    """Call kernel `name` with arguments named as in kernels.h (else TypeError); tensors pass
    their data pointers. MemoryError names `what` if the kernel fails."""
    names = [param for param, _ in _SIGNATURES[name][1]]
    if list(args) != names:
        raise TypeError(
            f"{name}: called with ({', '.join(args)}), kernels.h has ({', '.join(names)})"
        )
    values = [v.data_ptr() if isinstance(v, Tensor) else v for v in args.values()]
    if getattr(_LIBRARY, name)(*[int(v) if isinstance(v, bool) else v for v in values]):
        raise MemoryError(f"{what}: could not allocate its scratch memory")


def cache_dir() -> Path:
    """Where built kernels are kept."""
    if os.environ.get("ALEXNET_CACHE_DIR"):
        return Path(os.environ["ALEXNET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "alexnet"


def _compiler() -> str | None:
    for name in filter(None, [os.environ.get("CC"), "cc", "gcc", "clang"]):
        if shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _march() -> str:
    return os.environ.get("ALEXNET_MARCH") or "native"


def library_name(compiler: str, sources: list[str]) -> str:
    """The cached library's file name: a hash of everything that makes one build differ."""
    key = [*sources, compiler, " ".join(_FLAGS), _march(), _cpu_flags(), sys.platform]
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return f"kernels-{platform.machine()}-{digest}.so"


def _build(compiler: str, target: Path) -> None:
    """Compile to a temporary file and move it into place (safe with concurrent builders)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem, suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        error = ""
        march = _march()
        # some compilers (or CPUs) lack -march=native; a named instruction set is not optional
        for arch in ([f"-march={march}"], []) if march == "native" else ([f"-march={march}"],):
            cmd = [compiler, *_FLAGS, *arch, "-o", tmp, *map(str, SOURCES), "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(tmp, target)
                return
            error = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise CompileError(f"{compiler} failed: {error}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library() -> ctypes.CDLL | None:
    """The loaded kernels, building them once; None (with a reason) when unavailable."""
    global _LIBRARY, _TRIED, _REASON
    with _LOCK:
        if _TRIED:
            return _LIBRARY
        try:
            _LIBRARY = _load()
        except (OSError, subprocess.SubprocessError) as err:
            _REASON = str(err)
            warnings.warn(
                f"alexnet: the CPU kernels for LRN and max-pooling are unavailable ({_REASON}); "
                "those layers use slower torch ops",
                RuntimeWarning,
                stacklevel=3,
            )
        _TRIED = True
    return _LIBRARY


def _load() -> ctypes.CDLL | None:
    """Build (once per source and machine) and load the kernels, typed from kernels.h."""
    global _REASON
    if os.environ.get("ALEXNET_NATIVE", "1") == "0":
        _REASON = "ALEXNET_NATIVE=0"
        return None
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler found; install gcc (apt-get install gcc) or set CC")
    name = library_name(compiler, [source.read_text() for source in SOURCES + HEADERS])
    target = cache_dir() / name
    if not target.exists():
        try:
            _build(compiler, target)
        except OSError:  # a read-only or odd cache dir: build into this user's temporary dir
            uid = os.getuid() if hasattr(os, "getuid") else 0
            target = Path(tempfile.gettempdir()) / f"alexnet-{uid}" / name
            if not target.exists():
                _build(compiler, target)
    signatures = parse_prototypes(HEADER.read_text())
    lib = ctypes.CDLL(str(target))
    for name, (restype, params) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, [ctype for _, ctype in params]
    _SIGNATURES.clear()
    _SIGNATURES.update(signatures)
    return lib


def compile_constant(fn):
    """`torch.compiler.assume_constant_result` without importing Dynamo (seconds)."""
    fn._dynamo_marked_constant = True
    return fn


@compile_constant
def available() -> bool:
    """Whether the kernels are loaded (built on the first call); a constant to Dynamo."""
    return library() is not None


def reason_unavailable() -> str:
    """Why `library()` returned None ('' when it is available or was not tried)."""
    return _REASON


class KernelFunction(torch.autograd.Function):
    """`forward(x, *args) -> (out, aux)` with autograd, saving x and aux for
    `backward(x, dL/dout, aux, *args)`: a `kernel_op`'s eager calls, without the dispatcher."""

    @staticmethod
    def forward(ctx, forward, backward, x: Tensor, *args: Any) -> Tensor:
        out, aux = forward(x, *args)
        ctx.backward, ctx.args = backward, args
        ctx.save_for_backward(x, aux)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, aux = ctx.saved_tensors
        return None, None, ctx.backward(x, grad_out, aux, *ctx.args), *([None] * len(ctx.args))


def kernel_op(
    name: str, forward: Callable, backward: Callable, fake: Callable | None = None
) -> Callable[..., Tensor]:
    """`forward(x, *args) -> (out, aux)` as `call(x, *args) -> out` with autograd, saving x and
    aux (maybe empty) for `backward(x, dL/dout, aux, *args) -> dL/dx`: the custom op
    `alexnet::<name>` inside `torch.compile`; eager, `KernelFunction` (a custom op's first call
    imports Dynamo: seconds). `fake(x, *args)`: empty (out, aux) (default: out like x)."""
    op = torch.library.custom_op(f"alexnet::{name}", forward, mutates_args=())
    backward_op = torch.library.custom_op(f"alexnet::{name}_backward", backward, mutates_args=())
    op.register_fake(fake or (lambda x, *args: (torch.empty_like(x), x.new_empty(0))))
    backward_op.register_fake(lambda x, *args: torch.empty_like(x))

    def setup(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0], output[1])
        ctx.args = inputs[1:]

    def gradient(ctx, grad_out: Tensor, _grad_aux):
        x, aux = ctx.saved_tensors
        return backward_op(x, grad_out, aux, *ctx.args), *([None] * len(ctx.args))

    op.register_autograd(gradient, setup_context=setup)

    def call(x: Tensor, *args: Any) -> Tensor:
        if torch.compiler.is_compiling():
            return op(x, *args)[0]
        return KernelFunction.apply(forward, backward, x, *args)

    return call


def layout(x: Tensor) -> str | None:
    """'ncl' for contiguous (N, C, ...), 'cl' for channels-last 4-D, None if neither."""
    if x.is_contiguous():
        return "ncl"
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "cl"
    return None


def memory_format(x: Tensor) -> torch.memory_format:
    """channels-last for a channels-last 4-D x (`layout` "cl"), else contiguous."""
    return torch.channels_last if layout(x) == "cl" else torch.contiguous_format


def supports(x: Tensor) -> bool:
    """Whether the kernel can take x as it is (CPU float32/bfloat16, dense layout)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and x.dim() >= 2
        and x.numel() > 0
        and layout(x) is not None
    )


def lrn(x: Tensor, grad_out: Tensor | None, p: LRNParams, out: Tensor | None = None) -> Tensor:
    """LRN of x (grad_out None) or dL/dx, in x's layout: (N, C, ...) CPU tensors `supports`
    takes, grad_out in x's layout; `out` may be x in the forward."""
    out = torch.empty_like(x) if out is None else out
    _call(
        "alexnet_lrn", "LRN kernel",
        x=x, g=grad_out, out=out, batch=x.shape[0], channels=x.shape[1], length=x[0, 0].numel(),
        size=p.size, groups=p.groups, alpha=p.alpha, beta=p.beta, k=p.k,
        channels_last=layout(x) == "cl", bf16=x.dtype == torch.bfloat16,
        threads=torch.get_num_threads(),
    )  # fmt: skip
    return out


def pooled_empty(
    x: Tensor, kernel: int, stride: int, train: bool, *_: Any
) -> tuple[Tensor, Tensor]:
    """Empty (pooled, places) for pooling x (N, C, H, W) without padding: (N, C, OH, OW) in x's
    layout and device, places uint8 (empty without `train`); the pooling ops' fake."""
    n, c, h, w = x.shape
    fmt = memory_format(x)
    shape = (n, c, (h - kernel) // stride + 1, (w - kernel) // stride + 1)
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if not train:
        return out, torch.empty(0, dtype=torch.uint8, device=x.device)
    return out, torch.empty(shape, dtype=torch.uint8, device=x.device, memory_format=fmt)


def max_pool(x: Tensor, kernel: int, stride: int, train: bool) -> tuple[Tensor, Tensor]:
    """Max-pool (N, C, H, W) -> (N, C, OH, OW), no padding; with each winner's window place
    (uint8, 0 .. kernel^2 - 1, first maximum in row-major order, NaN wins) when `train`."""
    out, places = pooled_empty(x, kernel, stride, train)
    cl = layout(x) == "cl"
    _pool(x, out, places if train else None, x.shape, kernel, stride, cl, backward=False)
    return out, places


def max_pool_backward(
    x: Tensor, grad_out: Tensor, places: Tensor, kernel: int, stride: int, train: bool
) -> Tensor:
    """dL/dx (N, C, H, W) from dL/dout and the forward's `places` (`train`: True), in x's
    layout."""
    fmt = memory_format(places)
    grad_in = torch.empty(x.shape, dtype=grad_out.dtype, memory_format=fmt)
    grad_out = grad_out.contiguous(memory_format=fmt)
    cl = fmt == torch.channels_last
    _pool(grad_out, grad_in, places, x.shape, kernel, stride, cl, backward=True)
    return grad_in


def _pool(x, out, places, shape, kernel: int, stride: int, cl: bool, backward: bool) -> None:
    n, c, h, w = shape
    _call(
        "alexnet_max_pool", "max-pool kernel",
        x=x, out=out, argmax=places, batch=n, channels=c, height=h, width=w, kernel=kernel,
        stride=stride, channels_last=cl, backward=backward,
        bf16=x.dtype == torch.bfloat16, threads=torch.get_num_threads(),
    )  # fmt: skip


def lrn_max_pool(
    x: Tensor, kernel: int, stride: int, train: bool, relu: bool,
    size: int, alpha: float, beta: float, k: float, groups: int,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """MaxPool(LRN(x)) (of LRN(ReLU(x)) with `relu`) without writing LRN's output: x (N, C,
    H, W) float32 or bfloat16 -> (pooled, places) as `max_pool` gives, in x's layout; the
    LRN's constants as `LRNParams` has them."""
    out, places = pooled_empty(x, kernel, stride, train)
    p = LRNParams(size, alpha, beta, k, groups)
    _fused(x, None, out, places if train else None, p, kernel, stride, relu)
    return out, places


def lrn_max_pool_backward(
    x: Tensor, grad_out: Tensor, places: Tensor, kernel: int, stride: int, train: bool,
    relu: bool, size: int, alpha: float, beta: float, k: float, groups: int,
) -> Tensor:  # fmt: skip
    """dL/dx of MaxPool(LRN(x)) (LRN(ReLU(x)) with `relu`) from dL/d(pooled) and the places:
    the custom op's backward, arguments as `lrn_max_pool` takes them."""
    grad_out = grad_out.to(x.dtype).contiguous(memory_format=memory_format(x))
    grad_in = torch.empty_like(x)
    p = LRNParams(size, alpha, beta, k, groups)
    _fused(x, grad_out, grad_in, places, p, kernel, stride, relu)
    return grad_in


def _fused(x, g, out, places, p: LRNParams, kernel: int, stride: int, relu: bool) -> None:
    n, c, h, w = x.shape
    _call(
        "alexnet_lrn_max_pool", "LRN + max-pool kernel",
        x=x, g=g, out=out, places=places, batch=n, channels=c, height=h, width=w, size=p.size,
        groups=p.groups, alpha=p.alpha, beta=p.beta, k=p.k, kernel=kernel, stride=stride,
        channels_last=layout(x) == "cl", relu=relu, bf16=x.dtype == torch.bfloat16,
        threads=torch.get_num_threads(),
    )  # fmt: skip


if __name__ == "__main__":  # `python -m alexnet.models.native`: build now, say where
    lib = library()
    print(f"CPU kernels: {lib._name if lib else 'unavailable: ' + reason_unavailable()}")
