"""How a packed split stores its images, one field per encoding (as ffcv's fields): `RawField`
(format version 1): uint8 pixels in `{split}_images.npy` (N, H, W, 3), memory-mapped;
`JpegField` (version 2): one baseline JPEG per image (4:2:0, optimized Huffman tables; equal
channels as a one-channel JPEG) in `{split}_images.jpeg`, record i at bytes offsets[i]:
offsets[i + 1] of `{split}_offsets.npy`. Both: `{split}_labels.npy` int64 (N,) and
`{split}_crc32.npy` uint32 (N,), the CRC32 of each record's stored bytes, checked before a
JPEG record is decoded (a flipped bit often decodes to plausible garbage). No torch here."""

from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alexnet.data import DEFAULT_QUALITY, SPLITS
from alexnet.errors import UserError

Decoder = Callable[[Any, np.ndarray], None]  # (record bytes, out (H, W, 3) uint8) -> None
SUBSAMPLING = "4:2:0"
NPY_HEADER = 128  # bytes reserved for a raw split's .npy header, written when N is known
DIGEST_BYTES = 16


def labels_file(split: str) -> str:
    return f"{split}_labels.npy"


def crc_file(split: str) -> str:
    return f"{split}_crc32.npy"


def crc32(data) -> int:
    """CRC32 (zlib's, as TFRecord and PNG use) of a bytes-like object."""
    return zlib.crc32(data) & 0xFFFFFFFF


class DamagedRecord(UserError):
    """A stored record whose bytes no longer match their CRC32 (or that does not decode)."""

    def __init__(self, where: str, split: str, index: int, why: str) -> None:
        self.split, self.index = split, int(index)
        super().__init__(
            f"{where}: {split} record {index} is damaged ({why}); check the whole dataset "
            f"with `alexnet prepare --verify {where}` and prepare it again"
        )


# ---------------------------------------------------------------- reading
class RawImages(np.ndarray):
    """A raw split's (N, H, W, 3) uint8 pixels: the read-only memory map, with the reading
    methods of `JpegImages`."""

    decodes_on_device = False  # pixels: nothing to decode

    def stored(self, k: int) -> np.ndarray:
        """Record k's stored bytes (its H*W*3 pixels), as its CRC32 covers them."""
        return np.asarray(self[k]).reshape(-1)

    def read_into(self, idx: np.ndarray, out: np.ndarray, decode: Decoder | None = None) -> None:
        """Copy images `idx` into `out` (len(idx), H, W, 3): one slice when they are contiguous."""
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
            out[...] = self[idx[0] : idx[-1] + 1]
        elif len(idx):
            np.take(self, idx, axis=0, out=out)

    def rows(self, idx, buffer: Callable, decode: Decoder | None = None):
        """(rows, positions) holding images `idx`: the memory map itself (nothing copied)."""
        return self, idx


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes at `quality` (deterministic: same pixels, same bytes)."""
    gray = (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    pixels = image[..., 0] if gray else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB").save(
        buf, "JPEG", quality=int(quality), subsampling=SUBSAMPLING, optimize=True
    )
    return buf.getvalue()


def decode_pillow(data, out: np.ndarray) -> None:
    """Decode JPEG `data` into `out` (H, W, 3) uint8 (a one-channel JPEG is replicated)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.size != (out.shape[1], out.shape[0]) or im.mode not in ("L", "RGB"):
            raise ValueError(f"decodes to {im.mode} {im.size[0]}x{im.size[1]}")
        arr = np.asarray(im)
    out[...] = arr[..., None] if arr.ndim == 2 else arr


