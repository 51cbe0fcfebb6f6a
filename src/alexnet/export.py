"""Weights out as ONNX (fp32 or static int8, checked with onnxruntime), as a torch.export
program, or as a Hugging Face-style folder; `OnnxModel` runs our ONNX files. Every export has a
dynamic batch and the paper's LRN (§3.3) and max-pooling as plain torch ops (`plain_copy`)."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.data.packed import open_dataset
from alexnet.errors import Param, UserError, need_extra
from alexnet.evaluate import check_images_fit, make_eval_transform
from alexnet.fileio import atomic_write, atomic_write_bytes
from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool
from alexnet.weights import load
from alexnet.weights.meta import WeightsMeta

# an export must match the model: |export - model| <= PT2_ATOL + PT2_RTOL * |model| on the logits
PT2_ATOL = 1e-4
PT2_RTOL = 1e-4
PT2_META = "alexnet.json"  # extra file in the .pt2: {"model", "classes", "preprocess"}
ONNX_FORMAT = "alexnet-onnx/1"
META_PREFIX = "alexnet."
# the layers with weights (the LRN's window sum is one too, `_FastLRN`) and ReLU, folded into the
# layer before it; the rest of the LRN and the pools stay float (docs/performance.md: faster)
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu"]
CALIBRATION_IMAGES = 256  # default: ORT's static quantization guidance uses a few hundred


class _FastLRN(nn.Module):
    """The paper's LRN (§3.3), per tower, in the ops onnxruntime runs fastest on the CPU:
    t = k + alpha * (window sum of squares) as a 1x1 convolution of x * x with a fixed band
    matrix (k its bias), and for beta = 3/4 t^beta = sqrt(t * sqrt(t)), not Pow."""

    def __init__(self, size: int, alpha: float, beta: float, k: float, groups: int) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

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


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` (eval mode, CPU) with every LRN as `_FastLRN` and every `MaxPool`
    (the C kernel, a custom op) as torch's `nn.MaxPool2d`: plain torch ops only, same numbers."""
    out = copy.deepcopy(model).cpu().eval()
    for parent in list(out.modules()):
        for name, child in parent.named_children():
            if isinstance(child, LRN):
                new = _FastLRN(child.size, child.alpha, child.beta, child.k, child.groups)
                setattr(parent, name, new)
            elif isinstance(child, MaxPool):
                pool = nn.MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation)
                setattr(parent, name, pool)
    return out


def _random_images(model: nn.Module, batch: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, C, S, S) standard normal inputs for `model`."""
    size, channels = int(model.input_size), int(model.in_channels)
    return torch.randn(batch, channels, size, size, generator=gen)


def _check(
    path: Path, model: nn.Module, run: Callable, batches: tuple[int, ...], what: str
) -> float:
    """Compare `run` (the exported `path`) with `model` on random inputs at each batch size;
    UserError beyond PT2_ATOL + PT2_RTOL * |logit|. Returns the max |diff|."""
    gen = torch.Generator().manual_seed(1)  # not the traced example's seed
    worst = 0.0
    for batch in batches:
        x = _random_images(model, batch, gen)
        with torch.no_grad():
            ref, got = model(x), run(x)
        diff = (got - ref).abs()
        worst = max(worst, float(diff.max()))
        if not bool((diff <= PT2_ATOL + PT2_RTOL * ref.abs()).all()):
            raise UserError(
                f"{path}: {what} disagrees with the model at batch {batch} (max |diff| "
                f"{float(diff.max()):.3g}, tolerance {PT2_ATOL} + {PT2_RTOL} * |logit|)"
            )
    return worst


def _result(key: str, out: Path, model: nn.Module, meta: WeightsMeta, **more) -> dict[str, Any]:
    """The start of an export's result: the file, the model, its input and the tolerance."""
    size, channels = int(model.input_size), int(model.in_channels)
    shape = ["batch", channels, size, size]
    head = {key: str(out), "model": meta.model_name, "input_shape": shape, **more}
    return {**head, "checked": False, "atol": PT2_ATOL, "rtol": PT2_RTOL}


