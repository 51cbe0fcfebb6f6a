"""`alexnet prepare --verify OUT`: re-read a packed dataset and name every damaged record.

Each record's stored bytes (raw: the H*W*3 image bytes; JPEG: the record) are checked against
the CRC32 that `prepare` stored for it (`{split}_crc32.npy`), every label against the class
count, and for JPEG the fingerprint is recomputed from the index (CRC32s, record lengths,
labels), so a changed index or label file is found too. Raw datasets written before the
checksums existed have no per-record CRC32: for those the fingerprint is recomputed when it
can be (array sources: chunks of 8192 images, none skipped) and the damage cannot be placed.
CRC32 runs in threads (zlib releases the GIL), block by block: memory stays flat.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet.data import jpeg
from alexnet.data.layout import FILE_SOURCES, SPLITS, crc_file
from alexnet.data.packed import PackedDataset, read_header

BLOCK = 1024  # records per CRC task
NO_CRC = (
    "no per-record CRC32 (packed before they were stored): a damaged record cannot be "
    "named; prepare the dataset again to add them"
)


@dataclass
class Damage:
    split: str
    index: int
    reason: str


@dataclass
class Verified:
    """What `verify` found: records checked per split, damaged records (split, index,
    reason), whether the fingerprint matches (None: it cannot be recomputed), notes."""

    root: str
    encoding: str
    checked: dict[str, int] = field(default_factory=dict)
    damaged: list[Damage] = field(default_factory=list)
    fingerprint_ok: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged and self.fingerprint_ok is not False


def _record_bytes(ds: PackedDataset, i: int):
    return ds.images.stored(i) if ds.encoding == "jpeg" else ds.images[i].reshape(-1)


def _bad_in(ds: PackedDataset, crc: np.ndarray, lo: int, hi: int) -> list[int]:
    return [i for i in range(lo, hi) if jpeg.crc32(_record_bytes(ds, i)) != int(crc[i])]


def _check_records(ds: PackedDataset, crc: np.ndarray, threads: int) -> list[int]:
    n = len(ds)
    blocks = [(lo, min(lo + BLOCK, n)) for lo in range(0, n, BLOCK)]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        found = pool.map(lambda b: _bad_in(ds, crc, *b), blocks)
        return [i for part in found for i in part]


def _raw_fingerprint(root: Path, header: dict) -> str | None:
    """The fingerprint of a raw dataset as `prepare` computes it, when its chunks can be
    known (an array source: 8192 images a chunk, none skipped); else None."""
    if header.get("input", {}).get("source") in FILE_SOURCES:
        return None
    fp = hashlib.sha256()
    for split in SPLITS:
        ds = PackedDataset(root, split)
        fp.update(f"{split}:{len(ds)}:".encode())
        for lo in range(0, len(ds), 8192):
            d = hashlib.blake2b(np.ascontiguousarray(ds.images[lo : lo + 8192]), digest_size=16)
            d.update(ds.labels[lo : lo + 8192].astype("<i8").tobytes())
            fp.update(d.hexdigest().encode())
    tail = [header["classes"], header["image_size"], header["version"]]
    fp.update(json.dumps(tail).encode())
    return fp.hexdigest()[:32]


def verify(root: str | Path, threads: int | None = None) -> Verified:
    """Check every record of both splits of the packed dataset `root` (raw or JPEG)."""
    root = Path(root)
    header = read_header(root)
    threads = threads or os.cpu_count() or 1
    out = Verified(str(root), header.get("encoding", "raw"))
    has_crc = all((root / crc_file(s)).is_file() for s in SPLITS)
    for split in SPLITS:
        ds = PackedDataset(root, split)
        out.checked[split] = len(ds)
        bad = np.flatnonzero((ds.labels < 0) | (ds.labels >= ds.num_classes))
        out.damaged += [
            Damage(split, int(i), f"label {int(ds.labels[i])} outside 0..{ds.num_classes - 1}")
            for i in bad
        ]
        if has_crc:
            crc = np.load(root / crc_file(split))
            if crc.shape != (len(ds),):
                out.damaged.append(Damage(split, -1, f"{crc_file(split)} holds {crc.size} CRCs"))
                continue
            out.damaged += [
                Damage(split, i, "its bytes do not match their CRC32")
                for i in _check_records(ds, crc, threads)
            ]
    out.damaged.sort(key=lambda d: (SPLITS.index(d.split), d.index))
    if out.encoding == "jpeg":
        size = tuple(header["image_size"])
        expect = jpeg.fingerprint(root, header["classes"], size, header["quality"])
        out.fingerprint_ok = expect == header["fingerprint"]
    else:
        if not has_crc:
            out.notes.append(NO_CRC)
        expect = None if has_crc else _raw_fingerprint(root, header)
        out.fingerprint_ok = None if expect is None else expect == header["fingerprint"]
    return out


def summary_lines(v: Verified, limit: int = 20) -> list[str]:
    """What `alexnet prepare --verify` prints: one line per damaged record (at most `limit`),
    then one line of totals."""
    lines = [f"{v.root}: {d.split} record {d.index}: {d.reason}" for d in v.damaged[:limit]]
    if len(v.damaged) > limit:
        lines.append(f"{v.root}: ... and {len(v.damaged) - limit} more damaged records")
    counts = " + ".join(f"{n} {s}" for s, n in v.checked.items())
    fp = {True: "fingerprint matches", False: "FINGERPRINT DOES NOT MATCH", None: ""}
    parts = [f"{v.root}: {v.encoding}, {counts} records checked", f"{len(v.damaged)} damaged"]
    parts += [fp[v.fingerprint_ok]] if fp[v.fingerprint_ok] else []
    lines.append(", ".join(parts) + ("" if v.ok else "; prepare the dataset again"))
    return lines + [f"{v.root}: note: {n}" for n in v.notes]
