"""`prepare`: pack a `Source` into the packed format (see packed.py), in one pass that also
computes the training statistics (paper §2 mean image, §4.1 RGB PCA).

Atomic and resumable: everything is written into `OUT.partial/`; after each chunk the data is
fsync'ed and then `progress.npz` (chunk counter, byte offsets, exact integer sums, chunk
digests) is replaced atomically. A rerun with the same input truncates the files to the last
recorded chunk and continues, giving byte-identical output. `header.json` is written last and
the directory is renamed to OUT only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data import stats as stats_mod
from alexnet.data.outdir import check_output, check_partial
from alexnet.data.packed import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER,
    REPORT,
    SPLITS,
    STATS,
    images_file,
    labels_file,
)
from alexnet.data.source_base import Source
from alexnet.errors import UserError
from alexnet.fileio import atomic_write, atomic_write_text, fsync_dir
from alexnet.progress import progress_bar

NPY_HEADER = 128  # bytes reserved for the .npy header, filled in when the count is known
PROGRESS = "progress.npz"


def _npy_header(shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    body = text.ljust(NPY_HEADER - 10 - 1) + "\n"
    if len(body) != NPY_HEADER - 10:
        raise ValueError(f"shape {shape} does not fit the reserved .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


# ---------------------------------------------------------------- worker side
_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    global _SOURCE
    _SOURCE = source
    # Ctrl-C reaches the whole process group: only the parent handles it (and stops us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(task: tuple[str, int, int, bool]) -> dict[str, Any]:
    split, start, stop, with_stats = task
    assert _SOURCE is not None
    return _process(_SOURCE, split, start, stop, with_stats)


def _process(source: Source, split: str, start: int, stop: int, with_stats: bool) -> dict:
    chunk = source.load(split, start, stop)
    images = np.ascontiguousarray(chunk.images, dtype=np.uint8)
    h, w = source.image_size
    if images.shape[1:] != (h, w, 3) or len(images) != len(chunk.labels):
        raise RuntimeError(f"{source.name}: chunk of shape {images.shape}, expected (n,{h},{w},3)")
    digest = hashlib.blake2b(images.tobytes(), digest_size=16)
    digest.update(np.asarray(chunk.labels, "<i8").tobytes())
    return {
        "images": images,
        "labels": np.asarray(chunk.labels, np.int64),
        "skipped": chunk.skipped,
        "repaired": chunk.repaired,
        "sums": stats_mod.chunk_sums(images) if with_stats else None,
        "digest": digest.hexdigest(),
    }


# ---------------------------------------------------------------- state
def _save_state(partial: Path, state: dict, sums: dict[str, np.ndarray]) -> None:
    atomic_write(
        partial / PROGRESS, lambda f: np.savez(f, state=np.array(json.dumps(state)), **sums)
    )


def _load_state(partial: Path) -> tuple[dict, dict[str, np.ndarray]] | None:
    try:
        with np.load(partial / PROGRESS) as z:
            state = json.loads(str(z["state"]))
            sums = {k: np.array(z[k]) for k in z.files if k != "state"}
        return state, sums
    except Exception:  # noqa: BLE001 - no or damaged progress: start over
        return None


# ---------------------------------------------------------------- main entry
def prepare(
    source: Source,
    out: str | Path,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    progress: bool = True,
    src: str | Path | None = None,
) -> dict[str, Any]:
    """Pack `source` into directory `out` (train + val splits, stats, header, report.json).
    Returns the report: {"splits", "classes", "skipped", "repaired"}. With `overwrite`, `out`
    may be replaced only when it is a packed dataset or empty, and never when it is, holds or
    lies inside `src` (the directory read)."""
    out = Path(out)
    check_output(out, src, overwrite)
    partial = out.with_name(out.name + ".partial")
    workers = max(1, workers if workers else (os.cpu_count() or 1))
    chunk_size = chunk_size or (64 if source.parallel else 8192)
    h, w = source.image_size
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "input": source.describe(),
        "classes": source.classes,
        "chunk_size": chunk_size,
    }
    config = json.loads(json.dumps(config))
    loaded = _load_state(partial) if partial.is_dir() else None
    if loaded is not None and loaded[0].get("config") == config:
        state, sums = loaded
        done = sum(st["count"] for st in state["splits"].values())
        print(f"resuming the interrupted run in {partial} ({done} images done)", file=sys.stderr)
    else:
        if partial.exists():
            check_partial(partial, _own_files())
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        state = {"config": config, "splits": {}, "report_bytes": 0}
        sums = stats_mod.zero_sums(h, w)
        for split in SPLITS:
            state["splits"][split] = {"chunk": 0, "count": 0, "digests": [], "done": False}
            with open(partial / images_file(split), "wb") as f:
                f.write(b"\0" * NPY_HEADER)
            open(partial / f"{split}_labels.bin", "wb").close()
        open(partial / "report.jsonl", "wb").close()
        _save_state(partial, state, sums)

    pool = None
    try:
        for split in SPLITS:
            if state["splits"][split]["done"]:
                continue
            if pool is None and source.parallel and workers > 1:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=(source,))
            sums = _pack_split(source, split, partial, state, sums, chunk_size, pool, progress)
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        raise
    if pool is not None:
        pool.close()
        pool.join()
    _check_not_empty(source, partial, state)
    report = _finalize(source, partial, state, sums)
    if out.exists():
        check_output(out, src, overwrite)  # still what it was when we started
        shutil.rmtree(out)
    os.replace(partial, out)
    fsync_dir(out.parent)
    return report


def _own_files() -> set[str]:
    names = {PROGRESS, PROGRESS + ".tmp", "report.jsonl", REPORT, STATS, HEADER, HEADER + ".tmp"}
    for split in SPLITS:
        names |= {images_file(split), labels_file(split), f"{split}_labels.bin"}
    return names


def _stop_pool(pool) -> None:
    """Stop the workers at once: kill them, then let `terminate` tidy up in a daemon thread.
    It can block for ever on the task queue's lock when a worker held it (waiting for a task)
    as it died; the data on disk is consistent either way and the process may exit."""
    for proc in list(getattr(pool, "_pool", [])):
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(timeout=1)


def _read_report(source: Source, partial: Path) -> tuple[list[dict], list[dict]]:
    skipped = [{"path": p, "reason": r} for p, r in source.index_skipped]
    repaired: list[dict] = []
    with open(partial / "report.jsonl") as f:
        for line in f:
            entry = json.loads(line)
            target = skipped if entry.pop("kind") == "skipped" else repaired
            target.append(entry)
    return skipped, repaired


def _check_not_empty(source: Source, partial: Path, state: dict) -> None:
    """A split whose every image was skipped: write the report and say where it is."""
    empty = [
        s for s in SPLITS if state["splits"][s]["count"] == 0 and source.count(s) > 0
    ]  # fmt: skip
    if not empty:
        return
    skipped, repaired = _read_report(source, partial)
    report = {"splits": {}, "classes": source.classes, "skipped": skipped, "repaired": repaired}
    (partial / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    split = empty[0]
    raise UserError(
        f"{source.name}: no usable images in the {split} split ({source.count(split)} tried, "
        f"all skipped; see {partial / REPORT} for why)"
    )


def _pack_split(source, split, partial, state, sums, chunk_size, pool, progress) -> dict:
    st = state["splits"][split]
    n_items = source.count(split)
    n_chunks = math.ceil(n_items / chunk_size)
    first = st["chunk"]
    h, w = source.image_size
    img_bytes = h * w * 3
    paths = [
        partial / images_file(split),
        partial / f"{split}_labels.bin",
        partial / "report.jsonl",
    ]
    sizes = [NPY_HEADER + st["count"] * img_bytes, st["count"] * 8, state["report_bytes"]]
    files = []
    for path, size in zip(paths, sizes, strict=True):
        f = open(path, "r+b")
        f.truncate(size)
        f.seek(size)
        files.append(f)
    tasks = [
        (split, k * chunk_size, min((k + 1) * chunk_size, n_items), split == "train")
        for k in range(first, n_chunks)
    ]
    results = pool.imap(_work, tasks) if pool else (_process(source, *t) for t in tasks)
    bar = None
    if progress:
        bar = progress_bar(total=n_items, initial=min(first * chunk_size, n_items), unit="img",
                   desc=f"prepare {split}", dynamic_ncols=True, smoothing=0.1)  # fmt: skip
    try:
        for (_, start, stop, _), res in zip(tasks, results, strict=True):
            f_img, f_lab, f_rep = files
            f_img.write(res["images"].reshape(-1).data)  # also an empty chunk
            f_lab.write(res["labels"].astype("<i8").tobytes())
            lines = [
                json.dumps({"kind": kind, "path": p, "reason": r}) + "\n"
                for kind in ("skipped", "repaired")
                for p, r in res[kind]
            ]
            f_rep.write("".join(lines).encode())
            for f in files:
                f.flush()
                os.fsync(f.fileno())
            if res["sums"] is not None:
                stats_mod.add_sums(sums, res["sums"])
            st["chunk"] += 1
            st["count"] += len(res["labels"])
            st["digests"].append(res["digest"])
            state["report_bytes"] = f_rep.tell()
            _save_state(partial, state, sums)
            if bar is not None:
                bar.update(stop - start)
    finally:
        for f in files:
            f.close()
        if bar is not None:
            bar.close()
    st["done"] = True
    _save_state(partial, state, sums)
    return sums


def _finalize(source: Source, partial: Path, state: dict, sums: dict) -> dict[str, Any]:
    h, w = source.image_size
    counts = {}
    fp = hashlib.sha256()
    for split in SPLITS:
        n = state["splits"][split]["count"]
        counts[split] = n
        with open(partial / images_file(split), "r+b") as f:
            f.write(_npy_header((n, h, w, 3)))
            f.flush()
            os.fsync(f.fileno())
        labels = np.fromfile(partial / f"{split}_labels.bin", "<i8")
        np.save(partial / labels_file(split), labels.astype(np.int64))
        (partial / f"{split}_labels.bin").unlink()
        fp.update(f"{split}:{n}:".encode())
        fp.update("".join(state["splits"][split]["digests"]).encode())
    stats = stats_mod.finalize(sums)
    np.savez(partial / STATS, **stats)
    skipped, repaired = _read_report(source, partial)
    (partial / "report.jsonl").unlink()
    report = {"splits": counts, "classes": source.classes, "skipped": skipped, "repaired": repaired}
    (partial / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    fp.update(json.dumps([source.classes, [h, w], FORMAT_VERSION]).encode())
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "image_size": [h, w],
        "channels": 3,
        "classes": source.classes,
        "splits": {
            s: {"count": counts[s], "images": images_file(s), "labels": labels_file(s)}
            for s in SPLITS
        },
        "stats": STATS,
        "stats_split": "train",
        "report": REPORT,
        "fingerprint": fp.hexdigest()[:32],
        "input": state["config"]["input"],
    }
    (partial / PROGRESS).unlink()
    for stray in partial.glob(".*.tmp"):  # temp files of a writer killed mid-write
        stray.unlink()
    atomic_write_text(partial / HEADER, json.dumps(header, indent=1) + "\n")
    return report
