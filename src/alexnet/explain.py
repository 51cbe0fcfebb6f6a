"""Look inside the network (Zeiler & Fergus 2014): any layer's activations, the images each
unit fires most on, and occlusion sensitivity (their §4.2). Layers carry `alexnet summary`'s
names; conv and fc layers are read after their ReLU (and BatchNorm), the last fc gives logits.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alexnet.data.augment import EvalTransform
from alexnet.errors import Param, UserError
from alexnet.evaluate import make_eval_transform
from alexnet.fileio import rounded
from alexnet.models.summary import Field, layer_kind, layer_table, trace
from alexnet.weights.meta import Preprocess

POOLS = ("max", "avg", "none")  # how conv maps become one vector per image
# modules that belong to the conv or fc layer before them: its activations are read after them
_AFTER = (nn.ReLU, nn.Tanh, nn.BatchNorm2d)


@dataclass(frozen=True)
class Layer:
    """A named layer: the module whose `call`-th output in a forward pass holds its
    activations, their shape (C, H, W) or (D,), and where its units look."""

    name: str
    kind: str  # "conv", "pool", "norm" or "fc"
    module: nn.Module
    call: int
    shape: tuple[int, ...]
    field: Field


_FOUND: weakref.WeakKeyDictionary[nn.Module, dict[int, dict[str, Layer]]] = (
    weakref.WeakKeyDictionary()
)


def layers(model: nn.Module, input_size: int | None = None) -> dict[str, Layer]:
    """The model's layers by `alexnet summary`'s names, in call order (found once per model
    and input size, then remembered)."""
    size = int(input_size or model.input_size)
    known = _FOUND.setdefault(model, {})
    if size in known:
        return known[size]
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    traced = trace(model, leaves, size)  # one pass: the table's layers are leaves too
    rows = layer_table(model, size, traced)
    calls = [module for module, _, _ in traced]
    at = [i for i, m in enumerate(calls) if layer_kind(m)]
    if len(at) != len(rows):  # a layer module inside another: the table and the calls differ
        raise RuntimeError(f"{len(rows)} table rows but {len(at)} layer calls")
    out = {}
    for row, i in zip(rows, at):
        j = i
        while (
            row.kind in ("conv", "fc") and j + 1 < len(calls) and isinstance(calls[j + 1], _AFTER)
        ):
            j += 1
        call = sum(1 for m in calls[:j] if m is calls[j])
        field = Field(row.receptive_field, row.jump, row.start)
        out[row.name] = Layer(row.name, row.kind, calls[j], call, tuple(row.output_shape), field)
    known[size] = out
    return out


def find_layer(model: nn.Module, name: str, input_size: int | None = None) -> Layer:
    """The layer called `name`; UserError listing the model's names when there is none."""
    found = layers(model, input_size)
    if name not in found:
        model_name = getattr(model, "config", {}).get("name", "this model")
        raise UserError(f"layer {name!r}: model {model_name!r} has {', '.join(found)}")
    return found[name]


class Inputs:
    """uint8 images (B, H, W, 3) -> the model's centre-crop input (B, C, S, S) as `alexnet eval`
    makes it, and the same crop in [0, 1] for pictures (B, S, S, 3)."""

    def __init__(self, preprocess: Preprocess, mean_image: Any, device: torch.device) -> None:
        pre = Preprocess.from_json(preprocess)
        self.device = torch.device(device)
        self._model = make_eval_transform(pre, mean_image, 1)
        self._view = EvalTransform(crop_size=pre.crop_size, resize=pre.resize, normalize="none")

    def on_device(self, images: np.ndarray | Tensor) -> Tensor:
        """uint8 (B, H, W, 3), numpy or torch -> uint8 (B, 3, H, W) on the device."""
        if not torch.is_tensor(images):
            arr = np.ascontiguousarray(images)
            images = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            got = f"{tuple(images.shape)} {images.dtype}"
            raise ValueError(f"expected uint8 images (B, H, W, 3), got {got}")
        return images.to(self.device).permute(0, 3, 1, 2)

    def __call__(self, images: np.ndarray | Tensor) -> Tensor:
        return self._model(self.on_device(images))

    def display(self, images: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) float32 in [0, 1]: what the model sees, before normalization."""
        return self._view(self.on_device(images)).permute(0, 2, 3, 1).cpu().numpy()


class _Stop(Exception):
    """Ends the forward pass once the layer's output is read."""


