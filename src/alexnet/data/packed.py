"""Read (`open_dataset`) and check (`verify`) a packed dataset written by `alexnet prepare`:
`header.json` (written last: a directory with one is complete), each split's images and
labels as its field stores them (fields.py), `stats.npz` (paper §2, §4.1), `report.json`."""

from __future__ import annotations

import copy
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data import SPLITS
from alexnet.data.fields import FIELDS, crc32, crc_file, field_of, labels_file
from alexnet.errors import UserError

FORMAT_NAME = "alexnet-packed"
HEADER, STATS, REPORT = "header.json", "stats.npz", "report.json"
STAT_KEYS = ("mean_image", "channel_mean", "channel_std", "rgb_cov", "eigval", "eigvec")


@dataclass(frozen=True)
class DatasetStats:
    """Train-split statistics in [0, 1] pixel scale (paper §2: the mean image; §4.1: the RGB
    covariance's eigenpairs for fancy-PCA lighting), of the pixels training sees."""

    mean_image: np.ndarray  # (H, W, 3)
    channel_mean: np.ndarray  # (3,)
    channel_std: np.ndarray  # (3,)
    rgb_cov: np.ndarray  # (3, 3)
    eigval: np.ndarray  # (3,), descending
    eigvec: np.ndarray  # (3, 3), eigenvectors as columns

    def is_grayscale(self) -> bool:
        """True when the 3 stored channels are copies (one non-zero eigenvalue)."""
        ev = np.asarray(self.eigval, dtype=np.float64)
        return bool(ev[0] > 0 and ev[1] <= 1e-9 * ev[0])


def read_header(root: str | Path) -> dict[str, Any]:
    """Parse and validate `root/header.json`; UserError naming the path if it is not ours."""
    root = Path(root)
    path = root / HEADER
    if not root.is_dir() or not path.is_file():
        raise UserError(f"{root}: not a packed dataset (run `alexnet prepare`)")
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise UserError(f"{root}: not a packed dataset (run `alexnet prepare`)")
    versions = sorted({f.version for f in FIELDS.values()})
    if header.get("version") not in versions:
        raise UserError(
            f"{path}: packed format version {header.get('version')} is not supported "
            f"(this alexnet reads versions {', '.join(map(str, versions))}; "
            "run `alexnet prepare` again)"
        )
    field_of(header, str(path))
    return header


class PackedDataset:
    """One split of a packed dataset: a sequence of (H x W x 3 uint8 image, int label), with
    images ((N, H, W, 3) uint8: `RawImages` or `JpegImages`), labels (N,) int64, classes,
    num_classes, image_size, field, encoding, quality (JPEG or None), stats, fingerprint."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        header = read_header(self.root)
        splits = header["splits"]
        if split not in splits:
            raise UserError(f"{self.root}: no split {split!r} (has {', '.join(sorted(splits))})")
        self.split, self.header = split, header
        self.field = field_of(header, str(self.root))
        self.encoding, self.quality = self.field.name, self.field.quality
        self.classes: list[str] = list(header["classes"])
        self.num_classes = len(self.classes)
        h, w = header["image_size"]
        self.image_size: tuple[int, int] = (int(h), int(w))
        self.fingerprint: str = header["fingerprint"]
        count = int(splits[split]["count"])
        try:
            self.images: Any = self.field.open(self.root, split, splits[split], self.image_size)
            self.labels = np.load(self.root / labels_file(split)).astype(np.int64, copy=False)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{self.root}: damaged split {split!r} ({exc})") from None
        if tuple(self.images.shape) != (count, h, w, 3) or self.labels.shape != (count,):
            raise UserError(
                f"{self.root}: split {split!r} has images {tuple(self.images.shape)} and "
                f"labels {self.labels.shape}, header says {count} images of {h}x{w}"
            )
        self.labels.setflags(write=False)
        self._stats: DatasetStats | None = None

    @property
    def stats(self) -> DatasetStats:
        """Train-split statistics (`DatasetStats`), read once."""
        if self._stats is None:
            path = self.root / self.header.get("stats", STATS)
            try:
                with np.load(path) as z:
                    self._stats = DatasetStats(**{k: np.array(z[k]) for k in STAT_KEYS})
            except (OSError, KeyError, ValueError) as exc:
                raise UserError(f"{path}: unreadable statistics ({exc})") from None
        return self._stats

    def head(self, n: int) -> PackedDataset:
        """A view of the first `n` images (all when n >= len); nothing is read."""
        view = copy.copy(self)
        view.images, view.labels = self.images[: max(0, int(n))], self.labels[: max(0, int(n))]
        return view

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.images[index]), int(self.labels[index])

    def __repr__(self) -> str:
        (h, w), q = self.image_size, self.quality
        enc = "" if q is None else f", encoding={self.encoding!r}, quality={q}"
        where = f"{str(self.root)!r}, split={self.split!r}, n={len(self)}, size={h}x{w}"
        return f"PackedDataset({where}, classes={self.num_classes}{enc})"


def open_dataset(path: str | Path, split: str = "train") -> PackedDataset:
    """Open one split ("train" or "val") of a packed dataset directory (raw or JPEG)."""
    return PackedDataset(path, split)


# ---------------------------------------------------------------- alexnet prepare --verify
@dataclass
class Verified:
    """What `verify` found: damaged (split, index (-1: the split's index), reason) records;
    fingerprint_ok None: the fingerprint cannot be recomputed."""

    root: str
    encoding: str
    checked: dict[str, int] = field(default_factory=dict)
    damaged: list[tuple[str, int, str]] = field(default_factory=list)
    fingerprint_ok: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.damaged and self.fingerprint_ok is not False


def _bad_records(images, crc: np.ndarray, threads: int, block: int = 1024) -> list[int]:
    """Indices whose stored bytes do not match their CRC32, in blocks over threads (zlib
    releases the GIL)."""

    def bad_in(lo: int) -> list[int]:
        hi = min(lo + block, len(crc))
        return [i for i in range(lo, hi) if crc32(images.stored(i)) != int(crc[i])]

    with ThreadPoolExecutor(max(1, threads)) as pool:
        return [i for part in pool.map(bad_in, range(0, len(crc), block)) for i in part]


def verify(root: str | Path, threads: int | None = None) -> Verified:
    """Check every record of both splits of `root` against its stored CRC32, every label
    against the class count, and the fingerprint where the field can recompute it."""
    root = Path(root)
    threads = threads or os.cpu_count() or 1
    splits = [PackedDataset(root, split) for split in SPLITS]
    out = Verified(str(root), splits[0].encoding)
    for ds in splits:
        split, n = ds.split, ds.num_classes
        out.checked[split] = len(ds)
        bad = np.flatnonzero((ds.labels < 0) | (ds.labels >= n))
        out.damaged += [(split, int(i), f"label {ds.labels[i]} outside 0..{n - 1}") for i in bad]
        try:
            crc = np.load(root / crc_file(split))
        except (OSError, ValueError) as exc:
            out.damaged.append((split, -1, f"{crc_file(split)} unreadable ({exc})"))
            continue
        if crc.shape != (len(ds),):
            out.damaged.append((split, -1, f"{crc_file(split)} holds {crc.size} CRCs"))
            continue
        reason = "its bytes do not match their CRC32"
        out.damaged += [(split, i, reason) for i in _bad_records(ds.images, crc, threads)]
    out.damaged.sort(key=lambda d: (SPLITS.index(d[0]), d[1]))
    ds = splits[0]
    expect = ds.field.fingerprint(root, ds.classes, ds.image_size, None)
    out.fingerprint_ok = None if expect is None else expect == ds.fingerprint
    return out
