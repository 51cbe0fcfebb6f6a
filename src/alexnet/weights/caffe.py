"""Caffe's `bvlc_alexnet` (the paper's architecture, §3, Fig. 2: conv2/4/5 in two groups, the
towers of §3.2; 42.9 / 19.8 % top-1 / top-5 error, centre crop) -> the `paper` model at 227 px.

Caffe vs the paper: LRN k=1 and alpha/n (`lrn_k=1`, `lrn_alpha_convention="per_size"`), across
ALL channels of the blob where each of the paper's GPUs normalized its own maps
(`lrn_scope="all"`: the same function, with the paper's 60,965,224 parameters); input BGR
0..255 minus the mean (conv1 is flipped to RGB here, the metadata says "0..255 minus the RGB
mean"); fc6 reads pool5 as C x H x W, torch.flatten's order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.models.registry import get_model
from alexnet.weights import caffe_proto
from alexnet.weights.caffe_proto import CaffeLayer
from alexnet.weights.safetensors_io import PAPER_KEY, save_safetensors
from alexnet.weights.torchvision import class_names

# bvlc_alexnet's layers (C conv, N LRN, P max-pool, F inner product; CaffeNet's pool-first refused)
SEQUENCE = "CNPCNPCCCPFFF"
# conv1..conv5: (num_output, kernel, stride, pad, group)
CONVS = ((96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2),
         (256, 3, 1, 1, 2))  # fmt: skip
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


def _first(values: Any, default: int) -> int:
    return int(values[0]) if len(values) else default


def _conv_geometry(p: Any) -> tuple[int, int, int, int, int]:
    """ConvolutionParameter -> (num_output, kernel, stride, pad, group); square kernels only."""
    kernel = p.kernel_h or _first(p.kernel_size, 0)
    stride = p.stride_h or _first(p.stride, 1)
    pad = p.pad_h or _first(p.pad, 0)
    return int(p.num_output), int(kernel), int(stride), int(pad), int(p.group or 1)


def check_structure(net: list[CaffeLayer], where: str) -> dict[str, Any]:
    """UserError naming the first layer that is not bvlc_alexnet's; else {"lrn_k",
    "num_classes", "names": the layer names of conv1..conv5, fc6..fc8}."""
    kinds = {"Convolution": "C", "LRN": "N", "Pooling": "P", "InnerProduct": "F"}
    core = [layer for layer in net if layer.type in kinds]
    found = "".join(kinds[layer.type] for layer in core)
    if found != SEQUENCE:
        hint = " (CaffeNet's pool-before-LRN order?)" if found.startswith("CPN") else ""
        raise UserError(
            f"{where}: layers {found} (C conv, N LRN, P pool, F inner product) are not "
            f"bvlc_alexnet's {SEQUENCE}{hint}"
        )
    convs = [layer for layer in core if layer.type == "Convolution"]
    for layer, want in zip(convs, CONVS):
        got = _conv_geometry(layer.params)
        if got != want:
            raise UserError(
                f"{where}: layer {layer.name!r} has (outputs, kernel, stride, pad, group) "
                f"{got}, bvlc_alexnet has {want}"
            )
    ks = set()
    for layer in (x for x in core if x.type == "LRN"):
        p = layer.params
        size, alpha = int(p.local_size or 5), float(p.alpha) if p.HasField("alpha") else 1.0
        beta = float(p.beta) if p.HasField("beta") else 0.75
        if p.norm_region != 0 or size != 5 or not np.isclose(alpha, 1e-4) or beta != 0.75:
            raise UserError(
                f"{where}: layer {layer.name!r}: LRN local_size={size} alpha={alpha} beta={beta}"
                " region " + ("within" if p.norm_region else "across") + " channels; "
                "only bvlc_alexnet's 5 / 1e-4 / 0.75 across channels is supported"
            )
        ks.add(float(p.k) if p.HasField("k") else 1.0)
    for layer in (x for x in core if x.type == "Pooling"):
        p = layer.params
        kernel, stride = p.kernel_h or p.kernel_size, p.stride_h or p.stride or 1
        if p.pool != 0 or (kernel, stride) != (3, 2) or (p.pad or p.pad_h):
            raise UserError(f"{where}: layer {layer.name!r}: only max-pooling 3/2 without pad")
    if len(ks) != 1:
        raise UserError(f"{where}: the two LRN layers have different k {sorted(ks)}")
    fcs = [layer for layer in core if layer.type == "InnerProduct"]
    widths = [int(layer.params.num_output) for layer in fcs]
    if widths[:2] != [4096, 4096]:
        raise UserError(f"{where}: fc6/fc7 have {widths[:2]} outputs, bvlc_alexnet 4096/4096")
    return {"lrn_k": ks.pop(), "num_classes": widths[2], "names": [x.name for x in convs + fcs]}


def _fit(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A blob in `shape` (old files store FC weights as (1, 1, out, in), biases (1, 1, 1, out))."""

    def squeeze(s: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(d for d in s if d != 1)

    if array.shape != shape and squeeze(array.shape) != squeeze(shape):
        raise UserError(f"{where}: blob shape {array.shape}, expected {shape}")
    return array.reshape(shape)


def _block_diagonal(w: np.ndarray, groups: int) -> np.ndarray:
    """Grouped conv weights (O, I/g, k, k) -> dense (O, I, k, k), zero between the groups."""
    out, part = w.shape[0], w.shape[1]
    dense = np.zeros((out, part * groups, *w.shape[2:]), dtype=w.dtype)
    step = out // groups
    for g in range(groups):
        dense[g * step : (g + 1) * step, g * part : (g + 1) * part] = w[g * step : (g + 1) * step]
    return dense


def state_dict(
    blobs: dict[str, list[np.ndarray]], names: list[str], towers: int, where: str
) -> dict[str, torch.Tensor]:
    """Blobs of the layers `names` (conv1..fc8) -> the `paper` model's tensors (towers=1: Caffe's
    groups as block-diagonal convs)."""
    state: dict[str, torch.Tensor] = {}
    inputs = 3
    for (ours, key), conv, name in zip(PAPER_KEY.items(), [*CONVS, None, None, None], names):
        w, b = (blobs[name] + [None, None])[:2]
        if b is None:
            raise UserError(f"{where}: layer {name!r} needs 2 blobs (weights, bias)")
        out, k, _, _, group = conv or (b.size, 0, 0, 0, 1)
        shape = (out, inputs) if conv is None else (out, inputs // group, k, k)
        w = _fit(w, shape, f"{where}: layer {name!r} weights")
        if ours == "conv1":
            w = w[:, ::-1]  # input channels BGR -> RGB
        if group > 1 and towers != group:
            w = _block_diagonal(w, group)
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state[f"{key}.bias"] = torch.from_numpy(_fit(b, (out,), f"{where}: {name} bias"))
        # pool5 flattened C x H x W, the order of torch.flatten
        inputs = 256 * 6 * 6 if ours == "conv5" else out
    return state


def caffe_preprocess(mean: np.ndarray | None) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Caffe's input (0..255 minus the mean: `mean` (3, H, W) BGR, else 104, 117, 123) ->
    (preprocess, (H, W, 3) RGB mean image in [0, 1] or None): 256 px, centre crop 227 (§2)."""
    base = dict(image_size=256, resize_rule="paper", crop_size=227, resize=None, out_channels=3)
    if mean is None:
        rgb = [c / 255.0 for c in MEAN_BGR[::-1]]
        std = [1.0 / 255.0] * 3  # (x/255 - m/255) / (1/255) = x - m, x in 0..255
        return {**base, "normalize": "channel", "mean": rgb, "std": std}, None
    image = np.asarray(mean, dtype=np.float32).reshape(mean.shape[-3:])
    rgb = np.ascontiguousarray(image[::-1].transpose(1, 2, 0)) / 255.0  # (H, W, 3) RGB
    pre = {**base, "image_size": int(rgb.shape[0]), "normalize": "mean_image"}
    return {**pre, "mean": None, "std": None}, torch.from_numpy(rgb)


def load_mean(path: str | os.PathLike) -> np.ndarray:
    """`imagenet_mean.binaryproto` -> (3, H, W) float32 BGR 0..255."""
    mean = caffe_proto.read_blob(path)
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
    model_layers = caffe_proto.layers(caffe_proto.read_net(caffemodel), str(caffemodel))
    arch_where = str(deploy or caffemodel)
    arch = (
        model_layers
        if deploy is None
        else caffe_proto.layers(caffe_proto.read_net_text(deploy), str(deploy))
    )
    info = check_structure(arch, arch_where)
    blobs = {layer.name: layer.blobs for layer in model_layers if layer.blobs}
    missing = [n for n in info["names"] if n not in blobs]
    if missing:
        raise UserError(f"{caffemodel}: no weights for layers {missing} of {arch_where}")
    options = {**MODEL_OPTIONS, "lrn_k": info["lrn_k"], "num_classes": info["num_classes"]}
    model = get_model("paper", **options)
    state = state_dict(blobs, info["names"], options["towers"], str(caffemodel))
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
