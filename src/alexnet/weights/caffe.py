"""Caffe's `bvlc_alexnet` -> the `paper` model at input_size=227, with Caffe's preprocessing.

`bvlc_alexnet` is the public ImageNet model with the paper's architecture (§3, Fig. 2): five
conv layers 96-256-384-384-256, conv2/4/5 in two groups (the paper's two towers, §3.2), LRN
after conv1 and conv2 (§3.3) and overlapping max-pooling (§3.4), on 227x227 inputs without
padding. Published: 42.9% top-1 / 19.8% top-5 error on the ILSVRC-2012 validation set (centre
crop). Its differences from the paper's network, and how they are expressed here:

- LRN: k=1 and alpha/n (alpha=1e-4, n=5, beta=0.75) -> `lrn_k=1`,
  `lrn_alpha_convention="per_size"`. Caffe normalizes across ALL channels of the blob (its LRN
  window crosses the boundary between the two groups), where the paper's GPUs each normalized
  their own maps. The model keeps Caffe's groups as the paper's two towers and sets
  `lrn_scope="all"` (LRN across the towers' boundary): the same function, exactly, with the
  paper's 60,965,224 parameters.
- Input: BGR 0..255 minus the mean (the mean image, or per channel (104, 117, 123) BGR). conv1's
  input channels are flipped BGR -> RGB here, so the model reads RGB like every other model of
  this package, and the weights' preprocess metadata says "0..255 minus the RGB mean".
- fc6 reads pool5 flattened as C x H x W (256 x 6 x 6), the same order as torch.flatten.

`convert(caffemodel, out, deploy=None, mean=None)` writes an alexnet `.safetensors` file.
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
from alexnet.weights.safetensors_io import save_safetensors
from alexnet.weights.torchvision import class_names

# The layer sequence of bvlc_alexnet (conv -> ReLU -> LRN -> pool, as the paper; CaffeNet
# pools before it normalizes and is refused): C = conv, N = LRN, P = max-pool, F = inner product.
SEQUENCE = "CNPCNPCCCPFFF"
# conv1..conv5: (num_output, kernel, stride, pad, group)
CONVS = ((96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2),
         (256, 3, 1, 1, 2))  # fmt: skip
CONV_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_NAMES = ("fc6", "fc7", "fc8")
MEAN_BGR = (104.0, 117.0, 123.0)  # Caffe's per-channel ImageNet mean, BGR order, 0..255
PUBLISHED = {"top1_err": 42.9, "top5_err": 19.8, "crops": 1, "model": "bvlc_alexnet"}
# The `paper` model that computes bvlc_alexnet's function (see the module docstring).
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
    """Check the layers are bvlc_alexnet's (UserError naming the first that is not).

    Returns {"lrn_k": Caffe's LRN k, "num_classes": fc8's outputs, "names": the layer names of
    conv1..conv5, fc6..fc8 in order}."""
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
    """A blob in `shape`; old Caffe files store FC weights as (1, 1, out, in), biases as
    (1, 1, 1, out)."""

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
    """Caffe blobs of conv1..conv5, fc6..fc8 (by their layer names, in that order) -> tensors of
    the `paper` model with `towers` towers (2: Caffe's groups as towers; 1: block-diagonal)."""
    state: dict[str, torch.Tensor] = {}
    in_ch = 3
    for ours, name, (out, k, _, _, group) in zip(CONV_NAMES, names[:5], CONVS):
        w, b = (blobs[name] + [None, None])[:2]
        if b is None:
            raise UserError(f"{where}: layer {name!r} needs 2 blobs (weights, bias)")
        w = _fit(w, (out, in_ch // group, k, k), f"{where}: layer {name!r} weights")
        if ours == "conv1":
            w = w[:, ::-1]  # input channels BGR -> RGB
        if group > 1 and towers != group:
            w = _block_diagonal(w, group)
        state[f"features.{ours}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state[f"features.{ours}.bias"] = torch.from_numpy(_fit(b, (out,), f"{where}: {name} bias"))
        in_ch = out
    in_features = 256 * 6 * 6  # pool5 flattened C x H x W, the order of torch.flatten
    for ours, name in zip(FC_NAMES, names[5:]):
        w, b = (blobs[name] + [None, None])[:2]
        if b is None:
            raise UserError(f"{where}: layer {name!r} needs 2 blobs (weights, bias)")
        out = b.size
        prefix = "" if ours == "fc8" else "classifier."
        w = _fit(w, (out, in_features), f"{where}: layer {name!r} weights")
        state[f"{prefix}{ours}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state[f"{prefix}{ours}.bias"] = torch.from_numpy(_fit(b, (out,), f"{where}: {name} bias"))
        in_features = out
    return state


def caffe_preprocess(mean: np.ndarray | None) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Caffe's input (0..255 minus the mean) as preprocess metadata for RGB models.

    mean: Caffe's mean image (3, H, W) BGR 0..255 (`imagenet_mean.binaryproto`, 256x256), or
    None for the per-channel mean (104, 117, 123) BGR. Returns (preprocess, mean image
    (H, W, 3) RGB in [0, 1] or None): 256 px images, centre crop 227 (§2, §4.1).
    """
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
    """`imagenet_mean.binaryproto` -> (3, H, W) float32 BGR 0..255; UserError naming the file."""
    mean = caffe_proto.read_blob(path)
    mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 else mean
    if mean.ndim != 3 or mean.shape[0] != 3 or mean.shape[1] != mean.shape[2]:
        raise UserError(f"{path}: mean blob of shape {mean.shape}, expected (1, 3, S, S)")
    if mean.shape[1] < 227:
        raise UserError(f"{path}: mean image {mean.shape[1]}px is smaller than the 227 crop")
    return mean


def read_synset_words(path: str | os.PathLike, count: int) -> list[str]:
    """Caffe's `synset_words.txt` (or Kaggle's `LOC_synset_mapping.txt`): lines "n01440764
    tench, Tinca tinca" in class-index order -> the words, as `alexnet prepare` names
    ImageNet's classes from the official devkit."""
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
    """Convert a `bvlc_alexnet.caffemodel` (either layout) to an alexnet weights file.

    The architecture is read from `deploy` when given, else from the caffemodel itself; blobs
    are matched by layer name. Class names come from `classes` (a synset_words.txt) or, for
    1000 classes, torchvision's ImageNet names (the same order). Returns the metadata written.
    """
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
