"""Weights out as ONNX, with a dynamic batch size, checked with onnxruntime.

ONNX: the model is traced with torch's TorchScript-based exporter (no onnxscript needed),
input "images" (batch, C, S, S) float32 already preprocessed as the weights' metadata says,
output "logits" (batch, num_classes). The paper's LRN (§3.3, a custom autograd function here)
is swapped for `F.local_response_norm` with alpha * size (torch divides alpha by the size),
per tower, which exports as plain ops. The file is then run with onnxruntime on a batch size
other than the traced one and compared with PyTorch: it must agree within
|onnx - torch| <= ONNX_ATOL + ONNX_RTOL * |torch| elementwise.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import UserError
from alexnet.fileio import atomic_write
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool
from alexnet.weights import hf, load

ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4


class _PlainLRN(nn.Module):
    """The paper's LRN from plain torch ops (exportable): same formula, per tower."""

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def norm(part: torch.Tensor) -> torch.Tensor:
            return F.local_response_norm(part, self.size, self.alpha * self.size, self.beta, self.k)

        if self.groups == 1:
            return norm(x)
        return torch.cat([norm(p) for p in x.chunk(self.groups, dim=1)], dim=1)


def exportable(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (eval mode, CPU) with every LRN replaced by `_PlainLRN`."""
    out = copy.deepcopy(model).cpu().eval()

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, LRN):
                lrn = _PlainLRN(child.size, child.alpha, child.beta, child.k, child.groups)
                setattr(module, name, lrn)
            else:
                swap(child)

    swap(out)
    return out


def export_onnx(
    weights: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = 17,
    check: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write `out` (.onnx) from weights of any format `alexnet.weights.load` reads; with
    `check`, verify it with onnxruntime.

    Returns {"onnx", "input_shape", "opset", "checked", "max_abs_diff", "atol", "rtol"}.
    """
    model, meta = load(weights, "cpu")
    net = exportable(model)
    size, channels = int(model.input_size), int(model.in_channels)
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2, channels, size, size, generator=gen)
    out = Path(out)

    def write(f) -> None:  # into a temp file renamed to `out`: never a half-written model
        torch.onnx.export(
            net,
            (example,),
            f,
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atomic_write(out, write)
    except (ImportError, ModuleNotFoundError) as exc:
        raise UserError(f"ONNX export needs the onnx package ({exc}): pip install onnx") from None
    result: dict[str, Any] = {
        "onnx": str(out),
        "model": meta.model_name,
        "input_shape": ["batch", channels, size, size],
        "opset": opset,
        "checked": False,
        "atol": ONNX_ATOL,
        "rtol": ONNX_RTOL,
    }
    if check:
        result.update(check_onnx(out, model, seed=seed + 1))
    return result


def check_onnx(
    path: str | os.PathLike, model: nn.Module, *, batch: int = 3, seed: int = 1
) -> dict[str, Any]:
    """Run the ONNX file with onnxruntime on a batch of `batch` images (a size other than the
    traced 2) and compare with `model`; UserError if beyond the tolerance."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("checking ONNX needs onnxruntime: pip install onnxruntime") from None
    size, channels = int(model.input_size), int(model.in_channels)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen)
    with torch.no_grad():
        ref = model.cpu().eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": x.numpy()})[0]
    diff = np.abs(got - ref)
    ok = got.shape == ref.shape and bool(np.all(diff <= ONNX_ATOL + ONNX_RTOL * np.abs(ref)))
    if not ok:
        raise UserError(
            f"{path}: onnxruntime disagrees with PyTorch (max |diff| {diff.max():.3g}, "
            f"tolerance {ONNX_ATOL} + {ONNX_RTOL} * |logit|)"
        )
    return {"checked": True, "check_batch": batch, "max_abs_diff": float(diff.max())}


# ---- Hugging Face-style folder -----------------------------------------------------------------
def export_hf(weights: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Write weights of any format `alexnet.weights.load` reads as the Hugging Face-style
    folder `out` (`alexnet.weights.hf`: model.safetensors, config.json, README.md); the card
    quotes the run's eval.json when `weights` is a run directory or a file in one.

    Returns {"folder", "files", "model", "classes", "eval"}.
    """
    model, meta = load(weights, "cpu")
    return hf.write_folder(out, model, meta, hf.run_dir_of(weights))


# ---- torch.export ----------------------------------------------------------------------------
# |program - model| <= PT2_ATOL + PT2_RTOL * |model| elementwise on the logits: the LRN's
# window sum in plain ops (`F.local_response_norm`: an average pool over a^2, times the size)
# rounds differently from the C kernel's running sum, ~1e-6 relative in float32.
PT2_ATOL = 1e-4
PT2_RTOL = 1e-4
PT2_META = "alexnet.json"  # extra file in the .pt2: {"model", "classes", "preprocess"}


def plain_copy(model: nn.Module) -> nn.Module:
    """`exportable(model)` with every `MaxPool` (the C kernel, a custom op) as torch's own
    `nn.MaxPool2d` too: a network of plain torch ops only, same numbers."""
    out = exportable(model)

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, MaxPool):
                pool = nn.MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation)
                setattr(module, name, pool)
            else:
                swap(child)

    swap(out)
    return out


