"""The packed format's names: format, versions, encodings, file names, splits, source names.

No heavy imports (the command line builds its parsers from this module). The format itself is
described in packed.py (reader) and pack.py (writer).
"""

from __future__ import annotations

FORMAT_NAME = "alexnet-packed"
# version 1: raw uint8 images (a memory-mappable .npy); version 2 adds `encoding` ("jpeg":
# JPEG records + an offsets index). Raw datasets are still written as version 1, unchanged.
FORMAT_VERSION = 1
JPEG_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = "header.json"
STATS = "stats.npz"
REPORT = "report.json"
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
# sources that decode image files in worker processes (chunks of 64 images, not 8192)
FILE_SOURCES = ("imagefolder", "ilsvrc2012", "kaggle")


def images_file(split: str, encoding: str = "raw") -> str:
    """The split's image data: a .npy (raw) or the concatenated JPEG records."""
    return f"{split}_images.npy" if encoding == "raw" else f"{split}_images.jpeg"


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


def offsets_file(split: str) -> str:
    """JPEG only: int64 (N + 1,) byte offsets; record i is data[offsets[i]:offsets[i + 1]]."""
    return f"{split}_offsets.npy"


def crc_file(split: str) -> str:
    """uint32 (N,) CRC32 of each stored record (raw: the H*W*3 image bytes; JPEG: the record)."""
    return f"{split}_crc32.npy"
