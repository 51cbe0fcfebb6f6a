"""Weights out as ONNX, with a dynamic batch size, checked with onnxruntime.

ONNX: the model is traced with torch's TorchScript-based exporter (no onnxscript needed),
input "images" (batch, C, S, S) float32 already preprocessed as the weights' metadata says,
output "logits" (batch, num_classes). The paper's LRN (§3.3, a custom autograd function here)
is swapped for the same formula in plain ops, per tower (`_FastLRN`: its window sum as a
1x1 convolution). The file is then run with onnxruntime on a batch size
other than the traced one and compared with PyTorch: it must agree within
|onnx - torch| <= ONNX_ATOL + ONNX_RTOL * |torch| elementwise.

The file also has a second output "features" (the penultimate activations, fc7 after ReLU)
and carries the weights' metadata in metadata_props (`onnx_metadata`), so that every --weights
flag can run it (`OnnxModel`, used by `alexnet.inference.OnnxBackend`). int8: post-training
static quantization with onnxruntime's quantizer (`quantize_int8`, QDQ, per-channel weights,
uint8 activations calibrated on a packed dataset's training images, `calibration_batches`).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.packed import open_dataset
from alexnet.errors import UserError, need_extra
from alexnet.evaluate import make_eval_transform
from alexnet.fileio import atomic_write
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool
from alexnet.weights import hf, load
from alexnet.weights.meta import Preprocess, WeightsMeta

ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4
ONNX_FORMAT = "alexnet-onnx/1"
META_PREFIX = "alexnet."
# the layers with weights (the LRN's window sum is one too, `_FastLRN`) and ReLU, which the
# quantizer folds into the output range of the layer before it; quantizing the LRN's other
# elementwise ops adds QuantizeLinear / DequantizeLinear pairs that cost more than they save
# (paper net, batch 32, profile of benchmarks/bench_int8.py: 1.93 s per batch with every op,
# 1.16 s), and the pools gain nothing (ORT's uint8 max-pool: same CPU time, AMD EPYC, AVX2)
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu"]
CALIBRATION_IMAGES = 256  # default: ORT's static quantization guidance uses a few hundred


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


class _FastLRN(_PlainLRN):
    """The same formula (paper §3.3) in the ops onnxruntime runs fastest on the CPU, for the
    ONNX export: t = k + alpha * (window sum of squares) as one 1x1 convolution of x * x with
    a fixed band matrix (alpha where the input channel is in the output channel's window, in
    the same tower; k as its bias), which the int8 export quantizes like any convolution, and
    for beta = 3/4 t^beta = sqrt(t * sqrt(t)) instead of Pow (the dearest op of torch's
    decomposition: 132 of the LRNs' ~340 ms per paper batch of 32 in onnxruntime's profile).
    ONNX's own LRN op is slower still in onnxruntime 1.32 (883 against 572 ms for torch's
    decomposition, same profile)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, g, n = int(x.shape[1]), self.groups, self.size  # a constant in the traced graph
        i = torch.arange(c // g)
        d = i[None, :] - i[:, None]  # input channel - output channel, within a tower
        band = ((d >= -(n // 2)) & (d <= (n - 1) // 2)).float() * self.alpha
        weight = band.repeat(g, 1)[:, :, None, None]  # (C, C / towers, 1, 1)
        t = F.conv2d(x * x, weight, torch.full((c,), float(self.k)), groups=g)
        if self.beta == 0.75:
            return x / torch.sqrt(t * torch.sqrt(t))
        return x / t.pow(self.beta)


def exportable(model: nn.Module, lrn: type[_PlainLRN] = _PlainLRN) -> nn.Module:
    """A deep copy of `model` (eval mode, CPU) with every LRN replaced by `lrn`
    (`_PlainLRN`, or `_FastLRN` for onnxruntime)."""
    out = copy.deepcopy(model).cpu().eval()

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, LRN):
                new = lrn(child.size, child.alpha, child.beta, child.k, child.groups)
                setattr(module, name, new)
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
    int8: bool = False,
    calibration_data: str | os.PathLike | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
) -> dict[str, Any]:
    """Write `out` (.onnx) from weights of any format `alexnet.weights.load` reads, outputs
    "logits" and "features", the metadata in metadata_props; with `check`, verify the fp32
    graph with onnxruntime. With `int8`, the file written is the static int8 quantization
    (`quantize_int8`) calibrated on `calibration_images` training images of the packed
    dataset `calibration_data`, and the result also compares it with fp32 on those images.

    Returns {"onnx", "input_shape", "opset", "checked", "max_abs_diff", "atol", "rtol"}
    (+ "int8", "calibration_images", "int8_vs_fp32" with int8).
    """
    require_onnx(runtime=check or int8)
    if int8 and not calibration_data:
        raise UserError("--int8 needs --calibration-data DIR (a packed dataset)")
    model, meta = load(weights, "cpu")
    batches = calibration_batches(calibration_data, meta, calibration_images) if int8 else []
    net = _WithFeatures(exportable(model, _FastLRN))
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
            output_names=["logits", "features"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )

    fp32_out = out.with_name(out.name + ".fp32.tmp") if int8 else out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atomic_write(fp32_out, write)
    _set_metadata(fp32_out, onnx_metadata(meta))
    result: dict[str, Any] = {
        "onnx": str(out),
        "model": meta.model_name,
        "input_shape": ["batch", channels, size, size],
        "opset": opset,
        "checked": False,
        "atol": ONNX_ATOL,
        "rtol": ONNX_RTOL,
    }
    try:
        if check:
            result.update(check_onnx(fp32_out, model, seed=seed + 1))
        if int8:
            quantize_int8(fp32_out, out, batches)
            result.update(int8=True, calibration_images=sum(len(b) for b in batches))
            result["int8_vs_fp32"] = compare_int8(fp32_out, out, batches)
    finally:
        if int8:
            fp32_out.unlink(missing_ok=True)
    return result


def require_onnx(runtime: bool) -> None:
    """One line naming the `export` extra when onnx (writing a model) or, with `runtime`,
    onnxruntime (checking or quantizing it) is not installed."""
    need_extra("onnx", "export", "ONNX export (--onnx)")
    if runtime:
        need_extra("onnxruntime", "export", "checking or quantizing ONNX")


def compare_int8(
    fp32: str | os.PathLike, int8: str | os.PathLike, batches: list[np.ndarray]
) -> dict[str, float]:
    """Both files on the same preprocessed `batches` -> {"top1_agreement": fraction of images
    whose top class is the same, "max_abs_diff": of the logits, "logit_range": max |fp32|}."""
    a, b = OnnxModel(fp32), OnnxModel(int8)
    ref = np.concatenate([a.logits(x) for x in batches])
    got = np.concatenate([b.logits(x) for x in batches])
    return {
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "max_abs_diff": float(np.abs(ref - got).max()),
        "logit_range": float(np.abs(ref).max()),
    }


def check_onnx(
    path: str | os.PathLike, model: nn.Module, *, batch: int = 3, seed: int = 1
) -> dict[str, Any]:
    """Run the ONNX file with onnxruntime on a batch of `batch` images (a size other than the
    traced 2) and compare with `model`; UserError if beyond the tolerance."""
    need_extra("onnxruntime", "export", "checking ONNX")
    import onnxruntime as ort

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


# ------------------------------------------------------------------ metadata, int8, running
# An ONNX file of ours carries what `alexnet.weights.load` reads from our safetensors, as
# strings in the model's metadata_props (ONNX ModelProto field 14): the model config, the class
# names, the evaluation preprocessing and, for normalize "mean_image", the mean image (float32
# little-endian bytes, base64). The graph has two outputs: "logits" (batch, K) and "features"
# (batch, D), the penultimate activations (fc7 after ReLU) that `features` / `neighbors` use.


class _WithFeatures(nn.Module):
    """model(x) -> (logits, penultimate): one pass, the last Linear applied to
    `forward_penultimate` (dropout before it is the identity in eval mode)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.forward_penultimate(x)
        return self.head(feats), feats


def onnx_metadata(meta: Any, *, int8: bool = False) -> dict[str, str]:
    """`WeightsMeta` -> the metadata_props of our ONNX files (strings only)."""

    props = {
        "format": ONNX_FORMAT,
        "model_config": json.dumps(meta.model_config),
        "classes": json.dumps(list(meta.classes)),
        "preprocess": json.dumps(meta.preprocess.to_json()),
        "int8": "1" if int8 else "0",
        "source": json.dumps({"format": meta.format, "path": str(meta.path)}),
    }
    if meta.mean_image is not None:
        mean = np.ascontiguousarray(np.asarray(meta.mean_image, dtype="<f4"))
        props["mean_image_shape"] = json.dumps(list(mean.shape))
        props["mean_image"] = base64.b64encode(mean.tobytes()).decode("ascii")
    return {META_PREFIX + k: v for k, v in props.items()}


def _set_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace our metadata_props in the ONNX file `path` (rewritten atomically)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if not p.key.startswith(META_PREFIX)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))


def is_onnx_path(path: str | os.PathLike) -> bool:
    """True for a file named *.onnx (how every --weights flag tells an ONNX model apart)."""
    return str(path).lower().endswith(".onnx") and not Path(path).is_dir()


def read_onnx_meta(path: str | os.PathLike, props: dict[str, str]) -> Any:
    """metadata_props of an ONNX file -> `WeightsMeta`; UserError (one line) when they are not
    ours (a foreign model, or one exported by something else)."""

    get = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
    if get.get("format") != ONNX_FORMAT:
        raise UserError(
            f"{path}: an ONNX model without alexnet's metadata (not written by `alexnet export "
            "--onnx`): its classes and preprocessing are unknown"
        )
    try:
        mean = None
        if "mean_image" in get:
            shape = json.loads(get["mean_image_shape"])
            raw = np.frombuffer(base64.b64decode(get["mean_image"]), dtype="<f4")
            mean = torch.from_numpy(raw.reshape(shape).astype(np.float32))
        return WeightsMeta(
            model_config=json.loads(get["model_config"]),
            classes=[str(c) for c in json.loads(get["classes"])],
            preprocess=Preprocess.from_json(json.loads(get["preprocess"])),
            extra={"source": "onnx", "int8": get.get("int8") == "1"},
            mean_image=mean,
            format="onnx",
            path=str(path),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: damaged alexnet metadata in the ONNX file ({exc})") from None


class OnnxModel:
    """An ONNX file of ours run by onnxruntime on the CPU (intra-op threads = cores).

    `logits(x)` / `features(x)`: float32 (B, C, S, S), preprocessed -> (B, K) / (B, D), numpy.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        need_extra("onnxruntime", "export", "running an ONNX model")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # no warnings on stderr
        # idle pool threads sleep instead of spinning: they would take the cores from torch,
        # the data loader or another session running beside this one
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for every bad file
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc)
            raise UserError(f"{path}: not a readable ONNX model ({first})") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.meta = read_onnx_meta(path, props)
        self.path = path
        self.int8 = bool(self.meta.extra.get("int8"))
        outputs = [o.name for o in self.session.get_outputs()]
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != ["images"] or "logits" not in outputs:
            raise UserError(f"{path}: an ONNX model without input 'images' / output 'logits'")
        self.has_features = "features" in outputs

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, C, S, S) float32 -> (B, K) float32 logits."""
        return self.session.run(["logits"], {"images": np.ascontiguousarray(x, np.float32)})[0]

    def features(self, x: np.ndarray) -> np.ndarray:
        """(B, C, S, S) float32 -> (B, D) penultimate activations (fc7 after ReLU)."""
        if not self.has_features:
            raise UserError(
                f"{self.path}: exported without the 'features' output; export it again with "
                "`alexnet export --onnx`"
            )
        return self.session.run(["features"], {"images": np.ascontiguousarray(x, np.float32)})[0]


def calibration_batches(
    data: str | os.PathLike,
    meta: Any,
    count: int = CALIBRATION_IMAGES,
    *,
    batch: int = 16,
    seed: int = 0,
) -> list[np.ndarray]:
    """`count` images (fewer if the split is smaller) of the packed dataset `data`'s training
    split, a seeded sample in index order, through the model's evaluation preprocessing (1
    centre crop, `alexnet.evaluate.make_eval_transform`) -> float32 (b, C, S, S) batches."""

    ds = open_dataset(data, "train")
    n = len(ds)
    if n == 0:
        raise UserError(f"--calibration-data {data}: the training split is empty")
    pre = meta.preprocess
    h, w = ds.image_size
    if not pre.resize and int(pre.crop_size) > min(h, w):
        raise UserError(
            f"--calibration-data {data}: holds {h}x{w} images, the model needs at least "
            f"{pre.crop_size}x{pre.crop_size}"
        )
    if pre.normalize == "mean_image" and meta.mean_image is not None:
        if tuple(meta.mean_image.shape[:2]) != (h, w):
            raise UserError(
                f"--calibration-data {data}: {h}x{w} images, but the weights' mean image is "
                f"{tuple(meta.mean_image.shape[:2])}: calibrate on the data they were trained on"
            )
    take = min(int(count), n)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=take, replace=False))
    transform = make_eval_transform(pre, meta.mean_image, 1)
    out = []
    for start in range(0, take, batch):
        imgs = np.stack([np.asarray(ds.images[int(i)]) for i in rows[start : start + batch]])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
        out.append(transform(x).float().numpy())
    return out


def quantize_int8(
    fp32: str | os.PathLike, out: str | os.PathLike, batches: list[np.ndarray]
) -> None:
    """Post-training static quantization of our fp32 ONNX file `fp32` into `out` with
    onnxruntime's quantizer: QDQ format, weights int8 per output channel (symmetric),
    activations uint8 (asymmetric), ranges by MinMax over the calibration `batches`
    (float32 (b, C, S, S), preprocessed). Only the convolutions and the FC layers are
    quantized, with ReLU and the LRN's window sum (`QUANTIZED_OPS`); the rest of the LRN and
    the pools stay float between them.
    metadata_props are copied.

    Weights use 7 of their 8 bits (`reduce_range`): x86 CPUs without VNNI multiply uint8 by
    int8 with an instruction (vpmaddubsw) that saturates pairs of products at int16; full-range
    weights overflow it (measured on `small`: logits off by 1.6 of a range of 7.5, top-1 agreed
    on 94 % of the images; 7-bit: off by 0.06, 99.5 %). ONNX Runtime's quantization docs
    recommend reduce_range for such CPUs; the file must run right on every CPU."""

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"images": x}

    props = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    with tempfile.TemporaryDirectory(prefix="alexnet-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(q),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                reduce_range=True,  # 7-bit weights: see the docstring
                op_types_to_quantize=QUANTIZED_OPS,
            )
        proto = onnx.load(str(q))
    props[META_PREFIX + "int8"] = "1"
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    atomic_write(Path(out), lambda f: f.write(proto.SerializeToString()))
