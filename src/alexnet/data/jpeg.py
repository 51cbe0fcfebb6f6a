"""JPEG records of a packed dataset: encoding (prepare), checked decoding (readers, loader).

Each stored image is one baseline JPEG (Pillow/libjpeg-turbo, 4:2:0 chroma subsampling,
optimized Huffman tables; images whose three channels are equal, e.g. Fashion-MNIST, as a
one-channel JPEG), with a CRC32 of its bytes in the split's index. Every read checks the CRC
first: a flipped bit on disk often decodes to garbage without any decoder complaint, so a
damaged record raises `DamagedRecord` (one line: dataset, split, index, how to check it).

This module needs no torch: readers (`ds[i]`, `np.asarray(ds.images)`) and `prepare` (the
statistics of the decoded pixels) decode with Pillow. DeviceLoader decodes with the faster
torchvision.io.decode_jpeg instead (jpeg_decode.py; both are libjpeg-turbo with the same
settings and give the same pixels, tested), and on CUDA whole batches with nvJPEG.
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alexnet.data.layout import JPEG_FORMAT_VERSION, SPLITS, crc_file, labels_file, offsets_file
from alexnet.errors import UserError

SUBSAMPLING = "4:2:0"
Decoder = Callable[[Any, np.ndarray], None]  # (record bytes, out (H, W, 3) uint8) -> None


class DamagedRecord(UserError):
    """A stored record whose bytes no longer match their CRC32 (or that does not decode)."""

    def __init__(self, where: str, split: str, index: int, why: str) -> None:
        self.split, self.index = split, int(index)
        super().__init__(
            f"{where}: {split} record {index} is damaged ({why}); check the whole dataset "
            f"with `alexnet prepare --verify {where}` and prepare it again"
        )


def is_gray(image: np.ndarray) -> bool:
    """True when the three channels of an (H, W, 3) image are equal."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 1], image[..., 2]))  # fmt: skip


def encode(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes at `quality` (deterministic: same pixels, same bytes)."""
    pil = Image.fromarray(np.ascontiguousarray(image[..., 0]), "L") if is_gray(image) else (
        Image.fromarray(np.ascontiguousarray(image), "RGB"))  # fmt: skip
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=int(quality), subsampling=SUBSAMPLING, optimize=True)
    return buf.getvalue()


def crc32(data) -> int:
    """CRC32 (zlib's, as TFRecord and PNG use) of a bytes-like object."""
    return zlib.crc32(data) & 0xFFFFFFFF


def decode_pillow(data, out: np.ndarray) -> None:
    """Decode JPEG `data` into `out` (H, W, 3) uint8 (a one-channel JPEG is replicated)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.size != (out.shape[1], out.shape[0]) or im.mode not in ("L", "RGB"):
            raise ValueError(f"decodes to {im.mode} {im.size[0]}x{im.size[1]}")
        arr = np.asarray(im)
    out[...] = arr[..., None] if arr.ndim == 2 else arr


class JpegImages:
    """A split's JPEG records seen as the (N, H, W, 3) uint8 array they decode to.

    `images[i]` decodes record i ((H, W, 3)); `images[a:b]` is a lazy view of records a..b-1
    (nothing decoded); `images[index_array]` and `np.asarray(images)` decode (n, H, W, 3).
    Every record's CRC32 is checked before it is decoded (`DamagedRecord` otherwise).
    `data`: uint8 (total bytes,), `offsets`: int64 (N + 1,), `crc`: uint32 (N,).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, data: np.ndarray, offsets: np.ndarray, crc: np.ndarray,
                 image_size: tuple[int, int], where: str, split: str,
                 ids: range | np.ndarray | None = None) -> None:  # fmt: skip
        self._data, self._offsets, self._crc = data, offsets, crc
        self._ids = range(len(crc)) if ids is None else ids
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.where, self.split = where, split
        self.shape = (len(self._ids), *self.image_size, 3)

    def __len__(self) -> int:
        return len(self._ids)

    def record_number(self, i: int) -> int:
        """The dataset index of this view's item i."""
        return int(self._ids[i])

    def stored(self, k: int) -> np.ndarray:
        """The stored bytes of dataset record k (uint8 view), unchecked."""
        return self._data[int(self._offsets[k]) : int(self._offsets[k + 1])]

    def record(self, i: int) -> np.ndarray:
        """The stored bytes of item i (uint8 view), after checking their CRC32."""
        k = self.record_number(i)
        data = self.stored(k)
        if crc32(data) != int(self._crc[k]):
            raise DamagedRecord(self.where, self.split, k, "its bytes do not match their CRC32")
        return data

    def records(self, idx) -> list[np.ndarray]:
        """The checked records of items `idx`, in order."""
        return [self.record(int(i)) for i in idx]

    def read_into(self, idx, out: np.ndarray, decode: Decoder = decode_pillow) -> None:
        """Decode items `idx` into `out` (len(idx), H, W, 3) uint8 with `decode`."""
        for j, i in enumerate(idx):
            data = self.record(int(i))
            try:
                decode(data, out[j])
            except Exception as exc:  # noqa: BLE001 - any decoder failure names the record
                why = f"does not decode: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                k = self.record_number(int(i))
                raise DamagedRecord(self.where, self.split, k, why) from None

    def _decode(self, idx) -> np.ndarray:
        out = np.empty((len(idx), *self.image_size, 3), np.uint8)
        self.read_into(idx, out)
        return out

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            n = len(self)
            if not -n <= key < n:
                raise IndexError(f"index {key} out of range for {n} images")
            return self._decode([int(key) % n])[0]
        if isinstance(key, slice):
            ids = self._ids[key]
            return JpegImages(self._data, self._offsets, self._crc, self.image_size,
                              self.where, self.split, ids)  # fmt: skip
        idx = np.arange(len(self))[np.asarray(key)]
        return self._decode(idx.reshape(-1)).reshape(*idx.shape, *self.shape[1:])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("JPEG images are decoded: a copy cannot be avoided")
        out = self._decode(range(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"JpegImages({self.where!r}, split={self.split!r}, shape={self.shape})"


def fingerprint(root, classes: list[str], image_size: tuple[int, int], quality: int) -> str:
    """A JPEG dataset's content identity (header.json "fingerprint"), from its index files:
    for each split the count, every record's CRC32 and length and every label; then class
    names, image size, format version 2, "jpeg" and the quality. A changed record changes its
    CRC32 (the verifier checks those against the bytes), so this covers the stored bytes."""
    root = Path(root)
    fp = hashlib.sha256()
    for split in SPLITS:
        crc = np.load(root / crc_file(split)).astype("<u4")
        lengths = np.diff(np.load(root / offsets_file(split))).astype("<i8")
        labels = np.load(root / labels_file(split)).astype("<i8")
        fp.update(f"{split}:{len(crc)}:".encode())
        for part in (crc, lengths, labels):
            fp.update(part.tobytes())
    tail = [classes, list(image_size), JPEG_FORMAT_VERSION, "jpeg", int(quality)]
    fp.update(json.dumps(tail).encode())
    return fp.hexdigest()[:32]