class JpegImages:
    """A split's JPEG records seen as the (N, H, W, 3) uint8 array they decode to: `images[i]`
    and `images[index_array]` decode; `images[a:b]` is a lazy view (nothing decoded)."""

    dtype = np.dtype(np.uint8)
    ndim = 4
    decodes_on_device = True  # DeviceLoader decodes a batch on CUDA at once (nvJPEG)

    def __init__(self, root: Path, split: str, entry: dict, image_size: tuple[int, int]) -> None:
        path = root / entry["images"]
        data = np.zeros(0, np.uint8)
        if path.stat().st_size:  # np.memmap cannot map an empty file
            data = np.asarray(np.memmap(path, np.uint8, "r"))
        offsets = np.load(root / entry["offsets"]).astype(np.int64)
        crc = np.load(root / entry["crc32"]).astype(np.uint32)
        n = int(entry["count"])
        if offsets.shape != (n + 1,) or crc.shape != (n,) or int(offsets[-1]) != data.size:
            raise UserError(
                f"{root}: split {split!r}: index of {offsets.shape[0] - 1} records and "
                f"{crc.shape[0]} checksums over {data.size} bytes, header says {n} images"
            )
        self._data, self._offsets, self._crc, self._ids = data, offsets, crc, range(n)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.where, self.split = str(root), split
        self.shape = (n, *self.image_size, 3)

    def __len__(self) -> int:
        return len(self._ids)

    def stored(self, k: int) -> np.ndarray:
        """The stored bytes of dataset record k (uint8 view), unchecked."""
        return self._data[int(self._offsets[k]) : int(self._offsets[k + 1])]

    def record(self, i: int) -> np.ndarray:
        """The stored bytes of item i (uint8 view), after checking their CRC32."""
        k = int(self._ids[i])
        data = self.stored(k)
        if crc32(data) != int(self._crc[k]):
            raise DamagedRecord(self.where, self.split, k, "its bytes do not match their CRC32")
        return data

    def read_into(self, idx, out: np.ndarray, decode: Decoder | None = None) -> None:
        """Decode items `idx` into `out` (len(idx), H, W, 3) uint8 with `decode` (Pillow)."""
        for j, i in enumerate(idx):
            data = self.record(int(i))
            try:
                (decode or decode_pillow)(data, out[j])
            except Exception as exc:  # noqa: BLE001 - any decoder failure names the record
                why = f"does not decode: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                raise DamagedRecord(self.where, self.split, int(self._ids[int(i)]), why) from None

    def rows(self, idx, buffer: Callable, decode: Decoder | None = None):
        """(rows, positions) holding images `idx`: decoded into `buffer(shape)`."""
        rows = buffer((len(idx), *self.shape[1:]))
        self.read_into(idx, rows, decode)
        return rows, range(len(idx))

    def __getitem__(self, key):
        if isinstance(key, slice):  # a view: the same records, fewer ids
            view = copy.copy(self)
            view._ids = self._ids[key]
            view.shape = (len(view._ids), *self.image_size, 3)
            return view
        idx = np.arange(len(self))[key]  # an int or an index array (IndexError out of range)
        out, _ = self.rows(idx.reshape(-1), functools.partial(np.empty, dtype=np.uint8))
        return out.reshape(*idx.shape, *self.shape[1:])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("JPEG images are decoded: a copy cannot be avoided")
        out, _ = self.rows(range(len(self)), functools.partial(np.empty, dtype=np.uint8))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"JpegImages({self.where!r}, split={self.split!r}, shape={self.shape})"


# ---------------------------------------------------------------- the fields
class RawField:
    """uint8 pixels in a memory-mappable .npy (no "encoding" in the header). Chunk index: a
    16-byte digest of each chunk's images and labels, for the fingerprint."""

    name, version, suffix = "raw", 1, "npy"
    parallel = False  # writing is a copy: no work for worker processes
    preamble = b"\0" * NPY_HEADER  # the .npy header, written by `finish` when N is known

    def __init__(self, quality: int | None = None) -> None:
        self.quality = None

    def header(self) -> dict[str, Any]:
        return {}

    def images_file(self, split: str) -> str:
        return f"{split}_images.{self.suffix}"

    def split_entry(self, split: str, n: int) -> dict[str, Any]:
        return {"count": n, "images": self.images_file(split), "labels": labels_file(split)}

    def encode(self, images: np.ndarray, labels: np.ndarray):
        """A chunk (n, H, W, 3) -> (data to append, the n records the CRC32s cover, bytes to
        append to the chunk index, the pixels training sees (for the statistics))."""
        digest = hashlib.blake2b(images.tobytes(), digest_size=DIGEST_BYTES)
        digest.update(labels.astype("<i8").tobytes())
        return images, images, digest.digest(), images

    def finish(self, partial: Path, split: str, n: int, image_size, index: bytes) -> list[str]:
        """Write the .npy header; returns the split's chunk digests (hex)."""
        shape = repr({"descr": "|u1", "fortran_order": False, "shape": (n, *image_size, 3)})
        body = shape.ljust(NPY_HEADER - 11) + "\n"  # (N, H, W, 3) fits for any int64 N
        with open(partial / self.images_file(split), "r+b") as f:
            f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1"))
            f.flush()
            os.fsync(f.fileno())
        return [index[i : i + DIGEST_BYTES].hex() for i in range(0, len(index), DIGEST_BYTES)]

    def open(self, root: Path, split: str, entry: dict, image_size: tuple[int, int]):
        if not int(entry["count"]):  # np.memmap cannot map an empty file
            return np.zeros((0, *image_size, 3), np.uint8).view(RawImages)
        path = root / entry.get("images", self.images_file(split))
        return np.load(path, mmap_mode="r").view(RawImages)

    def fingerprint(self, root: Path, classes: list[str], image_size, digests: dict | None):
        """Per split its count and chunk digests, then class names, image size, version 1.
        None when the digests are not at hand (a written dataset: chunks are not stored)."""
        if digests is None:
            return None
        fp = hashlib.sha256()
        for split in SPLITS:
            n = len(np.load(root / labels_file(split)))
            fp.update(f"{split}:{n}:".encode() + "".join(digests[split]).encode())
        fp.update(json.dumps([classes, list(image_size), self.version]).encode())
        return fp.hexdigest()[:32]


