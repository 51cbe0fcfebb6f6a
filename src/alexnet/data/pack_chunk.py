"""One chunk of `prepare`'s work (run in a worker process): load images from the source,
store them raw or as JPEG records, and compute what the writer needs: per-record CRC32, for
raw the chunk's content digest (part of the fingerprint), and the exact statistics sums
(paper §2 mean image, §4.1 RGB PCA) of the pixels as training will see them (for JPEG: the
decoded records).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from alexnet.data import jpeg
from alexnet.data import stats as stats_mod
from alexnet.data.source_base import Source


def _crcs(records) -> np.ndarray:
    return np.array([jpeg.crc32(r) for r in records], dtype=np.uint32).reshape(-1)


def encode_jpeg(images: np.ndarray, quality: int) -> tuple[list[bytes], np.ndarray]:
    """JPEG records of images (n, H, W, 3) and the (n, H, W, 3) uint8 pixels they decode to."""
    records = [jpeg.encode(img, quality) for img in images]
    decoded = np.empty_like(images)
    for rec, out in zip(records, decoded, strict=True):
        jpeg.decode_pillow(rec, out)  # = the loader's decoder's pixels (tested)
    return records, decoded


def process(source: Source, split: str, start: int, stop: int, with_stats: bool,
            encoding: str = "raw", quality: int = 90) -> dict[str, Any]:  # fmt: skip
    """Items [start, stop) of `split` -> {"data" (raw: uint8 (n, H, W, 3); jpeg: the records
    concatenated, bytes), "lengths" (jpeg: int64 (n,) record sizes), "crc" uint32 (n,),
    "labels" int64 (n,), "skipped", "repaired", "sums" (train only), "digest" (raw: hex)}."""
    chunk = source.load(split, start, stop)
    images = np.ascontiguousarray(chunk.images, dtype=np.uint8)
    h, w = source.image_size
    if images.shape[1:] != (h, w, 3) or len(images) != len(chunk.labels):
        raise RuntimeError(f"{source.name}: chunk of shape {images.shape}, expected (n,{h},{w},3)")
    labels = np.asarray(chunk.labels, np.int64)
    if encoding == "jpeg":
        records, pixels = encode_jpeg(images, quality)
        data: Any = b"".join(records)
        lengths = np.array([len(r) for r in records], dtype=np.int64)
        crc, digest = _crcs(records), None  # the fingerprint hashes the index (jpeg.fingerprint)
    else:
        pixels, data, lengths = images, images, None
        blake = hashlib.blake2b(images.tobytes(), digest_size=16)
        blake.update(labels.astype("<i8").tobytes())
        crc, digest = _crcs(images.reshape(len(images), h * w * 3)), blake.hexdigest()
    return {
        "data": data,
        "lengths": lengths,
        "crc": crc,
        "labels": labels,
        "skipped": chunk.skipped,
        "repaired": chunk.repaired,
        "sums": stats_mod.chunk_sums(pixels) if with_stats else None,
        "digest": digest,
    }
