"""Test helpers: write Caffe `.caffemodel` / `.binaryproto` files with protobuf (no Caffe), and
Caffe's layers in float64 numpy (the independent reference for the converted model).

The message definitions here are this file's own transcription of caffe.proto's field numbers,
separate from the package's reader.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_U32, _I32, _I64, _FLT, _STR = (
    _F.TYPE_UINT32,
    _F.TYPE_INT32,
    _F.TYPE_INT64,
    _F.TYPE_FLOAT,
    _F.TYPE_STRING,
)
_SPEC = {
    "BlobShape": [("dim", 1, _I64, True)],
    "BlobProto": [("shape", 7, "BlobShape", False), ("num", 1, _I32, False),
                  ("channels", 2, _I32, False), ("height", 3, _I32, False),
                  ("width", 4, _I32, False)],
    "Conv": [("num_output", 1, _U32, False), ("pad", 3, _U32, True),
             ("kernel_size", 4, _U32, True), ("stride", 6, _U32, True), ("group", 5, _U32, False)],
    "LRN": [("local_size", 1, _U32, False), ("alpha", 2, _FLT, False), ("beta", 3, _FLT, False),
            ("k", 5, _FLT, False)],
    "Pool": [("pool", 1, _I32, False), ("kernel_size", 2, _U32, False), ("stride", 3, _U32, False)],
    "IP": [("num_output", 1, _U32, False)],
    "Layer": [("name", 1, _STR, False), ("type", 2, _STR, False), ("bottom", 3, _STR, True),
              ("top", 4, _STR, True), ("blobs", 7, "BlobProto", True), ("conv", 106, "Conv", False),
              ("ip", 117, "IP", False), ("lrn", 118, "LRN", False), ("pool", 121, "Pool", False)],
    "V1Layer": [("bottom", 2, _STR, True), ("top", 3, _STR, True), ("name", 4, _STR, False),
                ("type", 5, _I32, False), ("blobs", 6, "BlobProto", True),
                ("conv", 10, "Conv", False), ("ip", 17, "IP", False), ("lrn", 18, "LRN", False),
                ("pool", 19, "Pool", False)],
    "Net": [("name", 1, _STR, False), ("layer", 100, "Layer", True),
            ("layers", 2, "V1Layer", True)],
}  # fmt: skip
V1_TYPE = {"Convolution": 4, "ReLU": 18, "LRN": 15, "Pooling": 17, "InnerProduct": 14,
           "Dropout": 6, "Softmax": 20}  # fmt: skip


def _classes() -> dict:
    fd = descriptor_pb2.FileDescriptorProto(name="test_caffe.proto", package="t", syntax="proto2")
    for name, fields in _SPEC.items():
        m = fd.message_type.add(name=name)
        for fname, num, ftype, rep in fields:
            f = m.field.add(name=fname, number=num)
            f.label = _F.LABEL_REPEATED if rep else _F.LABEL_OPTIONAL
            if isinstance(ftype, str):
                f.type, f.type_name = _F.TYPE_MESSAGE, f".t.{ftype}"
            else:
                f.type = ftype
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t.{n}")) for n in _SPEC}


M = _classes()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fill_blob(blob, array: np.ndarray, old_dims: bool) -> None:
    """Shape as BlobShape or the old num/channels/height/width (FC as (1, 1, out, in)); data
    (field 5, packed floats) merged as encoded bytes: fast for 37 M values."""
    if old_dims:
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    blob.MergeFromString(b"\x2a" + _varint(len(data)) + data)


# bvlc_alexnet: (name, type, params); params for conv (out, kernel, stride, pad, group)
NET = [
    ("conv1", "Convolution", (96, 11, 4, 0, 1)), ("relu1", "ReLU", None), ("norm1", "LRN", None),
    ("pool1", "Pooling", None), ("conv2", "Convolution", (256, 5, 1, 2, 2)),
    ("relu2", "ReLU", None), ("norm2", "LRN", None), ("pool2", "Pooling", None),
    ("conv3", "Convolution", (384, 3, 1, 1, 1)), ("relu3", "ReLU", None),
    ("conv4", "Convolution", (384, 3, 1, 1, 2)), ("relu4", "ReLU", None),
    ("conv5", "Convolution", (256, 3, 1, 1, 2)), ("relu5", "ReLU", None),
    ("pool5", "Pooling", None), ("fc6", "InnerProduct", 4096), ("relu6", "ReLU", None),
    ("drop6", "Dropout", None), ("fc7", "InnerProduct", 4096), ("relu7", "ReLU", None),
    ("drop7", "Dropout", None), ("fc8", "InnerProduct", 1000), ("prob", "Softmax", None),
]  # fmt: skip


def random_blobs(seed: int = 0, classes: int = 1000) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random (weights, bias) of bvlc_alexnet's real shapes, scaled so activations stay O(10..100)
    and Caffe's LRN (k=1, alpha/5 = 2e-5) changes them noticeably."""
    rng = np.random.default_rng(seed)
    blobs, in_ch = {}, 3
    for name, kind, p in NET:
        if kind == "Convolution":
            out, k, _, _, g = p
            fan = in_ch // g * k * k
            w = rng.standard_normal((out, in_ch // g, k, k), dtype=np.float32) * (2.0 / fan) ** 0.5
            blobs[name] = (w, rng.standard_normal(out, dtype=np.float32))
            in_ch = out
        elif kind == "InnerProduct":
            fan = in_ch * 36 if name == "fc6" else in_ch
            out, gain = (p, 2.0) if name != "fc8" else (classes, 5e-4)  # fc8: logits O(1)
            w = rng.standard_normal((out, fan), dtype=np.float32) * (gain / fan) ** 0.5
            blobs[name] = (w, rng.standard_normal(out, dtype=np.float32) * 0.1)
            in_ch = out
    return blobs


def write_caffemodel(path: Path, blobs: dict, layout: str, lrn_k: float = 1.0) -> Path:
    """bvlc_alexnet with `blobs` in the `layer` (field 100, BlobShape) or V1 `layers` (field 2,
    old 4-D dims) layout."""
    net = M["Net"](name="AlexNet")
    bottom = "data"
    for name, kind, p in NET:
        if layout == "layer":
            lp = net.layer.add(name=name, type=kind)
        else:
            lp = net.layers.add(name=name, type=V1_TYPE[kind])
        lp.bottom.append(bottom)
        lp.top.append(name)
        bottom = name
        if kind == "Convolution":
            out, k, s, pad, g = p
            lp.conv.num_output, lp.conv.group = out, g
            lp.conv.kernel_size.append(k)
            lp.conv.stride.append(s)
            if pad:
                lp.conv.pad.append(pad)
        elif kind == "InnerProduct":
            lp.ip.num_output = blobs[name][1].size
        elif kind == "LRN":
            lp.lrn.local_size, lp.lrn.alpha, lp.lrn.beta, lp.lrn.k = 5, 1e-4, 0.75, lrn_k
        elif kind == "Pooling":
            lp.pool.pool, lp.pool.kernel_size, lp.pool.stride = 0, 3, 2
        for array in blobs.get(name, ()):
            fill_blob(lp.blobs.add(), array, old_dims=layout != "layer")
    path.write_bytes(net.SerializeToString())
    return path


def write_mean(path: Path, mean_bgr: np.ndarray) -> Path:
    """A `.binaryproto` BlobProto (1, 3, H, W), old 4-D dims as Caffe's imagenet_mean."""
    blob = M["BlobProto"]()
    fill_blob(blob, mean_bgr[None], old_dims=True)
    path.write_bytes(blob.SerializeToString())
    return path


# ------------------------------------------------------------------ Caffe's layers, float64
def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, group: int):
    """Caffe's convolution (cross-correlation) with groups: x (C, H, W) -> (O, H', W')."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    c_in, o = x.shape[0] // group, w.shape[0] // group
    h, wd = win.shape[1:3]
    outs = []
    for g in range(group):  # im2col: (H'W', C k k) @ (C k k, O)
        cols = win[g * c_in : (g + 1) * c_in].transpose(1, 2, 0, 3, 4).reshape(h * wd, -1)
        outs.append((cols @ w[g * o : (g + 1) * o].reshape(o, -1).T).T.reshape(o, h, wd))
    return np.concatenate(outs) + b[:, None, None]


def lrn(a: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Caffe's LRN across channels: b_i = a_i / (k + alpha/n * sum_{window} a_j^2)^beta, the
    window of n channels centred on i over ALL channels of the blob, zero beyond the ends."""
    sq = np.pad(a * a, ((size // 2, size // 2), (0, 0), (0, 0)))
    s = sum(sq[j : j + a.shape[0]] for j in range(size))
    return a / (k + alpha / size * s) ** beta


def max_pool(x: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    """Caffe's max-pooling: output size ceil((H - kernel) / stride) + 1, windows clipped."""
    h = x.shape[1]
    out = math.ceil((h - kernel) / stride) + 1
    res = np.empty((x.shape[0], out, out))
    for i in range(out):
        for j in range(out):
            r, c = i * stride, j * stride
            res[:, i, j] = x[:, r : min(r + kernel, h), c : min(c + kernel, h)].max(axis=(1, 2))
    return res


def reference_forward(image_bgr: np.ndarray, blobs: dict) -> dict[str, np.ndarray]:
    """bvlc_alexnet on one (3, 227, 227) BGR mean-subtracted input, float64 -> every layer's
    output by name ("relu7": fc7 after ReLU (4096,), "prob": the softmax (K,), ...)."""
    x = image_bgr.astype(np.float64)
    outs = {}
    for name, kind, p in NET:
        if kind == "Convolution":
            w, b = (t.astype(np.float64) for t in blobs[name])
            x = conv(x, w, b, p[2], p[3], p[4])
        elif kind == "ReLU":
            x = np.maximum(x, 0)
        elif kind == "LRN":
            x = lrn(x)
        elif kind == "Pooling":
            x = max_pool(x)
        elif kind == "InnerProduct":
            w, b = (t.astype(np.float64) for t in blobs[name])
            x = w @ x.reshape(-1) + b
        elif kind == "Softmax":
            e = np.exp(x - x.max())
            x = e / e.sum()
        outs[name] = x
    return outs