# ---- ONNX ----------------------------------------------------------------------------------
def export_onnx(
    weights: str | os.PathLike,
    out: str | os.PathLike,
    *,
    opset: int = 17,
    check: bool = True,
    int8: bool = False,
    calibration_data: str | os.PathLike | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
) -> dict[str, Any]:
    """Write `out` (.onnx, TorchScript-based exporter) from weights of any format
    `alexnet.weights.load` reads: input "images" (batch, C, S, S) float32, preprocessed as the
    weights' metadata says; outputs "logits" and "features" (fc7 after ReLU); the metadata in
    metadata_props (`onnx_metadata`). `check`: the fp32 graph in onnxruntime at batch 3 against
    the model. `int8`: the file is the static quantization (`quantize_int8`) calibrated on
    `calibration_images` training images of the packed dataset `calibration_data`.

    Returns {"onnx", "model", "input_shape", "opset", "checked", "atol", "rtol"} (+
    "check_batch", "max_abs_diff" when checked; "int8", "calibration_images", "int8_vs_fp32").
    """
    require_onnx(check or int8, int8, calibration_data)
    import onnx

    model, meta = load(weights, "cpu")
    batches = calibration_batches(calibration_data, meta, calibration_images) if int8 else []
    example = _random_images(model, 2, torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _WithFeatures(plain_copy(model)),
            (example,),
            buf,
            input_names=["images"],
            output_names=["logits", "features"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    out = Path(out)
    fp32 = out.with_name(out.name + ".fp32.tmp") if int8 else out
    _save(onnx.load_from_string(buf.getvalue()), fp32, onnx_metadata(meta))
    result = _result("onnx", out, model, meta, opset=opset)
    try:
        if check:
            diff = _check(fp32, model, OnnxModel(fp32), (3,), "onnxruntime")
            result.update(checked=True, check_batch=3, max_abs_diff=diff)
        if int8:
            quantize_int8(fp32, out, batches, onnx_metadata(meta, int8=True))
            result.update(int8=True, calibration_images=sum(len(b) for b in batches))
            result["int8_vs_fp32"] = compare_int8(fp32, out, batches)
    finally:
        if int8:
            fp32.unlink(missing_ok=True)
    return result


def require_onnx(
    runtime: bool, int8: bool = False, calibration_data: str | os.PathLike | None = None
) -> None:
    """One line, before any work: `int8` without `calibration_data`, or onnx (writing a
    model) or, with `runtime`, onnxruntime (checking or quantizing it) not installed."""
    if int8 and not calibration_data:
        raise UserError(
            Param("int8"), " needs ", Param("calibration_data"), " DIR (a packed dataset)"
        )
    need_extra("onnx", "export", "ONNX export")
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


def onnx_metadata(meta: WeightsMeta, *, int8: bool = False) -> dict[str, str]:
    """`WeightsMeta` -> the metadata_props (strings, ONNX ModelProto field 14) of our ONNX
    files: what `alexnet.weights.load` reads from our safetensors; a mean image as float32
    little-endian bytes, base64."""
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


def _save(proto: Any, path: Path, props: dict[str, str]) -> None:
    """Write the ONNX `proto` to `path` atomically, with `props` as its metadata_props."""
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    atomic_write_bytes(path, proto.SerializeToString())


def read_onnx_meta(path: str | os.PathLike, props: dict[str, str]) -> WeightsMeta:
    """metadata_props of an ONNX file -> `WeightsMeta`; UserError (one line) when they are not
    ours (a foreign model, or one exported by something else)."""
    get = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
    if get.get("format") != ONNX_FORMAT:
        raise UserError(
            f"{path}: an ONNX model without alexnet's metadata (not written by alexnet's ONNX "
            "export): its classes and preprocessing are unknown"
        )
    try:
        mean = None
        if "mean_image" in get:
            shape = json.loads(get["mean_image_shape"])
            raw = np.frombuffer(base64.b64decode(get["mean_image"]), dtype="<f4")
            mean = torch.from_numpy(raw.reshape(shape).astype(np.float32))
        stored = [json.loads(get[k]) for k in ("model_config", "classes", "preprocess")]
        extra = {"source": "onnx", "int8": get.get("int8") == "1"}
        return WeightsMeta.parse(*stored, extra, mean_image=mean, format="onnx", path=str(path))
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: damaged alexnet metadata in the ONNX file ({exc})") from None


class OnnxModel:
    """An ONNX file of ours run by onnxruntime on the CPU (intra-op threads = cores): `logits(x)`
    float32 numpy (B, C, S, S) -> (B, K); and, as a torch model, `model(x)` -> logits and
    `forward_penultimate(x)` -> (B, D) of torch tensors (x preprocessed)."""

    def __init__(self, path: str | os.PathLike) -> None:
        need_extra("onnxruntime", "export", "running an ONNX model")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
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
        self.meta = read_onnx_meta(path, dict(self.session.get_modelmeta().custom_metadata_map))
        self.path = path
        self.int8 = bool(self.meta.extra.get("int8"))
        outputs = [o.name for o in self.session.get_outputs()]
        if [i.name for i in self.session.get_inputs()] != ["images"] or "logits" not in outputs:
            raise UserError(f"{path}: an ONNX model without input 'images' / output 'logits'")
        self.has_features = "features" in outputs

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(B, C, S, S) float32 -> (B, K) float32 logits."""
        return self.session.run(["logits"], {"images": np.ascontiguousarray(x, np.float32)})[0]

    def __call__(self, x: torch.Tensor, output: str = "logits") -> torch.Tensor:
        images = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(self.session.run([output], {"images": images})[0])

    def forward_penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> (B, D) penultimate activations (fc7 after ReLU)."""
        if not self.has_features:
            raise UserError(f"{self.path}: exported without the 'features' output; export it again")
        return self(x, "features")


def calibration_batches(
    data: str | os.PathLike,
    meta: WeightsMeta,
    count: int = CALIBRATION_IMAGES,
) -> list[np.ndarray]:
    """`count` images (fewer if the split is smaller) of the packed dataset `data`'s training
    split, a seeded sample in index order, through the model's evaluation preprocessing (1
    centre crop) -> float32 (b, C, S, S) batches of 16."""
    ds = open_dataset(data, "train")
    n = len(ds)
    if n == 0:
        raise UserError(Param("calibration_data"), f" {data}: the training split is empty")
    check_images_fit(meta.path, meta, ds.image_size, data)
    take = min(int(count), n)
    rows = np.sort(np.random.default_rng(0).choice(n, size=take, replace=False))
    transform = make_eval_transform(meta.preprocess, meta.mean_image, 1)
    out = []
    for start in range(0, take, 16):
        imgs = np.stack([np.asarray(ds.images[int(i)]) for i in rows[start : start + 16]])
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
        out.append(transform(x).float().numpy())
    return out


def quantize_int8(
    fp32: str | os.PathLike, out: str | os.PathLike, batches: list[np.ndarray], props: dict
) -> None:
    """Post-training static quantization of our fp32 ONNX file into `out` (metadata_props
    `props`), onnxruntime's quantizer: QDQ, weights int8 per output channel (symmetric),
    activations uint8 (asymmetric), MinMax ranges over the preprocessed calibration `batches`
    (b, C, S, S); only `QUANTIZED_OPS`. Weights use 7 of their 8 bits (`reduce_range`): x86 CPUs
    without VNNI saturate pairs of uint8 x int8 products at int16, and the file must run right
    on every CPU."""
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
            self.it = iter([{"images": x} for x in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    with tempfile.TemporaryDirectory(prefix="alexnet-int8-") as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
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
                reduce_range=True,
                op_types_to_quantize=QUANTIZED_OPS,
            )
        _save(onnx.load(str(q)), Path(out), props)


# ---- torch.export ----------------------------------------------------------------------------
def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """`torch.export.export` of `plain_copy(model)`, input (batch, C, S, S), dynamic batch."""
    example = _random_images(model, 2, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    return torch.export.export(plain_copy(model), (example,), dynamic_shapes=({0: batch},))


def export_torch(
    weights: str | os.PathLike, out: str | os.PathLike, *, check: bool = True
) -> dict[str, Any]:
    """Write `out` (.pt2, `torch.export.save`) from weights of any format; it loads with
    `torch.export.load(out).module()` without this package, and carries the classes and
    preprocessing as the extra file `PT2_META`. `check`: load it back and compare with the
    model at batch sizes 1 and 3.

    Returns {"pt2", "model", "input_shape", "lrn", "checked", "atol", "rtol"} (+
    "check_batches", "max_abs_diff" when checked).
    """
    model, meta = load(weights, "cpu")
    program = export_program(model)
    info = {"model": meta.model_config, "classes": meta.classes}
    extra = {PT2_META: json.dumps({**info, "preprocess": meta.preprocess.to_json()})}
    out = Path(out)
    atomic_write(out, lambda f: torch.export.save(program, f, extra_files=extra))
    has_lrn = any(isinstance(m, LRN) for m in model.modules())
    lrn = "decomposed into torch ops" if has_lrn else "none"
    result = _result("pt2", out, model, meta, lrn=lrn)
    if check:
        run = torch.export.load(str(out)).module()
        diff = _check(out, model, run, (1, 3), "the exported program")
        result.update(checked=True, check_batches=[1, 3], max_abs_diff=diff)
    return result
