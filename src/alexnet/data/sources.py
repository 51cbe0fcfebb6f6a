"""Dataset readers for `alexnet prepare`: a `Source` yields chunks of RGB uint8 images + labels.
Array sources (Fashion-MNIST, CIFAR-10, synthetic) keep their native size; file sources
(imagenet.py's layouts) are decoded in worker processes (paper §2 preprocessing)."""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from alexnet.data import SOURCE_NAMES, imagenet
from alexnet.data.decode import DEFAULT_MAX_PIXELS, decode_image
from alexnet.errors import Param, UserError

DEFAULT_VAL_FRACTION = 0.1  # of each class, held out when a folder has no validation split

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


class Chunk(NamedTuple):
    """Images (n, H, W, 3) uint8 and labels (n,) int64 for items [start, stop) of a split,
    with the files skipped or repaired on the way as (path, reason) pairs."""

    images: np.ndarray
    labels: np.ndarray
    skipped: Sequence[tuple[str, str]] = ()
    repaired: Sequence[tuple[str, str]] = ()


class Source:
    """A dataset to pack: name, classes, image_size, counts {split: n}, info (what else
    identifies the input) and load(split, start, stop) -> `Chunk` of items [start, stop)."""

    name = "source"
    parallel = False  # True: load() decodes files, run it in worker processes
    classes: list[str]
    image_size: tuple[int, int]
    counts: dict[str, int]
    info: dict[str, Any]
    index_skipped: Sequence[tuple[str, str]] = ()  # (path, reason) rejected while listing
    split: dict[str, Any] | None = None  # how val was split off train, when the input had none

    def describe(self) -> dict[str, Any]:
        """What identifies this input (checked before resuming a half-written pack)."""
        return {"source": self.name, "image_size": list(self.image_size), **self.info}


class ArraySource(Source):
    """In-memory arrays: images (N, H, W, 3) uint8 and labels (N,) per split."""

    def __init__(self, name: str, classes: list[str], arrays: dict, info: dict) -> None:
        self.name, self.classes, self.arrays, self.info = name, classes, arrays, info
        self.image_size = tuple(arrays["train"][0].shape[1:3])
        self.counts = {split: len(labels) for split, (_, labels) in arrays.items()}

    def load(self, split: str, start: int, stop: int) -> Chunk:
        images, labels = self.arrays[split]
        return Chunk(np.ascontiguousarray(images[start:stop]), labels[start:stop].astype(np.int64))


class FileSource(Source):
    """Image files (plain or inside tars; imagenet.py lists them), decoded in worker processes
    to size x size RGB (paper §2: shorter side to `size`, centre crop)."""

    parallel = True

    def __init__(
        self,
        name: str,
        root: Path,
        size: int,
        max_pixels: int | None,
        val_fraction: float | None,
        seed: int,
    ) -> None:
        self.classes, self.items, self.index_skipped = imagenet.LAYOUTS[name](root)
        if "val" in self.items and val_fraction is not None:
            why = "a val fraction splits a folder that has none"
            raise UserError(f"{root}: has a validation split of its own; {why}")
        if "val" not in self.items:
            fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
            self.items = imagenet.split_off_val(self.items["train"], fraction, seed)
            self.split = {"val_fraction": fraction, "seed": seed, "stratified": True}
        self.name, self.root, self.size = name, str(root), size
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self.image_size = (size, size)
        self.counts = {s: len(v) for s, v in self.items.items()}
        found = {"root": self.root, "items": self.counts, "max_pixels": self.max_pixels}
        self.info = {**found, **({"split": self.split} if self.split else {})}
        self._fds: dict[str, int] = {}

    def _read(self, file: str, offset: int, length: int) -> bytes:
        if offset < 0:
            with open(file, "rb") as f:
                return f.read()
        if file not in self._fds:
            self._fds[file] = os.open(file, os.O_RDONLY)
        return os.pread(self._fds[file], length, offset)

    def load(self, split: str, start: int, stop: int) -> Chunk:
        images, labels, skipped, repaired = [], [], [], []
        for display, label, file, offset, length in self.items[split][start:stop]:
            try:
                data = self._read(file, offset, length)
            except OSError as exc:
                skipped.append((display, f"unreadable file: {exc.strerror or exc}"))
                continue
            out = decode_image(data, display, self.size, self.max_pixels)
            if out.image is None:
                skipped.append((display, out.skip or "undecodable"))
                continue
            if out.repairs:
                repaired.append((display, "; ".join(out.repairs)))
            images.append(out.image)
            labels.append(label)
        stacked = np.stack(images) if images else np.zeros((0, self.size, self.size, 3), np.uint8)
        return Chunk(stacked, np.asarray(labels, np.int64), skipped, repaired)

    def __getstate__(self) -> dict:  # file descriptors do not travel to workers
        return {**self.__dict__, "_fds": {}}


