"""Which kernels compute LRN (§3.3): the CPU's C kernels, the Triton kernels, or torch ops.

`ALEXNET_LRN` chooses, read at each call (inside `torch.compile` a constant of the trace):

- `auto` (the default): CPU tensors take the C kernels (`native`; torch ops without a C
  compiler), CUDA tensors the Triton kernels (`lrn_triton`) when Triton imports, else torch
  ops, with one warning;
- `triton`: the Triton kernels on any device. On CPU tensors they run in Triton's interpreter,
  which needs `TRITON_INTERPRET=1` in the environment before the kernels are first imported
  (set it before Python starts); slow, for tests;
- `torch`: never the Triton kernels (CUDA runs torch ops; the CPU is unchanged).

The choice is made by `lrn_backend`, which `torch.compile` treats as a constant (as with
`torch.compiler.assume_constant_result`): the layers' gating never breaks a graph.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import torch
from torch import Tensor

from alexnet.errors import UserError
from alexnet.models import native
from alexnet.models.lrn_params import LRNParams

CHOICES = ("auto", "triton", "torch")
# what the Triton kernels read and write (float32 arithmetic)
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRITON: ModuleType | None = None
_TRITON_ERROR = ""
_WARNED = False


def choice() -> str:
    """$ALEXNET_LRN, checked: one of `CHOICES` (unset or empty means auto)."""
    value = os.environ.get("ALEXNET_LRN", "").strip().lower() or "auto"
    if value not in CHOICES:
        raise UserError(f"ALEXNET_LRN={value!r} is not one of {', '.join(CHOICES)}")
    return value


def triton_module() -> ModuleType | None:
    """`alexnet.models.lrn_triton`, imported once; None (see `triton_error`) without Triton."""
    global _TRITON, _TRITON_ERROR
    if _TRITON is None and not _TRITON_ERROR:
        try:
            from alexnet.models import lrn_triton
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
    """ "c", "triton" or "torch": what computes LRN of tensors on `device_type`.

    "c" means the C kernels are loaded; a layer still uses them only on its "native" path.
    """
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


def triton_lrn(x: Tensor, p: LRNParams, relu: bool = False) -> Tensor:
    """LRN(x) (LRN(ReLU(x)) with `relu`) by the Triton kernels, with autograd (`lrn_backend`
    said "triton")."""
    module = triton_module()
    assert module is not None, "lrn_backend() chooses the Triton kernels only when they import"
    return module.lrn(x, p, relu)
