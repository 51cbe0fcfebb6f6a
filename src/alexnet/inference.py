"""Use a trained AlexNet: top-k predictions, fc7 features, nearest neighbours (paper §6.1).

Files are read as `alexnet prepare` stores images (paper §2: shorter side to the size, centre
crop), then `alexnet eval`'s transform runs (1, 2 or the paper's 10 crops, §4.1). Features
files (FEATS.npy + FEATS.json) record the weights and data that made them: a mismatch is refused.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from alexnet.checkpoint import checkpoint_path
from alexnet.data import TEST_CROPS
from alexnet.data.decode import DEFAULT_MAX_PIXELS, Decoded, decode_image
from alexnet.data.packed import HEADER, open_dataset
from alexnet.errors import Param, UserError
from alexnet.evaluate import check_images_fit, make_eval_transform
from alexnet.explain import Inputs
from alexnet.export import OnnxModel
from alexnet.fileio import atomic_write, atomic_write_text, file_sha256, rounded
from alexnet.runtime import resolve_device
from alexnet.weights import build_model, load
from alexnet.weights.hf import WEIGHTS_NAME as HF_WEIGHTS
from alexnet.weights.hf import is_folder as is_hf_folder
from alexnet.weights.meta import Preprocess, WeightsMeta

IMAGE_EXTENSIONS = set(
    ".jpg .jpeg .jpe .jfif .png .bmp .gif .tif .tiff .webp .ppm .pgm .pbm".split()
)


def expand_image_args(args: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files, directories (recursively, image extensions only, sorted) and globs -> paths.

    Returns (paths in argument order, [(argument, reason)] for arguments that named nothing).
    """
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    for arg in args:
        if os.path.isdir(arg):
            files = (p for p in Path(arg).rglob("*") if p.is_file())
            found = sorted(str(p) for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)
            why = "directory holds no image files"
        elif os.path.exists(arg):
            found = [arg]
        elif glob.has_magic(arg):
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            why = "pattern matches no file"
        else:
            found, why = [], "no such file or directory"
        paths.extend(found)
        if not found:
            errors.append((arg, why))
    return paths, errors


