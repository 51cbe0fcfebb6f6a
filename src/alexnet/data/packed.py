"""Read a packed dataset directory written by `alexnet prepare` (format "alexnet-packed").

Layout of `OUT/` (see docs/data.md):
    header.json            format name + version, encoding, image size, classes, splits,
                           fingerprint
    {split}_images.npy     raw (version 1): uint8 (N, H, W, 3), memory-mapped on open
    {split}_images.jpeg    jpeg (version 2): the JPEG records, one after another, and
    {split}_offsets.npy    int64 (N + 1,): record i is bytes offsets[i]:offsets[i + 1]
    {split}_crc32.npy      uint32 (N,): CRC32 of each stored record (checked as it is read
                           for JPEG; by `alexnet prepare --verify` for both)
    {split}_labels.npy     int64 (N,)
    stats.npz              train-split statistics, pixels scaled to [0, 1] (paper §2, §4.1)
    report.json            skipped / repaired files
`header.json` is written last and the directory is renamed into place at the end, so a
directory with a valid header is always complete. Both encodings read the same way: a
sequence of (H x W x 3 uint8, label); JPEG records are decoded (and checked) on access.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.jpeg import JpegImages
from alexnet.data.layout import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER,
    READABLE_VERSIONS,
    REPORT,
    SPLITS,
    STATS,
    crc_file,
    images_file,
    labels_file,
    offsets_file,
)
from alexnet.errors import UserError

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "HEADER", "REPORT", "SPLITS", "STATS", "STAT_KEYS",
    "DatasetStats", "PackedDataset", "images_file", "labels_file", "open_dataset", "read_header",
]  # fmt: skip
STAT_KEYS = ("mean_image", "channel_mean", "channel_std", "rgb_cov", "eigval", "eigvec")


@dataclass(frozen=True)
class DatasetStats:
    """Train-split statistics in [0, 1] pixel scale (paper §2: the mean image; §4.1: the RGB
    covariance's eigenpairs for fancy-PCA lighting). For a JPEG dataset they are computed from
    the decoded pixels, the ones training sees."""

    mean_image: np.ndarray  # (H, W, 3)
    channel_mean: np.ndarray  # (3,)
    channel_std: np.ndarray  # (3,)
    rgb_cov: np.ndarray  # (3, 3)
    eigval: np.ndarray  # (3,), descending
    eigvec: np.ndarray  # (3, 3), eigenvectors as columns

    def is_grayscale(self) -> bool:
        """True when the 3 stored channels are copies (a packed grayscale dataset): the RGB
        covariance then has one non-zero eigenvalue."""
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
    if header.get("version") not in READABLE_VERSIONS:
        raise UserError(
            f"{path}: packed format version {header.get('version')} is not supported "
            f"(this alexnet reads versions {', '.join(map(str, READABLE_VERSIONS))}; "
            "run `alexnet prepare` again)"
        )
    if header.get("encoding", "raw") not in ("raw", "jpeg"):
        raise UserError(f"{path}: unknown image encoding {header.get('encoding')!r}")
    return header


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None)


def _jpeg_images(root: Path, split: str, entry: dict, size: tuple[int, int]) -> JpegImages:
    data_path = root / entry.get("images", images_file(split, "jpeg"))
    data = np.zeros(0, np.uint8)
    if data_path.stat().st_size:  # np.memmap cannot map an empty file
        data = np.asarray(np.memmap(data_path, np.uint8, "r"))
    offsets = _load(root / entry.get("offsets", offsets_file(split))).astype(np.int64, copy=False)
    crc = _load(root / entry.get("crc32", crc_file(split))).astype(np.uint32, copy=False)
    n = int(entry["count"])
    if offsets.shape != (n + 1,) or crc.shape != (n,) or int(offsets[-1]) != data.size:
        raise UserError(
            f"{root}: split {split!r}: index of {offsets.shape[0] - 1} records and "
            f"{crc.shape[0]} checksums over {data.size} bytes, header says {n} images"
        )
    return JpegImages(data, offsets, crc, size, str(root), split)


class PackedDataset:
    """One split of a packed dataset: a sequence of (H x W x 3 uint8 image, int label).

    Attributes: images ((N, H, W, 3) uint8: a read-only memmap for raw, a `JpegImages` that
    decodes on access for JPEG), labels (N,) int64, classes, num_classes, image_size (H, W),
    encoding ("raw" or "jpeg"), quality (JPEG quality or None), stats (train-split
    statistics, float64), fingerprint, root, split.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        header = read_header(self.root)
        splits = header["splits"]
        if split not in splits:
            raise UserError(f"{self.root}: no split {split!r} (has {', '.join(sorted(splits))})")
        self.split = split
        self.header = header
        self.encoding: str = header.get("encoding", "raw")
        self.quality: int | None = header.get("quality")
        self.classes: list[str] = list(header["classes"])
        self.num_classes = len(self.classes)
        h, w = header["image_size"]
        self.image_size: tuple[int, int] = (int(h), int(w))
        self.fingerprint: str = header["fingerprint"]
        count = int(splits[split]["count"])
        try:
            if self.encoding == "jpeg":
                self.images: Any = _jpeg_images(self.root, split, splits[split], self.image_size)
            elif count:
                self.images = _load(self.root / images_file(split), mmap=True)
            else:  # np.memmap cannot map an empty file
                self.images = np.zeros((0, h, w, 3), np.uint8)
            self.labels = _load(self.root / labels_file(split)).astype(np.int64, copy=False)
        except (OSError, ValueError) as exc:
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
        """A view of the first `n` images (all when n >= len): the same attributes (classes,
        stats, fingerprint, encoding), images and labels cut to n; nothing is read."""
        view = copy.copy(self)
        view.images, view.labels = self.images[: max(0, int(n))], self.labels[: max(0, int(n))]
        return view

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return np.asarray(self.images[index]), int(self.labels[index])

    def __repr__(self) -> str:
        h, w = self.image_size
        enc = "" if self.encoding == "raw" else f", encoding='jpeg', quality={self.quality}"
        return (
            f"PackedDataset({str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"size={h}x{w}, classes={self.num_classes}{enc})"
        )


def open_dataset(path: str | Path, split: str = "train") -> PackedDataset:
    """Open one split ("train" or "val") of a packed dataset directory (raw or JPEG)."""
    return PackedDataset(path, split)
