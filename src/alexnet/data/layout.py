"""The packed format's names the command line offers before anything heavy is imported:
splits, storage encodings (fields.py defines them), source layouts (sources.py)."""

from __future__ import annotations

SPLITS = ("train", "val")
ENCODINGS = ("raw", "jpeg")
DEFAULT_QUALITY = 90
SOURCE_NAMES = [
    "auto",
    "imagefolder",
    "ilsvrc2012",
    "kaggle",
    "fashion-mnist",
    "cifar10",
    "synthetic",
]