def decode_at_size(
    data: bytes, name: str, size: int, rule: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Decoded:
    """Image bytes -> `Decoded` with a uint8 (size, size, 3) image: shorter side to `size`,
    centre crop (paper §2; rule "torchvision" rounds as torchvision's Resize + CenterCrop)."""
    decoded = decode_image(data, name, None if rule == "torchvision" else size, max_pixels)
    if decoded.image is not None and rule == "torchvision":
        img = TF.resize(Image.fromarray(decoded.image), size)
        decoded.image = np.asarray(TF.center_crop(img, [size, size]))
    return decoded


def read_image(path: str, size: int, rule: str = "paper") -> np.ndarray:
    """One image file -> uint8 (size, size, 3) (`decode_at_size`); UserError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    decoded = decode_at_size(data, path, size, rule)
    if decoded.image is None:
        raise UserError(f"{path}: {decoded.skip}")
    return decoded.image


@dataclass
class Prediction:
    """Top-k of one image: `classes` names and `probs` (descending), or an `error`."""

    image: str
    indices: list[int]
    classes: list[str]
    probs: list[float]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What `alexnet predict --json` prints and `alexnet serve` answers (6 digits)."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        top = [
            {"class": c, "index": i, "prob": rounded(p)}
            for c, i, p in zip(self.classes, self.indices, self.probs)
        ]
        return {"image": self.image, "top": top}


@dataclass
class FileBatch:
    """Image files read at the stored size: `paths` and their uint8 `images` (B, S, S, 3), or
    one path that could not be read and its `error`."""

    paths: list[str]
    images: np.ndarray | None = None
    error: str | None = None


def is_onnx(weights: str | os.PathLike) -> bool:
    """Whether `weights` names an ONNX model (a file ending in .onnx)."""
    return str(weights).lower().endswith(".onnx")


def weights_device(weights: str | os.PathLike, flag: str | None, info: Any = None) -> torch.device:
    """`resolve_device(flag)`, but the CPU for an ONNX model (UserError for another device)."""
    if is_onnx(weights):
        if flag not in (None, "auto", "cpu"):
            raise UserError(
                Param("device"),
                f" {flag}: {weights} is an ONNX model, run on the CPU by onnxruntime; use the "
                "weights it was exported from on other devices",
            )
        return torch.device("cpu")
    return resolve_device(flag or "auto", info)


def load_backend(
    weights: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module | OnnxModel, WeightsMeta]:
    """Any weights -> (model, metadata): an ONNX file as an `OnnxModel` (the CPU: `device` as
    `weights_device` gives it), everything else through `alexnet.weights.load` on `device`."""
    if is_onnx(weights):
        onnx = OnnxModel(weights)
        return onnx, onnx.meta
    return load(weights, device)


class Predictor:
    """Weights (anything `alexnet.weights.load` reads, or an ONNX file of ours: CPU only) on
    `device` ("auto", "cpu", "cuda", "cuda:N", "mps") -> a model that answers questions about
    images, `crops` 1 (centre), 2 (centre + mirror) or 10 (paper §4.1) softmax averaged,
    `batch_size` images per forward pass."""

    def __init__(
        self,
        weights: str | os.PathLike,
        device: str | torch.device = "cpu",
        crops: int = 1,
        batch_size: int = 64,
    ) -> None:
        if crops not in TEST_CROPS:
            choices = ", ".join(map(str, TEST_CROPS))
            raise UserError(Param("crops"), f" {crops}: must be one of {choices}")
        self.weights = str(weights)
        self.device = weights_device(weights, str(device))  # one line for a missing device
        self.backend, self.meta = load_backend(weights, self.device)
        self.mean_image = self.meta.mean_image
        self.classes: list[str] = list(self.meta.classes)
        self.preprocess: Preprocess = self.meta.preprocess
        self.crops = crops
        self.batch_size = max(1, int(batch_size))
        self.image_size = self.preprocess.stored_image_size()
        self.resize_rule = self.preprocess.resize_rule
        self.inputs = Inputs(self.preprocess, self.mean_image, self.device)  # the centre crop
        self._transform = make_eval_transform(self.preprocess, self.mean_image, crops)

    @property
    def onnx(self) -> bool:
        """Whether an ONNX file runs (onnxruntime): no torch module, no layers to look into."""
        return isinstance(self.backend, OnnxModel)

    @property
    def model(self) -> torch.nn.Module:
        """The torch module; UserError (one line) for an ONNX model, which has none."""
        return self.torch_model("this")

    def torch_model(self, what: str) -> torch.nn.Module:
        """The torch module; UserError "WHAT needs torch weights" (one line) for an ONNX model."""
        if self.onnx:
            raise UserError(
                f"{self.weights}: an ONNX model; {what} needs torch weights (.safetensors, .pth, "
                "a run), e.g. those it was exported from"
            )
        return self.backend

    @cached_property
    def feature_layer(self) -> str:
        """The layer `features` returns, as `alexnet summary` names it: "fc7" for the 224 px
        models (paper §6.1), "pool3 (flattened)" or "fc4" for `small`."""
        if not self.onnx:
            return self.backend.penultimate_name
        with torch.device("meta"):  # the ONNX model's torch twin, without its weights
            return build_model(self.meta.model_config, self.meta.num_classes).penultimate_name

    @torch.no_grad()
    def probabilities(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) at the stored size -> class probabilities (B, K) on the device,
        the softmax averaged over the crops (paper §4.1)."""
        x = self.inputs.on_device(images)
        b = x.shape[0]
        logits = self.backend(self._transform(x)).float()
        return F.softmax(logits, dim=1).view(b, self.crops, -1).mean(dim=1)

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> penultimate activations (B, D) of the centre crop (fc7 after
        ReLU for the 224 px models: the paper's §6.1 retrieval feature), on the device."""
        return self.backend.forward_penultimate(self.inputs(images)).float()

    def predictions(self, names: list[str], probs: torch.Tensor, k: int) -> list[Prediction]:
        """Images' names and (B, K) probabilities -> their top-k, descending."""
        values, indices = probs.topk(max(1, min(int(k), probs.shape[1])), dim=1)
        top = zip(names, indices.cpu().tolist(), values.cpu().tolist())
        return [Prediction(n, ii, [self.classes[i] for i in ii], pp) for n, ii, pp in top]

    def file_batches(self, paths: Iterable[str]) -> Iterator[FileBatch]:
        """The files read as `predict` reads them, in order, up to `batch_size` a batch; a file
        that cannot be read comes alone, with its `error`."""
        pending: list[tuple[str, np.ndarray]] = []

        def flush() -> Iterator[FileBatch]:
            yield FileBatch([name for name, _ in pending], np.stack([img for _, img in pending]))
            pending.clear()

        for path in paths:
            try:
                pending.append((path, read_image(path, self.image_size, self.resize_rule)))
            except UserError as exc:
                yield from flush() if pending else ()
                yield FileBatch([path], error=str(exc).split(": ", 1)[-1])
                continue
            if len(pending) >= self.batch_size:
                yield from flush()
        if pending:
            yield from flush()

    def predict_files(self, paths: Iterable[str], topk: int = 5) -> Iterator[Prediction]:
        """Predict each file, in order; undecodable files come back with `error` set."""
        for batch in self.file_batches(paths):
            if batch.error is not None:
                yield Prediction(batch.paths[0], [], [], [], error=batch.error)
                continue
            yield from self.predictions(batch.paths, self.probabilities(batch.images), topk)


@torch.no_grad()
def split_features(predictor: Predictor, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Penultimate features of a packed split's images (N, H, W, 3) uint8 -> (N, D) float32."""
    chunks = [
        predictor.features(images[start : start + batch_size]).cpu().numpy()
        for start in range(0, int(images.shape[0]), batch_size)
    ]
    if not chunks:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


@torch.no_grad()
def nearest(
    queries: torch.Tensor | np.ndarray,
    base: torch.Tensor | np.ndarray,
    k: int,
    *,
    device: str | torch.device = "cpu",
    chunk: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """The k rows of `base` (N, D) nearest to each query (Q, D) in Euclidean distance ->
    (distances (Q, k) float32 ascending, indices (Q, k) int64).

    ||q||^2 - 2 q.b + ||b||^2 per chunk of `chunk` base rows on `device`, clamped at 0, with a
    running top-k; all centred on the base set's mean first (the float32 cancellation error,
    about eps * ||x||^2, shrinks a lot for ReLU features, which share a large positive mean).
    """
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32)).to(device)
    if q.dim() != 2 or len(base.shape) != 2 or q.shape[1] != base.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and base {tuple(base.shape)} must be (*, D)")
    n = int(base.shape[0])
    k = min(int(k), n)
    if k < 1:
        raise ValueError("nearest needs k >= 1 and a non-empty base set")

    def rows(start: int) -> torch.Tensor:  # one chunk, copied (memmaps are read-only)
        part = base[start : start + chunk]
        if torch.is_tensor(part):
            return part.to(q.device, torch.float32)
        return torch.from_numpy(np.array(part, dtype=np.float32)).to(q.device)

    mean = torch.zeros(q.shape[1], dtype=torch.float64, device=q.device)
    for start in range(0, n, chunk):
        mean += rows(start).double().sum(0)
    mean = (mean / n).float()
    q = q - mean
    q_sq = (q * q).sum(1, keepdim=True)  # (Q, 1)
    best_d = torch.full((q.shape[0], 0), float("inf"), device=q.device)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.int64, device=q.device)
    for start in range(0, n, chunk):
        b = rows(start) - mean
        d2 = torch.addmm((b * b).sum(1)[None, :], q, b.T, alpha=-2.0).add_(q_sq)  # (Q, C)
        d = torch.cat([best_d, d2.clamp_min_(0.0)], 1)
        ids = torch.arange(start, start + b.shape[0], device=q.device).expand(q.shape[0], -1)
        i = torch.cat([best_i, ids], 1)
        best_d, pos = d.topk(min(k, d.shape[1]), dim=1, largest=False, sorted=True)
        best_i = i.gather(1, pos)
    return best_d.sqrt().cpu().numpy(), best_i.cpu().numpy()


def neighbours(
    queries: np.ndarray,
    feats: np.ndarray,
    base: SplitRows | FolderRows,
    k: int,
    device: str | torch.device = "cpu",
) -> list[list[dict[str, Any]]]:
    """Query features (Q, D) -> for each, its k nearest images of `base` (the images of the rows
    of `feats`, paper §6.1), the nearest first: {"index": split index, or "path": relative to
    the folder, "distance", "label": class name (None: an unlabelled folder)}."""
    dist, idx = nearest(queries, feats, k, device=device)
    return [
        [{base.key: base.ids[r], "distance": d, "label": base.label(r)} for d, r in zip(ds, rs)]
        for ds, rs in zip(dist.tolist(), idx.tolist())
    ]


class SplitRows:
    """The images of a features file's rows: indices into a split of a packed dataset."""

    key = "index"

    def __init__(self, dataset: Any, ids: list[int]) -> None:
        self.dataset, self.ids = dataset, ids
        self.split: str | None = dataset.split

    def label(self, row: int) -> str:
        return self.dataset.classes[int(self.dataset.labels[self.ids[row]])]

    def image(self, index: int) -> np.ndarray:
        """Image `index` of the split as stored, uint8 (H, W, 3)."""
        return np.asarray(self.dataset.images[index])


class FolderRows:
    """The images of a features file's rows: files of an image folder, by their paths relative
    to it, read at the stored `size` as `predict` reads them; class names where recorded."""

    key = "path"

    def __init__(self, folder: str | os.PathLike, meta: dict[str, Any], size: int, rule: str):
        self.folder, self.ids = Path(folder), list(meta["paths"])
        self.classes, self.labels = meta.get("classes"), meta.get("labels")
        self.size, self.rule = size, rule
        self.split: str | None = None

    def label(self, row: int) -> str | None:
        return None if self.labels is None else self.classes[self.labels[row]]

    def image(self, path: str) -> np.ndarray:
        """The file FOLDER/path, uint8 (size, size, 3); UserError naming it if unreadable."""
        return read_image(str(self.folder / path), self.size, self.rule)


def is_image_folder(path: str | os.PathLike) -> bool:
    """A directory that is not a packed dataset (no header.json): a folder of image files."""
    return Path(path).is_dir() and not (Path(path) / HEADER).exists()


def index_rows(meta: dict[str, Any], data: str, predictor: Predictor) -> SplitRows | FolderRows:
    """The images of a features file's rows (`meta`: its FEATS.json), over `data`: the packed
    dataset or the image folder it was computed on."""
    if "paths" in meta:
        return FolderRows(data, meta, predictor.image_size, predictor.resize_rule)
    return SplitRows(open_dataset(data, meta.get("split", "train")), list(meta["indices"]))


# ------------------------------------------------------------------ features files
FEATURES_FORMAT = "alexnet-features/1"
FEATURES_LAYER = "penultimate (fc7 after ReLU for paper/seed/torchvision)"  # `Predictor.features`


def features_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """FEATS, FEATS.npy or FEATS.json -> (FEATS.npy, FEATS.json)."""
    base = Path(out)
    if base.suffix in (".npy", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")


def row_ids(meta: dict[str, Any]) -> list:
    """What a FEATS.json names each row by: "paths" (relative to an image folder) or
    "indices" (into a split of a packed dataset)."""
    return list(meta["paths"] if "paths" in meta else meta.get("indices", ()))


def save_features(out: str | os.PathLike, feats: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write FEATS.npy (float32 (N, D)) and FEATS.json ({"format", "count", "dim", ...meta});
    meta must hold "indices" (the split index of each row) or "paths" (relative to an image
    folder). Returns the .npy path."""
    npy, js = features_paths(out)
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    if len(row_ids(meta)) != feats.shape[0]:
        raise ValueError("one index or path per feature row")
    atomic_write(npy, lambda f: np.save(f, feats))
    info = {"format": FEATURES_FORMAT, "count": int(feats.shape[0]), "dim": int(feats.shape[1])}
    atomic_write_text(js, json.dumps({**info, **meta}))
    return npy


def load_features(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a features file pair; UserError naming the file when missing or inconsistent."""
    npy, js = features_paths(path)
    try:
        meta = json.loads(js.read_text())
        feats = np.load(npy, mmap_mode="r")
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot read features ({exc.strerror})") from None
    except ValueError as exc:
        raise UserError(f"{npy}: not a features file ({exc})") from None
    if meta.get("format") != FEATURES_FORMAT or feats.ndim != 2:
        raise UserError(f"{js}: not an alexnet features file (format {FEATURES_FORMAT})")
    if feats.shape[0] != len(row_ids(meta)):
        raise UserError(f"{npy}: {feats.shape[0]} rows but {js} lists {len(row_ids(meta))}")
    return np.asarray(feats), meta


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex); of a run directory, of the checkpoint the weights loader
    reads from it; of a Hugging Face-style folder, of its model.safetensors."""
    if is_hf_folder(path):
        path = Path(path) / HF_WEIGHTS
    elif Path(path).is_dir():
        path = checkpoint_path(Path(path))
    return file_sha256(path)


def check_fits(predictor: Predictor, image_size: tuple[int, int], data: str | os.PathLike) -> None:
    """UserError unless `predictor`'s eval transform can take `data`'s (H, W) images: without a
    resize the crop must fit, and a mean image must have the images' size."""
    check_images_fit(predictor.weights, predictor.meta, image_size, data)


def features_source(weights: str | os.PathLike, dataset: Any = None) -> dict[str, str]:
    """What a features file records about its origin (of a packed `dataset`, its fingerprint;
    an image folder has none)."""
    found = {"weights_sha256": file_digest(weights)}
    return found if dataset is None else {**found, "data_fingerprint": dataset.fingerprint}


def check_features_source(
    feats_path: str | os.PathLike,
    meta: dict[str, Any],
    weights: str | os.PathLike,
    dataset: Any = None,
) -> None:
    """UserError when `weights` or the packed `dataset` are not the ones that made the features
    file (of an image folder only the weights are checked)."""
    recorded = meta.get("weights_sha256")
    if recorded and file_digest(weights) != recorded:
        raise UserError(
            f"{feats_path}: computed with other weights ({meta.get('weights')}), not {weights}: "
            "distances would be meaningless; recompute with `alexnet features`"
        )
    recorded = meta.get("data_fingerprint")
    if recorded and dataset is not None and dataset.fingerprint != recorded:
        raise UserError(
            f"{feats_path}: computed on another dataset ({meta.get('data')}), not "
            f"{Path(dataset.root)}; recompute with `alexnet features`"
        )
