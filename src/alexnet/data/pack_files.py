"""The files one split is written to in `OUT.partial/`: appended chunk by chunk, cut back to
the last recorded chunk when an interrupted `prepare` resumes, and turned into the final
files (see packed.py) at the end.

Working files: the image data (raw: a .npy whose header is written last; jpeg: the records),
`{split}_labels.bin` (int64), `{split}_crc32.bin` (uint32), raw only `{split}_digests.bin`
(16 bytes per chunk, for the fingerprint), jpeg only `{split}_offsets.bin` (int64 end offset
of each record). Their sizes follow from the progress state (count, bytes, chunks), so nothing
that grows with the dataset is rewritten after each chunk.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.layout import crc_file, images_file, labels_file, offsets_file

NPY_HEADER = 128  # bytes reserved for the .npy header, filled in when the count is known
DIGEST_BYTES = 16


def npy_header(shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    body = text.ljust(NPY_HEADER - 10 - 1) + "\n"
    if len(body) != NPY_HEADER - 10:
        raise ValueError(f"shape {shape} does not fit the reserved .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class SplitFiles:
    """Append-only working files of one split (encoding "raw" or "jpeg")."""

    def __init__(self, partial: Path, split: str, encoding: str, image_size: tuple[int, int]):
        self.partial, self.split, self.encoding = partial, split, encoding
        self.image_bytes = image_size[0] * image_size[1] * 3
        self.work = {"data": images_file(split, encoding), "labels": f"{split}_labels.bin",
                     "crc": f"{split}_crc32.bin"}  # fmt: skip
        if encoding == "raw":
            self.work["digests"] = f"{split}_digests.bin"
        else:
            self.work["offsets"] = f"{split}_offsets.bin"
        self._files: dict[str, Any] = {}

    def names(self) -> set[str]:
        """Every file name this split may leave in OUT.partial (working and final)."""
        final = {images_file(self.split, self.encoding), labels_file(self.split),
                 crc_file(self.split), offsets_file(self.split)}  # fmt: skip
        return set(self.work.values()) | final

    def create(self) -> None:
        for key, name in self.work.items():
            with open(self.partial / name, "wb") as f:
                if key == "data" and self.encoding == "raw":
                    f.write(b"\0" * NPY_HEADER)

    def _sizes(self, st: dict) -> dict[str, int]:
        n = st["count"]
        data = NPY_HEADER + n * self.image_bytes if self.encoding == "raw" else st["bytes"]
        sizes = {"data": data, "labels": 8 * n, "crc": 4 * n}
        if self.encoding == "raw":
            sizes["digests"] = DIGEST_BYTES * st["chunk"]
        else:
            sizes["offsets"] = 8 * n
        return sizes

    def open(self, st: dict) -> None:
        """Open every working file for appending, cut to what the state `st` records."""
        for key, size in self._sizes(st).items():
            f = open(self.partial / self.work[key], "r+b")
            f.truncate(size)
            f.seek(size)
            self._files[key] = f

    def append(self, res: dict, st: dict) -> None:
        """Write one processed chunk (see pack_chunk.process) and update `st` (not saved)."""
        f = self._files
        data = res["data"]
        f["data"].write(data.reshape(-1).data if isinstance(data, np.ndarray) else data)
        f["labels"].write(res["labels"].astype("<i8").tobytes())
        f["crc"].write(res["crc"].astype("<u4").tobytes())
        if self.encoding == "raw":
            f["digests"].write(bytes.fromhex(res["digest"]))
        else:
            ends = st["bytes"] + np.cumsum(res["lengths"], dtype=np.int64)
            f["offsets"].write(ends.astype("<i8").tobytes())
            st["bytes"] = int(ends[-1]) if len(ends) else st["bytes"]
        st["chunk"] += 1
        st["count"] += len(res["labels"])

    def sync(self) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def finalize(self, n: int, image_size: tuple[int, int]) -> list[str]:
        """Turn the working files into the final ones; returns the chunk digests (raw, hex)."""
        p = self.partial
        if self.encoding == "raw":
            with open(p / self.work["data"], "r+b") as f:
                f.write(npy_header((n, *image_size, 3)))
                f.flush()
                os.fsync(f.fileno())
        else:
            ends = np.fromfile(p / self.work["offsets"], "<i8")
            np.save(p / offsets_file(self.split), np.concatenate([[0], ends]).astype(np.int64))
        labels = np.fromfile(p / self.work["labels"], "<i8")
        np.save(p / labels_file(self.split), labels.astype(np.int64))
        np.save(p / crc_file(self.split), np.fromfile(p / self.work["crc"], "<u4"))
        digests = []
        if self.encoding == "raw":
            raw = (p / self.work["digests"]).read_bytes()
            digests = [raw[i : i + DIGEST_BYTES].hex() for i in range(0, len(raw), DIGEST_BYTES)]
        for key in ("labels", "crc", "digests", "offsets"):
            if key in self.work:
                (p / self.work[key]).unlink()
        return digests

    def header_entry(self, n: int) -> dict[str, Any]:
        """This split's entry in header.json (raw: as version 1 always wrote it)."""
        entry = {"count": n, "images": images_file(self.split, self.encoding),
                 "labels": labels_file(self.split)}  # fmt: skip
        if self.encoding == "jpeg":
            entry |= {"offsets": offsets_file(self.split), "crc32": crc_file(self.split)}
        return entry
