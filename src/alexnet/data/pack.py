"""`prepare`: pack a `Source` into the packed format (see packed.py), in one pass that also
computes the training statistics (paper §2 mean image, §4.1 RGB PCA).

`encoding="raw"` (the default) stores uint8 pixels (a memory-mappable .npy, format version 1);
`encoding="jpeg"` stores each image as a JPEG record at `quality` plus an offsets index
(version 2), and computes the statistics from the decoded pixels (what training sees). Every
record gets a CRC32 (`{split}_crc32.npy`), checked by readers and `alexnet prepare --verify`.

Atomic and resumable: everything is written into `OUT.partial/`; after each chunk the data is
fsync'ed and then `progress.npz` (chunk counters, byte counts, exact integer sums) is replaced
atomically. A rerun with the same input truncates the files to the last recorded chunk and
continues, giving byte-identical output. `header.json` is written last and the directory is
renamed to OUT only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data import jpeg
from alexnet.data import stats as stats_mod
from alexnet.data.jpeg import SUBSAMPLING
from alexnet.data.layout import (
    DEFAULT_QUALITY,
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER,
    JPEG_FORMAT_VERSION,
    REPORT,
    SPLITS,
    STATS,
)
from alexnet.data.outdir import check_output, check_partial
from alexnet.data.pack_chunk import process
from alexnet.data.pack_files import SplitFiles
from alexnet.data.source_base import Source
from alexnet.errors import UserError
from alexnet.fileio import atomic_write, atomic_write_text, fsync_dir
from alexnet.progress import progress_bar

PROGRESS = "progress.npz"

# ---------------------------------------------------------------- worker side
_SOURCE: Source | None = None


def _init_worker(source: Source) -> None:
    global _SOURCE
    _SOURCE = source
    # Ctrl-C reaches the whole process group: only the parent handles it (and stops us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(task: tuple) -> dict[str, Any]:
    assert _SOURCE is not None
    return process(_SOURCE, *task)


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


def _config(source: Source, chunk_size: int, encoding: str, quality: int) -> dict:
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION if encoding == "raw" else JPEG_FORMAT_VERSION,
        "input": source.describe(),
        "classes": source.classes,
        "chunk_size": chunk_size,
        "encoding": encoding,
    }
    if encoding == "jpeg":
        config["quality"] = quality
    return json.loads(json.dumps(config))


def _split_files(partial: Path, source: Source, encoding: str) -> dict[str, SplitFiles]:
    return {s: SplitFiles(partial, s, encoding, source.image_size) for s in SPLITS}


def _start(partial: Path, config: dict, source: Source, files: dict[str, SplitFiles]):
    """Resume `partial` when it holds a run of the same config, else start it afresh."""
    loaded = _load_state(partial) if partial.is_dir() else None
    if loaded is not None and loaded[0].get("config") == config:
        state, sums = loaded
        done = sum(st["count"] for st in state["splits"].values())
        print(f"resuming the interrupted run in {partial} ({done} images done)", file=sys.stderr)
        return state, sums
    if partial.exists():
        check_partial(partial, _own_files(files))
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    state = {"config": config, "splits": {}, "report_bytes": 0}
    for split in SPLITS:
        state["splits"][split] = {"chunk": 0, "count": 0, "bytes": 0, "done": False}
        files[split].create()
    open(partial / "report.jsonl", "wb").close()
    sums = stats_mod.zero_sums(*source.image_size)
    _save_state(partial, state, sums)
    return state, sums


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
    encoding: str = "raw",
    quality: int = DEFAULT_QUALITY,
) -> dict[str, Any]:
    """Pack `source` into directory `out` (train + val splits, stats, header, report.json),
    its images stored `encoding="raw"` or `"jpeg"` (at JPEG `quality`, 1..100).
    Returns the report: {"splits", "classes", "skipped", "repaired"}. With `overwrite`, `out`
    may be replaced only when it is a packed dataset or empty, and never when it is, holds or
    lies inside `src` (the directory read)."""
    if encoding not in ENCODINGS:
        raise UserError(f"encoding {encoding!r}: choose from {', '.join(ENCODINGS)}")
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise UserError(f"JPEG quality {quality!r}: must be an integer in 1..100")
    out = Path(out)
    check_output(out, src, overwrite)
    partial = out.with_name(out.name + ".partial")
    workers = max(1, workers if workers else (os.cpu_count() or 1))
    chunk_size = chunk_size or (64 if source.parallel else 8192)
    files = _split_files(partial, source, encoding)
    config = _config(source, chunk_size, encoding, quality)
    state, sums = _start(partial, config, source, files)
    pool = None
    try:
        for split in SPLITS:
            if state["splits"][split]["done"]:
                continue
            parallel = source.parallel or encoding == "jpeg"  # JPEG encoding is CPU work
            if pool is None and parallel and workers > 1:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=(source,))
            sums = _pack_split(source, files[split], state, sums, pool, progress)
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        raise
    if pool is not None:
        pool.close()
        pool.join()
    _check_not_empty(source, partial, state)
    report = _finalize(source, partial, state, sums, files)
    if out.exists():
        check_output(out, src, overwrite)  # still what it was when we started
        shutil.rmtree(out)
    os.replace(partial, out)
    fsync_dir(out.parent)
    return report


def _own_files(files: dict[str, SplitFiles]) -> set[str]:
    names = {PROGRESS, PROGRESS + ".tmp", "report.jsonl", REPORT, STATS, HEADER, HEADER + ".tmp"}
    for encoding in ENCODINGS:  # a partial run of the other encoding may be replaced too
        for split, f in files.items():
            names |= SplitFiles(f.partial, split, encoding, (1, 1)).names()
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


def _pack_split(source, files: SplitFiles, state, sums, pool, progress) -> dict:
    split = files.split
    config = state["config"]
    chunk_size = config["chunk_size"]
    st = state["splits"][split]
    n_items = source.count(split)
    n_chunks = math.ceil(n_items / chunk_size)
    first = st["chunk"]
    extra = (config["encoding"], config.get("quality", DEFAULT_QUALITY))
    tasks = [
        (split, k * chunk_size, min((k + 1) * chunk_size, n_items), split == "train", *extra)
        for k in range(first, n_chunks)
    ]
    files.open(st)
    f_rep = open(files.partial / "report.jsonl", "r+b")
    f_rep.truncate(state["report_bytes"])
    f_rep.seek(state["report_bytes"])
    results = pool.imap(_work, tasks) if pool else (process(source, *t) for t in tasks)
    bar = None
    if progress:
        bar = progress_bar(total=n_items, initial=min(first * chunk_size, n_items), unit="img",
                   desc=f"prepare {split}", dynamic_ncols=True, smoothing=0.1)  # fmt: skip
    try:
        for (_, start, stop, *_), res in zip(tasks, results, strict=True):
            files.append(res, st)  # also an empty chunk
            lines = [
                json.dumps({"kind": kind, "path": p, "reason": r}) + "\n"
                for kind in ("skipped", "repaired")
                for p, r in res[kind]
            ]
            f_rep.write("".join(lines).encode())
            files.sync()
            f_rep.flush()
            os.fsync(f_rep.fileno())
            if res["sums"] is not None:
                stats_mod.add_sums(sums, res["sums"])
            state["report_bytes"] = f_rep.tell()
            _save_state(files.partial, state, sums)
            if bar is not None:
                bar.update(stop - start)
    finally:
        files.close()
        f_rep.close()
        if bar is not None:
            bar.close()
    st["done"] = True
    _save_state(files.partial, state, sums)
    return sums


def _fingerprint(state: dict, digests: dict[str, list[str]], source: Source, partial: Path):
    """Content identity. Raw (as version 1 always did): per-chunk digests of the images and
    labels of every split, class names, image size, format version. JPEG: `jpeg.fingerprint`
    of the final index (every record's CRC32 and length, the labels)."""
    config = state["config"]
    if config["encoding"] == "jpeg":
        return jpeg.fingerprint(partial, source.classes, source.image_size, config["quality"])
    fp = hashlib.sha256()
    for split in SPLITS:
        fp.update(f"{split}:{state['splits'][split]['count']}:".encode())
        fp.update("".join(digests[split]).encode())
    fp.update(json.dumps([source.classes, list(source.image_size), config["version"]]).encode())
    return fp.hexdigest()[:32]


def _header(source: Source, state: dict, files: dict[str, SplitFiles], fingerprint: str):
    config = state["config"]
    h, w = source.image_size
    header: dict[str, Any] = {"format": FORMAT_NAME, "version": config["version"]}
    if config["encoding"] == "jpeg":
        header |= {"encoding": "jpeg", "quality": config["quality"], "subsampling": SUBSAMPLING}
    header |= {
        "image_size": [h, w],
        "channels": 3,
        "classes": source.classes,
        "splits": {s: files[s].header_entry(state["splits"][s]["count"]) for s in SPLITS},
        "stats": STATS,
        "stats_split": "train",
        "report": REPORT,
        "fingerprint": fingerprint,
        "input": config["input"],
    }
    return header


def _finalize(source: Source, partial: Path, state: dict, sums: dict,
              files: dict[str, SplitFiles]) -> dict[str, Any]:  # fmt: skip
    counts = {s: state["splits"][s]["count"] for s in SPLITS}
    digests = {s: files[s].finalize(counts[s], source.image_size) for s in SPLITS}
    np.savez(partial / STATS, **stats_mod.finalize(sums))
    skipped, repaired = _read_report(source, partial)
    (partial / "report.jsonl").unlink()
    report = {"splits": counts, "classes": source.classes, "skipped": skipped, "repaired": repaired}
    (partial / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    header = _header(source, state, files, _fingerprint(state, digests, source, partial))
    (partial / PROGRESS).unlink()
    for stray in partial.glob(".*.tmp"):  # temp files of a writer killed mid-write
        stray.unlink()
    atomic_write_text(partial / HEADER, json.dumps(header, indent=1) + "\n")
    return report