class JpegField(RawField):
    """One JPEG record per image at `quality` (format version 2). Chunk index: the records'
    lengths (int64), turned into `{split}_offsets.npy` by `finish`."""

    name, version, suffix = "jpeg", 2, "jpeg"
    parallel = True  # writing: JPEG encoding is CPU work, done in worker processes
    preamble = b""

    def __init__(self, quality: int | None = None) -> None:
        quality = DEFAULT_QUALITY if quality is None else quality
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise UserError(f"JPEG quality {quality!r}: must be an integer in 1..100")
        self.quality = quality

    def header(self) -> dict[str, Any]:
        return {"encoding": self.name, "quality": self.quality, "subsampling": SUBSAMPLING}

    def split_entry(self, split: str, n: int) -> dict[str, Any]:
        files = {"offsets": f"{split}_offsets.npy", "crc32": crc_file(split)}
        return {**super().split_entry(split, n), **files}

    def encode(self, images: np.ndarray, labels: np.ndarray):
        """As RawField.encode; the index holds the records' lengths, the pixels are decoded."""
        records = [encode_jpeg(img, self.quality) for img in images]
        pixels = np.empty_like(images)
        for rec, out in zip(records, pixels, strict=True):
            decode_pillow(rec, out)  # = the loader's decoder's pixels (tested)
        lengths = np.array([len(r) for r in records], "<i8")
        return b"".join(records), records, lengths.tobytes(), pixels

    def finish(self, partial: Path, split: str, n: int, image_size, index: bytes) -> list[str]:
        ends = np.cumsum(np.frombuffer(index, "<i8"), dtype=np.int64)
        np.save(partial / f"{split}_offsets.npy", np.concatenate([np.zeros(1, np.int64), ends]))
        return []

    def open(self, root: Path, split: str, entry: dict, image_size: tuple[int, int]):
        return JpegImages(root, split, entry, image_size)

    def fingerprint(self, root: Path, classes: list[str], image_size, digests=None) -> str:
        """From the index files: for each split the count, every record's CRC32 and length and
        every label; then class names, image size, version 2, "jpeg" and the quality. A changed
        record changes its CRC32 (verify checks those), so this covers the stored bytes."""
        fp = hashlib.sha256()
        for split in SPLITS:
            crc = np.load(root / crc_file(split)).astype("<u4")
            lengths = np.diff(np.load(root / f"{split}_offsets.npy")).astype("<i8")
            labels = np.load(root / labels_file(split)).astype("<i8")
            fp.update(f"{split}:{len(crc)}:".encode())
            for part in (crc, lengths, labels):
                fp.update(part.tobytes())
        tail = [classes, list(image_size), self.version, self.name, int(self.quality)]
        fp.update(json.dumps(tail).encode())
        return fp.hexdigest()[:32]


Field = RawField | JpegField
FIELDS: dict[str, type[RawField]] = {f.name: f for f in (RawField, JpegField)}


def make_field(name: str, quality: int | None = None, where: str = "encoding") -> Field:
    """The field that stores encoding `name` (at JPEG `quality`); UserError for an unknown one."""
    if name not in FIELDS:
        raise UserError(f"{where}: unknown image encoding {name!r} (one of {', '.join(FIELDS)})")
    return FIELDS[name](quality)


def field_of(header: dict[str, Any], where: str) -> Field:
    """The field a packed dataset's header names (no "encoding": raw, as version 1 wrote it)."""
    return make_field(header.get("encoding", "raw"), header.get("quality"), where)