@torch.no_grad()
def features_at(model: nn.Module, x: Tensor, layer: str | Layer) -> Tensor:
    """(N, C, S, S) model input -> the layer's activations, (N, C, H, W) or (N, D) for fc layers
    (the last: the logits); the model in eval mode."""
    tap = layer if isinstance(layer, Layer) else find_layer(model, layer, x.shape[-1])
    got: list[Tensor] = []
    seen = [0]

    def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        if seen[0] == tap.call:
            got.append(output)
            raise _Stop
        seen[0] += 1

    handle = tap.module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return got[0]


def pool_features(a: Tensor, pool: str) -> Tensor:
    """Conv maps (N, C, H, W) -> (N, C) by "max" or "avg" over positions, or (N, C*H*W)
    flattened ("none"); fc activations (N, D) pass through."""
    if pool not in POOLS:
        raise UserError(Param("pool"), f" {pool!r}: choose from {', '.join(POOLS)}")
    if a.dim() == 2 or pool == "none":
        return a.flatten(1)
    return a.amax(dim=(2, 3)) if pool == "max" else a.mean(dim=(2, 3))


def parse_units(spec: str, count: int) -> list[int]:
    """ "all", "0-15" or "3,7,9" (mixable: "0-3,9") -> sorted unit numbers in [0, count)."""
    text = spec.strip().lower()
    if text == "all":
        return list(range(count))
    units: set[int] = set()
    for part in text.split(","):
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if found is None or int(found[1]) > int(found[2] or found[1]):
            raise UserError(
                Param("units"), f" {spec}: give 'all', a range '0-15' or a list '3,7,9'"
            )
        units.update(range(int(found[1]), int(found[2] or found[1]) + 1))
    if max(units) >= count:
        raise UserError(
            Param("units"), f" {spec}: unit {max(units)} outside 0-{count - 1} ({count} units)"
        )
    return sorted(units)


