"""Read a packed dataset directory written by `alexnet prepare` (format "alexnet-packed", v1).

Layout of `OUT/` (see docs/data.md):
    header.json            format name + version, image size, classes, splits, fingerprint
    {split}_images.npy     uint8 (N, H, W, 3), memory-mapped on open (always 3 channels)
    {split}_labels.npy     int64 (N,)
    stats.npz              train-split statistics, pixels scaled to [0, 1] (paper §2, §4.1)
    report.json            skipped / repaired files
`header.json` is written last and the directory is renamed into place at the end, so a
directory with a valid header is always complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import UserError

FORMAT_NAME = "alexnet-packed"
FORMAT_VERSION = 1
HEADER = "header.json"
STATS = "stats.npz"
REPORT = "report.json"
SPLITS = ("train", "val")
STAT_KEYS = ("mean_image", "channel_mean", "channel_std", "rgb_cov", "eigval", "eigvec")


@dataclass(frozen=True)
class DatasetStats:
    """Train-split statistics in [0, 1] pixel scale (paper §2: the mean image; §4.1: the RGB
    covariance's eigenpairs for fancy-PCA lighting)."""

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


def images_file(split: str) -> str:
    return f"{split}_images.npy"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


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
    if header.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: packed format version {header.get('version')} is not supported "
            f"(this alexnet reads version {FORMAT_VERSION}; run `alexnet prepare` again)"
        )
    return header


class PackedDataset:
    """One split of a packed dataset: a sequence of (H x W x 3 uint8 image, int label).

    Attributes: images (N, H, W, 3) uint8 read-only memmap, labels (N,) int64, classes,
    num_classes, image_size (H, W), stats (train-split statistics, float64), fingerprint, root.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        header = read_header(self.root)
        splits = header["splits"]
        if split not in splits:
            raise UserError(f"{self.root}: no split {split!r} (has {', '.join(sorted(splits))})")
        self.split = split
        self.header = header
        self.classes: list[str] = list(header["classes"])
        self.num_classes = len(self.classes)
        h, w = header["image_size"]
        self.image_size: tuple[int, int] = (int(h), int(w))
        self.fingerprint: str = header["fingerprint"]
        count = int(splits[split]["count"])
        try:
            if count:
                self.images = np.load(self.root / images_file(split), mmap_mode="r")
            else:  # np.memmap cannot map an empty file
                self.images = np.zeros((0, h, w, 3), np.uint8)
            self.labels = np.load(self.root / labels_file(split)).astype(np.int64, copy=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.root}: damaged split {split!r} ({exc})") from None
        if self.images.shape != (count, h, w, 3) or self.labels.shape != (count,):
            raise UserError(
                f"{self.root}: split {split!r} has images {self.images.shape} and labels "
                f"{self.labels.shape}, header says {count} images of {h}x{w}"
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

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return np.asarray(self.images[index]), int(self.labels[index])

    def __repr__(self) -> str:
        h, w = self.image_size
        return (
            f"PackedDataset({str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"size={h}x{w}, classes={self.num_classes})"
        )


def open_dataset(path: str | Path, split: str = "train") -> PackedDataset:
    """Open one split ("train" or "val") of a packed dataset directory."""
    return PackedDataset(path, split)