# ---------------------------------------------------------------- Fashion-MNIST and CIFAR-10
def _find(root: Path, stem: str) -> Path | None:
    names = (stem, stem + ".gz", stem.replace("-idx", ".idx"))
    return next((root / n for n in names if (root / n).is_file()), None)


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: unreadable idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not an idx file of uint8 (bad magic number)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", raw[3], 4))
    offset = 4 + 4 * raw[3]
    if len(raw) - offset != int(np.prod(dims)):
        raise UserError(f"{path}: idx file holds {len(raw) - offset} bytes, dims {dims}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def _idx_part(d: Path, prefix: str) -> tuple[np.ndarray, Any]:
    """Fashion-MNIST's `{prefix}-images/labels` idx files: 28x28 grayscale, replicated to RGB."""
    paths = [_find(d, f"{prefix}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
    if None in paths:
        raise UserError(f"{d}: missing {prefix}-images/labels idx files")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{paths[0]}: {images.shape} images vs {labels.shape} labels")
    return np.repeat(images[..., None], 3, axis=3), labels


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: unreadable CIFAR-10 batch ({exc})") from None


def _cifar_part(d: Path, name: str) -> tuple[np.ndarray, Any]:
    """A CIFAR-10 python batch: rows of 3072 bytes (the R, G, B planes of 32x32)."""
    if not (d / name).is_file():
        raise UserError(f"{d / name}: missing CIFAR-10 batch")
    batch = _unpickle(d / name)
    x = np.asarray(batch[b"data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise UserError(f"{d / name}: data of shape {x.shape}, expected (N, 3072)")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), batch[b"labels"]


def _cifar_dir(root: Path) -> Path | None:
    return next(
        (d for d in (root, root / "cifar-10-batches-py") if (d / "data_batch_1").is_file()), None
    )


# name: (the folder holding the files or None, reader of one part, {split: parts}, classes)
ARRAYS = {
    "fashion-mnist": (
        lambda root: root if _find(root, "train-images-idx3-ubyte") else None,
        _idx_part,
        {"train": ["train"], "val": ["t10k"]},  # 60,000 train, 10,000 test (as val)
        FASHION_MNIST_CLASSES,
    ),
    "cifar10": (
        _cifar_dir,
        _cifar_part,
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]},
        CIFAR10_CLASSES,
    ),
}


def array_source(name: str, root: Path) -> ArraySource:
    """Fashion-MNIST (idx files) or CIFAR-10 (python batches, class names from batches.meta)."""
    where, read, splits, classes = ARRAYS[name]
    d = where(root)
    if d is None:
        raise UserError(f"{root}: no {name} files")
    if name == "cifar10" and (d / "batches.meta").is_file():
        names = _unpickle(d / "batches.meta").get(b"label_names")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names or classes]
    arrays = {}
    for split, parts in splits.items():
        images, labels = zip(*(read(d, part) for part in parts), strict=True)
        labels = np.concatenate(labels).astype(np.int64)
        if labels.size and not 0 <= labels.min() <= labels.max() < len(classes):
            raise UserError(f"{d}: {split} labels outside 0..{len(classes) - 1}")
        arrays[split] = (np.ascontiguousarray(np.concatenate(images)), labels)
    return ArraySource(name, list(classes), arrays, {"root": str(d)})


# ---------------------------------------------------------------- synthetic
class SyntheticSource(Source):
    """`classes` classes of learnable images: each class has its own colour and an oriented
    sinusoidal grating; every image adds a random phase shift, brightness and pixel noise.
    Deterministic in (seed, split, index) regardless of how it is chunked."""

    name = "synthetic"
    BLOCK = 512

    def __init__(self, classes: int = 10, count: int = 1000, image_size: int = 32, seed: int = 0):
        if classes < 1 or count < 1 or image_size < 4:
            raise UserError(
                "synthetic: need ", Param("classes"), " >= 1, ", Param("count"), " >= 1, ",
                Param("image_size"), " >= 4",
            )  # fmt: skip
        self.classes = [f"class_{i}" for i in range(classes)]
        self.image_size = (image_size, image_size)
        self.seed = seed
        self.counts = {"train": count, "val": max(1, count // 5)}
        rng = np.random.default_rng([seed, 7])
        self.colors = rng.uniform(0.15, 0.85, (classes, 3))
        self.angles = rng.uniform(0, np.pi, classes)
        self.freqs = rng.uniform(1.0, 4.0, classes)
        self.info = {"classes": classes, "count": count, "seed": seed}

    def _block(self, split: str, b: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(self.BLOCK, self.counts[split] - b * self.BLOCK)
        rng = np.random.default_rng([self.seed, 0 if split == "train" else 1, b])
        labels = rng.integers(0, len(self.classes), n)
        s = self.image_size[0]
        yy, xx = np.mgrid[0:s, 0:s] / s
        a, f = self.angles[labels], self.freqs[labels]
        phase = rng.uniform(0, 2 * np.pi, n)
        proj = np.cos(a)[:, None, None] * xx + np.sin(a)[:, None, None] * yy
        wave = np.sin(2 * np.pi * f[:, None, None] * proj + phase[:, None, None])
        bright = rng.uniform(0.8, 1.2, (n, 1, 1, 1))
        img = self.colors[labels][:, None, None, :] * bright + 0.25 * wave[..., None]
        img = img + rng.normal(0, 0.05, img.shape)
        return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), labels.astype(np.int64)

    def load(self, split: str, start: int, stop: int) -> Chunk:
        blocks = range(start // self.BLOCK, (stop - 1) // self.BLOCK + 1)
        parts = [(b * self.BLOCK, *self._block(split, b)) for b in blocks]
        images = [x[max(start - lo, 0) : stop - lo] for lo, x, _ in parts]
        labels = [y[max(start - lo, 0) : stop - lo] for lo, _, y in parts]
        return Chunk(np.concatenate(images), np.concatenate(labels))


# ---------------------------------------------------------------- choosing a reader
# what `--source auto` looks for, in this order
DETECT = {
    **{name: found for name, (found, *_) in ARRAYS.items()},
    "kaggle": lambda root: all((root / f).is_file() for f in imagenet.KAGGLE_FILES),
    "ilsvrc2012": lambda root: all((root / f).is_file() for f in imagenet.TARS),
    "imagefolder": imagenet.is_imagefolder,
    "folder": imagenet.is_class_folders,
}


def open_source(
    src: str,
    kind: str = "auto",
    *,
    size: int = 256,
    max_pixels: int | None = None,
    synthetic: dict | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> Source:
    """Build the reader for `src` (a directory; for "synthetic" any label). `kind="auto"`
    detects the layout. A folder without a validation split (`SRC/<class>/*`, or an ImageFolder
    with only train/) gets one: `val_fraction` of each class (default DEFAULT_VAL_FRACTION),
    drawn with `seed`. UserError (one line) for a missing SRC or an unknown layout."""
    if kind == "synthetic" or (kind == "auto" and src == "synthetic" and not Path(src).exists()):
        return SyntheticSource(**(synthetic or {}))
    root = Path(src)
    if not root.exists():
        raise UserError(f"{src}: no such file or directory")
    if not root.is_dir():
        raise UserError(f"{src}: not a directory (give the directory holding the dataset)")
    if kind == "auto":
        kind = next((name for name, found in DETECT.items() if found(root)), "")
        if not kind:
            raise UserError(
                f"{src}: unrecognized dataset layout (expected <class>/ folders of images, "
                "train/<class>/ and val/<class>/ folders, ILSVRC2012 tars + devkit, the Kaggle "
                "layout, Fashion-MNIST idx files or CIFAR-10 batches; or name one with ",
                Param("source"),
                ")",
            )
    if kind in imagenet.LAYOUTS:
        return FileSource(kind, root, size, max_pixels, val_fraction, seed)
    if kind in ARRAYS:
        return array_source(kind, root)
    raise UserError(Param("source"), f" {kind}: unknown (choose from {', '.join(SOURCE_NAMES)})")