def export_program(model: nn.Module, *, seed: int = 0) -> torch.export.ExportedProgram:
    """`torch.export.export` of `model` in eval mode, input (batch, C, S, S) with a dynamic
    batch dimension, LRN and max-pooling as plain torch ops (`plain_copy`)."""
    net = plain_copy(model)
    size, channels = int(model.input_size), int(model.in_channels)
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(2, channels, size, size, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    custom = sorted(
        {
            str(node.target)
            for node in program.graph.nodes
            if node.op == "call_function" and str(node.target).startswith("alexnet.")
        }
    )
    if custom:  # plain_copy missed a layer: the program would need this package to run
        raise RuntimeError(f"torch.export kept this package's custom ops {custom}")
    return program


def export_torch(
    weights: str | os.PathLike, out: str | os.PathLike, *, check: bool = True, seed: int = 0
) -> dict[str, Any]:
    """Write `out` (.pt2, `torch.export.save`) from weights of any format; it loads with
    `torch.export.load(out).module()` without this package (only torch ops in it), and carries
    the classes and preprocessing as the extra file `alexnet.json`. With `check`, load it back
    and compare with the model at batch sizes 1 and 3 (PT2_ATOL + PT2_RTOL * |logit|).

    Returns {"pt2", "model", "input_shape", "lrn", "checked", "atol", "rtol", ...}.
    """
    model, meta = load(weights, "cpu")
    program = export_program(model, seed=seed)
    info = {"model": meta.model_config, "classes": meta.classes}
    extra = {PT2_META: json.dumps({**info, "preprocess": meta.preprocess.to_json()})}
    out = Path(out)
    atomic_write(out, lambda f: torch.export.save(program, f, extra_files=extra))
    has_lrn = any(isinstance(m, LRN) for m in model.modules())
    size, channels = int(model.input_size), int(model.in_channels)
    result: dict[str, Any] = {
        "pt2": str(out),
        "model": meta.model_name,
        "input_shape": ["batch", channels, size, size],
        "lrn": "decomposed into torch ops" if has_lrn else "none",
        "checked": False,
        "atol": PT2_ATOL,
        "rtol": PT2_RTOL,
    }
    if check:
        result.update(check_program(out, model, seed=seed + 1))
    return result


def check_program(
    path: str | os.PathLike, model: nn.Module, *, batches: tuple[int, ...] = (1, 3), seed: int = 1
) -> dict[str, Any]:
    """Run the saved program at each batch size and compare with `model`; UserError if beyond
    PT2_ATOL + PT2_RTOL * |logit|. Returns {"checked", "check_batches", "max_abs_diff"}."""
    program = torch.export.load(str(path)).module()
    size, channels = int(model.input_size), int(model.in_channels)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for batch in batches:
        x = torch.randn(batch, channels, size, size, generator=gen)
        with torch.no_grad():
            ref, got = model.cpu().eval()(x), program(x)
        diff = (got - ref).abs()
        worst = max(worst, float(diff.max()))
        if got.shape != ref.shape or not bool((diff <= PT2_ATOL + PT2_RTOL * ref.abs()).all()):
            raise UserError(
                f"{path}: the exported program disagrees with the model at batch {batch} "
                f"(max |diff| {float(diff.max()):.3g}, tolerance {PT2_ATOL} + {PT2_RTOL} * |logit|)"
            )
    return {"checked": True, "check_batches": list(batches), "max_abs_diff": worst}
