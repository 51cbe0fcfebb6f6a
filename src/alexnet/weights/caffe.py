"""Caffe's `bvlc_alexnet` (the paper's architecture, §3, Fig. 2: conv2/4/5 in two groups, the
towers of §3.2; 42.9 / 19.8 % top-1 / top-5 error, centre crop) -> the `paper` model at 227 px.

Caffe vs the paper: LRN k=1 and alpha/n (`lrn_k=1`, `lrn_alpha_convention="per_size"`), across
ALL channels of the blob where each of the paper's GPUs normalized its own maps
(`lrn_scope="all"`: the same function, with the paper's 60,965,224 parameters); input BGR
0..255 minus the mean (conv1 is flipped to RGB here, the metadata says "0..255 minus the RGB
mean"); fc6 reads pool5 as C x H x W, torch.flatten's order.

Caffe's files are read with protobuf messages built at run time from caffe.proto's field
numbers (no protoc, no Caffe); fields not listed are skipped.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from alexnet.errors import UserError
from alexnet.models.registry import get_model
from alexnet.weights.files import class_names
from alexnet.weights.safetensors_io import PAPER_KEY, save_safetensors

_F = descriptor_pb2.FieldDescriptorProto
_T = {"u32": _F.TYPE_UINT32, "i32": _F.TYPE_INT32, "i64": _F.TYPE_INT64, "f": _F.TYPE_FLOAT,
      "d": _F.TYPE_DOUBLE, "s": _F.TYPE_STRING, "b": _F.TYPE_BOOL}  # fmt: skip
# message -> (field name, number, type, repeated); a type starting with "." is a message or
# enum of this file. Numbers as in caffe.proto.
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "BlobShape": [("dim", 1, "i64", True)],
    "BlobProto": [
        ("shape", 7, ".caffe.BlobShape", False), ("data", 5, "f", True),
        ("double_data", 8, "d", True), ("num", 1, "i32", False),
        ("channels", 2, "i32", False), ("height", 3, "i32", False), ("width", 4, "i32", False),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, "u32", False), ("pad", 3, "u32", True), ("kernel_size", 4, "u32", True),
        ("stride", 6, "u32", True), ("group", 5, "u32", False), ("pad_h", 9, "u32", False),
        ("kernel_h", 11, "u32", False), ("stride_h", 13, "u32", False),
    ],
    "LRNParameter": [
        ("local_size", 1, "u32", False), ("alpha", 2, "f", False), ("beta", 3, "f", False),
        ("norm_region", 4, ".caffe.LRNParameter.NormRegion", False), ("k", 5, "f", False),
    ],
    "PoolingParameter": [
        ("pool", 1, ".caffe.PoolingParameter.PoolMethod", False),
        ("kernel_size", 2, "u32", False), ("stride", 3, "u32", False), ("pad", 4, "u32", False),
        ("kernel_h", 5, "u32", False), ("stride_h", 7, "u32", False), ("pad_h", 9, "u32", False),
    ],
    "InnerProductParameter": [("num_output", 1, "u32", False)],
    "LayerParameter": [
        ("name", 1, "s", False), ("type", 2, "s", False), ("blobs", 7, ".caffe.BlobProto", True),
        ("convolution_param", 106, ".caffe.ConvolutionParameter", False),
        ("inner_product_param", 117, ".caffe.InnerProductParameter", False),
        ("lrn_param", 118, ".caffe.LRNParameter", False),
        ("pooling_param", 121, ".caffe.PoolingParameter", False),
    ],
    "V1LayerParameter": [
        ("name", 4, "s", False), ("type", 5, ".caffe.V1LayerParameter.LayerType", False),
        ("blobs", 6, ".caffe.BlobProto", True),
        ("convolution_param", 10, ".caffe.ConvolutionParameter", False),
        ("inner_product_param", 17, ".caffe.InnerProductParameter", False),
        ("lrn_param", 18, ".caffe.LRNParameter", False),
        ("pooling_param", 19, ".caffe.PoolingParameter", False),
    ],
    "NetParameter": [
        ("layer", 100, ".caffe.LayerParameter", True),
        ("layers", 2, ".caffe.V1LayerParameter", True),
    ],
}  # fmt: skip
# V1LayerParameter.LayerType, all of caffe.proto's values (text files name them), and the new
# layer type strings of those AlexNet uses.
V1_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24, "THRESHOLD": 31,
}  # fmt: skip
# enums: message -> (enum name, {label: number})
_ENUMS = {
    "V1LayerParameter": ("LayerType", V1_TYPES),
    "PoolingParameter": ("PoolMethod", {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}),
    "LRNParameter": ("NormRegion", {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}),
}
# the layer types read: type -> (letter in SEQUENCE, V1 LayerType label, parameters field)
_KINDS = {
    "Convolution": ("C", "CONVOLUTION", "convolution_param"),
    "LRN": ("N", "LRN", "lrn_param"),
    "Pooling": ("P", "POOLING", "pooling_param"),
    "InnerProduct": ("F", "INNER_PRODUCT", "inner_product_param"),
}
_V1_KINDS = {label: kind for kind, (_, label, _) in _KINDS.items()}
# bvlc_alexnet's layers (C conv, N LRN, P max-pool, F inner product; CaffeNet's pool-first refused)
SEQUENCE = "CNPCNPCCCPFFF"
# ... and their settings as `_settings` spells them (fc8's width is the number of classes)
_LRN = "LRN local_size=5 alpha=0.0001 beta=0.75 across channels"
_POOL = "MAX pooling kernel=3 stride=2 pad=0"
BVLC = [
    "convolution num_output=96 kernel=11 stride=4 pad=0 group=1", _LRN, _POOL,
    "convolution num_output=256 kernel=5 stride=1 pad=2 group=2", _LRN, _POOL,
    "convolution num_output=384 kernel=3 stride=1 pad=1 group=1",
    "convolution num_output=384 kernel=3 stride=1 pad=1 group=2",
    "convolution num_output=256 kernel=3 stride=1 pad=1 group=2", _POOL,
    "inner product num_output=4096", "inner product num_output=4096", None,
]  # fmt: skip
MEAN_BGR = (104.0, 117.0, 123.0)  # Caffe's per-channel ImageNet mean, BGR order, 0..255
PUBLISHED = {"top1_err": 42.9, "top5_err": 19.8, "crops": 1, "model": "bvlc_alexnet"}
MODEL_OPTIONS: dict[str, Any] = dict(
    input_size=227,
    towers=2,
    lrn_k=1.0,
    lrn_alpha_convention="per_size",
    lrn_scope="all",
    init="caffe",
)


@functools.cache
def messages() -> dict[str, Any]:
    """Message classes by short name (BlobProto, NetParameter, ...), built once."""
    fd = descriptor_pb2.FileDescriptorProto(name="alexnet_caffe.proto", package="caffe")
    fd.syntax = "proto2"
    for name, fields in _MESSAGES.items():
        msg = fd.message_type.add(name=name)
        for fname, number, ftype, repeated in fields:
            f = msg.field.add(name=fname, number=number)
            f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if ftype.startswith("."):
                enum = ftype.rsplit(".", 1)[-1] in {e for e, _ in _ENUMS.values()}
                f.type = _F.TYPE_ENUM if enum else _F.TYPE_MESSAGE
                f.type_name = ftype
            else:
                f.type = _T[ftype]
                if repeated and ftype in ("f", "d", "i64"):
                    f.options.packed = True
        if name in _ENUMS:
            enum_name, values = _ENUMS[name]
            enum = msg.enum_type.add(name=enum_name)
            for label, number in values.items():
                enum.value.add(name=label, number=number)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
        for name in _MESSAGES
    }


class CaffeLayer(NamedTuple):
    """One layer of either layout: name, type ("Convolution", ...), its params, its blobs."""

    name: str
    type: str
    params: Any  # the *_param message of its type, or None
    blobs: list[np.ndarray]


def _parse(path: str | os.PathLike, message: str, text: bool = False) -> Any:
    """A binary (`text`: text format) protobuf file -> the parsed `message`; UserError naming
    the file."""
    parsed = messages()[message]()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if text:
            text_format.Parse(data.decode("utf-8"), parsed, allow_unknown_field=True)
        else:
            parsed.ParseFromString(data)
    except (DecodeError, text_format.ParseError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: not a Caffe {message} ({str(exc)[:160]})") from None
    return parsed


def _blob_array(blob: Any, where: str) -> np.ndarray:
    """BlobProto -> float32 array of its shape (BlobShape, or the old num/channels/h/w)."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    data = blob.data if len(blob.data) else blob.double_data
    values = np.array(data, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise UserError(f"{where}: blob of shape {shape} holds {values.size} values")
    return values.reshape(shape)


def read_layers(path: str | os.PathLike, text: bool = False) -> list[CaffeLayer]:
    """A binary `.caffemodel` (`text`: a `deploy.prototxt`) -> its layers in file order, from
    either layout (`layer`, the current one, else V1 `layers`)."""
    net = _parse(path, "NetParameter", text)
    if len(net.layer):
        raw = [(lp, lp.type) for lp in net.layer]
    else:
        raw = [(lp, lp.LayerType.Name(lp.type)) for lp in net.layers]
        raw = [(lp, _V1_KINDS.get(label, label)) for lp, label in raw]
    if not raw:
        raise UserError(f"{path}: no Caffe layers (no 'layer' or 'layers')")
    out = []
    for lp, kind in raw:
        params = getattr(lp, _KINDS[kind][2]) if kind in _KINDS else None
        blobs = [_blob_array(b, f"{path}: layer {lp.name!r}") for b in lp.blobs]
        out.append(CaffeLayer(lp.name, kind, params, blobs))
    return out


def _first(values: Any, default: int) -> int:
    return int(values[0]) if len(values) else default


def _settings(layer: CaffeLayer) -> str:
    """A conv, LRN, pooling or inner product layer's settings, as `BVLC` spells them (unset
    fields: caffe.proto's defaults)."""
    p = layer.params
    if layer.type == "Convolution":
        kernel = p.kernel_h or _first(p.kernel_size, 0)
        stride = p.stride_h or _first(p.stride, 1)
        pad = p.pad_h or _first(p.pad, 0)
        return (
            f"convolution num_output={p.num_output} kernel={kernel} stride={stride} pad={pad} "
            f"group={p.group or 1}"
        )
    if layer.type == "LRN":
        alpha = p.alpha if p.HasField("alpha") else 1.0
        beta = p.beta if p.HasField("beta") else 0.75
        region = "within" if p.norm_region else "across"
        size = p.local_size or 5
        return f"LRN local_size={size} alpha={alpha:.4g} beta={beta:.4g} {region} channels"
    if layer.type == "Pooling":
        kernel, stride = p.kernel_h or p.kernel_size, p.stride_h or p.stride or 1
        method = ("MAX", "AVE", "STOCHASTIC")[p.pool]
        return f"{method} pooling kernel={kernel} stride={stride} pad={p.pad_h or p.pad}"
    return f"inner product num_output={p.num_output}"


def check_structure(net: list[CaffeLayer], where: str) -> dict[str, Any]:
    """UserError naming the first layer that is not bvlc_alexnet's; else {"lrn_k",
    "num_classes", "names": the layer names of conv1..conv5, fc6..fc8}."""
    core = [layer for layer in net if layer.type in _KINDS]
    found = "".join(_KINDS[layer.type][0] for layer in core)
    if found != SEQUENCE:
        hint = " (CaffeNet's pool-before-LRN order?)" if found.startswith("CPN") else ""
        raise UserError(
            f"{where}: layers {found} (C conv, N LRN, P pool, F inner product) are not "
            f"bvlc_alexnet's {SEQUENCE}{hint}"
        )
    for layer, want in zip(core, BVLC):
        got = _settings(layer)
        if want is not None and got != want:
            raise UserError(f"{where}: layer {layer.name!r}: {got}; bvlc_alexnet has {want}")
    lrns = [layer.params for layer in core if layer.type == "LRN"]
    ks = {float(p.k) if p.HasField("k") else 1.0 for p in lrns}
    if len(ks) != 1:
        raise UserError(f"{where}: the two LRN layers have different k {sorted(ks)}")
    weighted = [layer for layer in core if layer.type in ("Convolution", "InnerProduct")]
    return {
        "lrn_k": ks.pop(),
        "num_classes": int(weighted[-1].params.num_output),
        "names": [layer.name for layer in weighted],
    }


def _fit(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A blob in `shape` (old files store FC weights as (1, 1, out, in), biases (1, 1, 1, out))."""

    def squeeze(s: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(d for d in s if d != 1)

    if array.shape != shape and squeeze(array.shape) != squeeze(shape):
        raise UserError(f"{where}: blob shape {array.shape}, expected {shape}")
    return array.reshape(shape)


def state_dict(
    blobs: dict[str, list[np.ndarray]],
    names: list[str],
    own: Mapping[str, torch.Tensor],
    where: str,
) -> dict[str, torch.Tensor]:
    """Blobs of the layers `names` (conv1..fc8) -> tensors of the shapes of `own`, the `paper`
    model's state_dict (towers=2: its grouped convs hold Caffe's groups as they are)."""
    state: dict[str, torch.Tensor] = {}
    for key, name in zip(PAPER_KEY.values(), names):
        if len(blobs[name]) < 2:
            raise UserError(f"{where}: layer {name!r} needs 2 blobs (weights, bias)")
        for kind, blob in zip(("weight", "bias"), blobs[name]):
            shape = tuple(own[f"{key}.{kind}"].shape)
            array = _fit(blob, shape, f"{where}: layer {name!r} {kind}")
            if key.endswith("conv1") and kind == "weight":
                array = array[:, ::-1]  # input channels BGR -> RGB
            state[f"{key}.{kind}"] = torch.from_numpy(np.ascontiguousarray(array))
    return state


def caffe_preprocess(mean: np.ndarray | None) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Caffe's input (0..255 minus the mean: `mean` (3, H, W) BGR, else 104, 117, 123) ->
    (preprocess, (H, W, 3) RGB mean image in [0, 1] or None): 256 px, centre crop 227 (§2)."""
    base = dict(image_size=256, resize_rule="paper", crop_size=227, resize=None, out_channels=3)
    if mean is None:
        rgb = [c / 255.0 for c in MEAN_BGR[::-1]]
        std = [1.0 / 255.0] * 3  # (x/255 - m/255) / (1/255) = x - m, x in 0..255
        return {**base, "normalize": "channel", "mean": rgb, "std": std}, None
    rgb = np.ascontiguousarray(mean[::-1].transpose(1, 2, 0)) / 255.0  # (H, W, 3) RGB
    pre = {**base, "image_size": int(rgb.shape[0]), "normalize": "mean_image"}
    return {**pre, "mean": None, "std": None}, torch.from_numpy(rgb)


def load_mean(path: str | os.PathLike) -> np.ndarray:
    """`imagenet_mean.binaryproto` (a BlobProto (1, 3, S, S)) -> (3, S, S) float32 BGR 0..255."""
    mean = _blob_array(_parse(path, "BlobProto"), str(path))
    mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean
    if mean.ndim != 3 or mean.shape[0] != 3 or mean.shape[1] != mean.shape[2]:
        raise UserError(f"{path}: mean blob of shape {mean.shape}, expected (1, 3, S, S)")
    if mean.shape[1] < 227:
        raise UserError(f"{path}: mean image {mean.shape[1]}px is smaller than the 227 crop")
    return mean


def read_synset_words(path: str | os.PathLike, count: int) -> list[str]:
    """Caffe's `synset_words.txt` (lines "n01440764 tench, Tinca tinca", index order) -> the
    words, as `alexnet prepare` names ImageNet's classes."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read class names ({exc})") from None
    if len(lines) != count:
        raise UserError(f"{path}: {len(lines)} class lines, the model has {count} classes")
    return [ln.split(" ", 1)[1] if " " in ln else ln for ln in lines]


def convert(
    caffemodel: str | os.PathLike,
    out: str | os.PathLike,
    *,
    deploy: str | os.PathLike | None = None,
    mean: str | os.PathLike | None = None,
    classes: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Convert a `bvlc_alexnet.caffemodel` (either layout; the layers of `deploy` when given)
    to an alexnet weights file; class names from `classes` or torchvision's. Returns the
    metadata written."""
    model_layers = read_layers(caffemodel)
    arch = model_layers if deploy is None else read_layers(deploy, text=True)
    arch_where = str(deploy or caffemodel)
    info = check_structure(arch, arch_where)
    blobs = {layer.name: layer.blobs for layer in model_layers if layer.blobs}
    missing = [n for n in info["names"] if n not in blobs]
    if missing:
        raise UserError(f"{caffemodel}: no weights for layers {missing} of {arch_where}")
    options = {**MODEL_OPTIONS, "lrn_k": info["lrn_k"], "num_classes": info["num_classes"]}
    model = get_model("paper", **options)
    state = state_dict(blobs, info["names"], model.state_dict(), str(caffemodel))
    model.load_state_dict(state, strict=True)
    preprocess, mean_image = caffe_preprocess(None if mean is None else load_mean(mean))
    k = info["num_classes"]
    names = class_names(k) if classes is None else read_synset_words(classes, k)
    extra: dict[str, Any] = {
        "source": "caffe",
        "file": Path(caffemodel).name,
        "input": "Caffe's: 0..255 minus the mean (conv1 flipped from BGR to RGB)",
    }
    if k == 1000:
        extra["published"] = dict(PUBLISHED)
    save_safetensors(
        out,
        model.state_dict(),
        model_config=model.config,
        classes=names,
        preprocess=preprocess,
        mean_image=mean_image,
        extra=extra,
    )
    return {"model": model.config, "classes": names, "preprocess": preprocess, "extra": extra}
