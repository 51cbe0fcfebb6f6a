"""Caffe's protobuf messages that AlexNet needs, built at run time from caffe.proto's field
numbers (no protoc, no Caffe); fields not listed are skipped when parsing."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from alexnet.errors import UserError

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
_V1_NAMES = {"CONVOLUTION": "Convolution", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
             "POOLING": "Pooling", "RELU": "ReLU", "DROPOUT": "Dropout",
             "SOFTMAX": "Softmax"}  # fmt: skip


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


@dataclass
class CaffeLayer:
    """One layer of either layout: name, type ("Convolution", ...), its params, its blobs."""

    name: str
    type: str
    params: Any = None  # the *_param message of its type, or None
    blobs: list[np.ndarray] = field(default_factory=list)


def _read(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def _parse(path: str | os.PathLike, message: str) -> Any:
    """A binary protobuf file -> the parsed `message`; UserError naming the file."""
    parsed = messages()[message]()
    try:
        parsed.ParseFromString(_read(path))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: not a Caffe {message} ({exc})") from None
    return parsed


def read_net(path: str | os.PathLike) -> Any:
    """A binary `.caffemodel` (NetParameter) -> the parsed message; UserError naming the file."""
    net = _parse(path, "NetParameter")
    if not len(net.layer) and not len(net.layers):
        raise UserError(f"{path}: a protobuf file without Caffe layers (no 'layer' or 'layers')")
    return net


def read_net_text(path: str | os.PathLike) -> Any:
    """A text `deploy.prototxt` -> NetParameter; fields this reader does not know are skipped."""
    net = messages()["NetParameter"]()
    try:
        text = _read(path).decode("utf-8")
        text_format.Parse(text, net, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a Caffe text prototxt ({str(exc)[:160]})") from None
    if not len(net.layer) and not len(net.layers):
        raise UserError(f"{path}: no 'layer' or 'layers' in this prototxt")
    return net


def blob_array(blob: Any, where: str) -> np.ndarray:
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


def read_blob(path: str | os.PathLike) -> np.ndarray:
    """A `.binaryproto` BlobProto (e.g. Caffe's `imagenet_mean.binaryproto`) -> array."""
    blob = _parse(path, "BlobProto")
    if not len(blob.data) and not len(blob.double_data):
        raise UserError(f"{path}: a BlobProto without data")
    return blob_array(blob, str(path))


_PARAMS = {"Convolution": "convolution_param", "InnerProduct": "inner_product_param",
           "LRN": "lrn_param", "Pooling": "pooling_param"}  # fmt: skip


def layers(net: Any, where: str = "net") -> list[CaffeLayer]:
    """Both layouts (`layer`, the current one, else V1 `layers`) -> CaffeLayers in file order."""
    out: list[CaffeLayer] = []
    if len(net.layer):
        raw = [(lp, lp.type) for lp in net.layer]
    else:
        enum = net.DESCRIPTOR.fields_by_name["layers"].message_type.enum_types_by_name["LayerType"]
        raw = [(lp, enum.values_by_number[lp.type].name) for lp in net.layers]
        raw = [(lp, _V1_NAMES.get(t, t)) for lp, t in raw]
    for lp, kind in raw:
        params = getattr(lp, _PARAMS[kind]) if kind in _PARAMS else None
        blobs = [blob_array(b, f"{where}: layer {lp.name!r}") for b in lp.blobs]
        out.append(CaffeLayer(lp.name, kind, params, blobs))
    return out