@torch.no_grad()
def top_units(
    model: nn.Module,
    batches: Iterable[Tensor],
    layer: Layer,
    units: list[int],
    k: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """For each unit, the k images (of all `batches`' (B, C, S, S) inputs, numbered in order)
    where it fires most, each at its strongest position (`_strongest`; ties: lower index first).
    Returns (activation, image index, position y * W + x), each (U, min(k, N)), descending."""
    sel = torch.tensor(units, dtype=torch.long)
    empty = torch.empty(0, len(units), dtype=torch.long)
    best = [empty.float(), empty, empty]  # activation, image index, position
    start = 0
    for x in batches:
        a = features_at(model, x, layer)
        v, p = _strongest(a.index_select(1, sel.to(a.device)))
        idx = torch.arange(start, start + len(v)).expand(len(units), len(v)).T
        both = [torch.cat(pair) for pair in zip(best, (v.cpu(), idx, p.cpu()))]
        order = torch.sort(both[0], dim=0, descending=True, stable=True).indices[:k]
        best = [t.gather(0, order) for t in both]
        start += len(v)
    return best[0].T, best[1].T, best[2].T


def _strongest(a: Tensor) -> tuple[Tensor, Tensor]:
    """Activations (N, C, H, W) or (N, C) -> each unit's maximum and its position y * W + x
    (the first in row-major order on a tie), each (N, C)."""
    a = a.float()
    return (a.flatten(2) if a.dim() == 4 else a[..., None]).max(dim=2)


def _where(layer: Layer, position: int, input_size: int) -> tuple[int, int, list[int]]:
    """(y, x, box): a position y * W + x of `layer` and the input box it sees (`Field.box`)."""
    y, x = divmod(int(position), layer.shape[-1] if len(layer.shape) == 3 else 1)
    return y, x, layer.field.box(y, x, input_size)


def units_json(
    layer: Layer, units: list[int], found: tuple[Tensor, Tensor, Tensor], input_size: int
) -> dict[str, Any]:
    """What `alexnet explore` writes to units.json: {layer, receptive_field, jump, units:
    [{unit, top: [{index, y, x, activation, box}]}]}, box = [x0, y0, x1, y1] in the model input,
    clipped (`Field.box`)."""
    out = []
    for u, vs, ids, ps in zip(units, *(t.tolist() for t in found)):
        top = []
        for v, i, p in zip(vs, ids, ps):
            y, x, box = _where(layer, p, input_size)
            top.append({"index": int(i), "y": y, "x": x, "activation": float(v), "box": box})
        out.append({"unit": u, "top": top})
    return layer_json(layer, input_size, out)


def layer_json(layer: Layer, input_size: int, units: list[dict[str, Any]]) -> dict[str, Any]:
    """{layer, receptive_field, jump, input_size, units}: how `explore` and `serve` answer."""
    return {
        "layer": layer.name,
        "receptive_field": layer.field.receptive_field,
        "jump": layer.field.jump,
        "input_size": input_size,
        "units": units,
    }


def occlusion_grid(size: int, patch: int | None, stride: int | None) -> tuple[int, int, int]:
    """(patch, stride, n) for a size x size input: squares entirely inside, n per side;
    defaults patch = size // 7 (32 at 224), stride = patch // 2."""
    patch = max(1, size // 7) if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride
    if not 1 <= patch <= size:
        raise UserError(Param("patch"), f" {patch}: must be 1 to the input size {size}")
    if stride < 1:
        raise UserError(Param("stride"), f" {stride}: must be at least 1")
    return patch, stride, (size - patch) // stride + 1


@torch.no_grad()
def occlusion(
    model: nn.Module,
    x: Tensor,
    target: int,
    patch: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Zeiler & Fergus §4.2 for one model input x (1, C, S, S): drop[i][j] = p(target | x) -
    p(target | x with x[..., iS:iS+P, jS:jS+P] = 0), zero being the mean after normalization.
    Returns {"patch", "stride", "prob": p(target | x), "drop": (n, n) float64 numpy}."""
    size = x.shape[-1]
    patch, stride, n = occlusion_grid(size, patch, stride)
    base = F.softmax(model(x).double(), dim=1)[0, target].item()
    cells = [(i, j) for i in range(n) for j in range(n)]
    probs = []
    for s in range(0, len(cells), batch_size):
        part = cells[s : s + batch_size]
        xs = x.expand(len(part), *x.shape[1:]).clone()
        for b, (i, j) in enumerate(part):
            xs[b, :, i * stride : i * stride + patch, j * stride : j * stride + patch] = 0
        probs.append(F.softmax(model(xs).double(), dim=1)[:, target].cpu())
    drop = base - torch.cat(probs).view(n, n).numpy()
    return {"patch": patch, "stride": stride, "prob": base, "drop": np.asarray(drop)}


def occlusion_json(found: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    """An `occlusion` result for class `index` (named `name`) as JSON: {"class", "index",
    "patch", "stride", "prob", "drop"}, floats to 6 significant digits."""
    found = {**found, "drop": found["drop"].tolist()}
    return {"class": name, "index": index, **rounded(found)}


def unit_patches(layer: Layer, unit: dict[str, Any], crops: dict[int, np.ndarray]) -> np.ndarray:
    """One unit of `units_json` -> its top patches (K, r, r, 3), r the receptive field: each
    cut from the image's display crop (`Inputs.display`), gray where the field leaves it."""
    r = layer.field.receptive_field
    out = np.full((len(unit["top"]), r, r, 3), 0.5, np.float32)
    for t, entry in enumerate(unit["top"]):
        x0, y0, x1, y1 = entry["box"]
        top = round(layer.field.start + entry["y"] * layer.field.jump - r / 2)
        left = round(layer.field.start + entry["x"] * layer.field.jump - r / 2)
        if layer.field.jump == 0:  # an fc layer sees the whole input
            top = left = 0
        patch = crops[entry["index"]][y0:y1, x0:x1]
        dy, dx = y0 - top, x0 - left
        out[t, dy : dy + patch.shape[0], dx : dx + patch.shape[1]] = patch
    return out


@torch.no_grad()
def strongest_units(model: nn.Module, x: Tensor, layer: Layer, k: int) -> list[dict[str, Any]]:
    """The k units of `layer` that fire most on one model input x (1, C, S, S), each at its
    strongest position, descending: [{"unit", "activation", "y", "x", "box"}]."""
    values, positions = (t[0] for t in _strongest(features_at(model, x, layer)))
    order = torch.sort(values, descending=True, stable=True).indices[:k].tolist()
    out = []
    for u in order:
        y, col, box = _where(layer, positions[u], x.shape[-1])
        out.append({"unit": u, "activation": float(values[u]), "y": y, "x": col, "box": box})
    return out
