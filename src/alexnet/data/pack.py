"""`prepare`: pack a `Source` into the packed format (packed.py), its images stored by a field
(fields.py), in one pass that also sums the training statistics (paper §2 mean image, §4.1 RGB
PCA) over the pixels training sees, as exact integers. Resumable: the work goes into
`OUT.partial/`, each chunk fsync'ed, then recorded in `progress.npz`; a rerun cuts the files
back to the last recorded chunk and continues, byte-identical to an uninterrupted run.
`header.json` is written last and the directory renamed to OUT."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data import SPLITS
from alexnet.data.fields import FIELDS, Field, crc32, crc_file, labels_file, make_field
from alexnet.data.packed import FORMAT_NAME, HEADER, REPORT, STAT_KEYS, STATS
from alexnet.data.sources import Source
from alexnet.errors import Param, UserError
from alexnet.fileio import atomic_write, atomic_write_text, fsync_dir
from alexnet.interrupts import ignore_ctrl_c
from alexnet.progress import SilentBar, progress_bar

PROGRESS = "progress.npz"
# `{split}_{name}.bin`, appended beside the field's images: its chunk index, labels int64,
# CRC32s uint32 and the skipped / repaired files (JSON lines)
WORK_FILES = ("index", "labels", "crc32", "report")


# ---------------------------------------------------------------- what OUT may be
def check_output(out: str | Path, src: str | Path | None, overwrite: bool) -> None:
    """Raise `UserError` unless `out` may be written: absent, or (with `overwrite`) an empty
    directory or a packed dataset that is not `src`, inside it, or around it."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise UserError(f"{out}: is a file, not a directory; choose another OUT for the dataset")
    empty = not any(out.iterdir())
    try:  # header.json, written last by `prepare`, names the packed format
        packed = json.loads((out / HEADER).read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        packed = False
    if src is not None and Path(src).exists():
        s, o = Path(src).resolve(), out.resolve()
        if s == o or s in o.parents or o in s.parents:
            where = "is" if s == o else ("contains" if o in s.parents else "lies inside")
            raise UserError(f"{out}: {where} the source {src}; choose an OUT outside it")
    if not overwrite:
        hint = (" (use ", Param("overwrite"), " to replace it)") if (packed or empty) else ()
        kind = "a packed dataset" if packed else ("empty" if empty else "not a packed dataset")
        raise UserError(f"{out}: already exists, {kind}", *hint)
    if not (packed or empty):
        names = sorted(p.name for p in out.iterdir())
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise UserError(
            f"{out}: not a packed dataset (holds {', '.join(names[:3])}{more}); ",
            Param("overwrite"),
            " only replaces a packed dataset or an empty directory: choose another OUT",
        )


def _check_partial(partial: Path) -> None:
    """Refuse to delete a `OUT.partial` directory that holds files `prepare` did not write
    (those of either field: a partial run of the other encoding may be replaced too)."""
    if not partial.is_dir():
        raise UserError(f"{partial}: is a file; move it away (prepare works in this directory)")
    own = {PROGRESS, PROGRESS + ".tmp", REPORT, STATS, HEADER, HEADER + ".tmp"}
    for split in SPLITS:
        own |= {labels_file(split), crc_file(split), f"{split}_offsets.npy"}
        own |= {f"{split}_{key}.bin" for key in WORK_FILES}
        own |= {field().images_file(split) for field in FIELDS.values()}
    foreign = sorted(p.name for p in partial.iterdir() if p.name not in own)
    if foreign:
        raise UserError(
            f"{partial}: holds files prepare did not write ({', '.join(foreign[:3])}); move them"
        )


# ---------------------------------------------------------------- statistics (paper §2, §4.1)
def chunk_sums(images: np.ndarray) -> dict[str, np.ndarray]:
    """Exact integer sums of a uint8 chunk (n, H, W, 3): count, per-pixel sum (H, W, 3),
    channel sum (3,), and sum of outer products of RGB vectors (3, 3)."""
    n, h, w, c = images.shape
    pixel_sum = images.sum(axis=0, dtype=np.int64)
    flat = images.reshape(-1, c).astype(np.float64)  # float64 matmul is exact below 2**53
    outer = flat.T @ flat if flat.size else np.zeros((c, c))
    return {
        "count": np.array(n, np.int64),
        "pixel_sum": pixel_sum,
        "channel_sum": pixel_sum.reshape(-1, c).sum(axis=0),
        "outer_sum": np.rint(outer).astype(np.int64),
    }


def finish_stats(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics in [0, 1] pixel scale, float64 (`packed.DatasetStats`; std and covariance
    of the population; eigenvectors as columns, largest |component| positive)."""
    n_img = int(sums["count"])
    h, w, _ = sums["pixel_sum"].shape
    if n_img == 0:
        shapes = {"mean_image": (h, w, 3), "rgb_cov": (3, 3), "eigvec": (3, 3)}
        return {k: np.full(shapes.get(k, 3), np.nan) for k in STAT_KEYS}
    n_pix = n_img * h * w
    mean_image = sums["pixel_sum"].astype(np.float64) / (255.0 * n_img)
    mean = sums["channel_sum"].astype(np.float64) / (255.0 * n_pix)
    second = sums["outer_sum"].astype(np.float64) / (255.0**2 * n_pix)
    cov = second - np.outer(mean, mean)
    cov = (cov + cov.T) / 2
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    negative = eigvec[np.argmax(np.abs(eigvec), axis=0), range(3)] < 0  # deterministic signs
    eigvec[:, negative] *= -1
    return dict(zip(STAT_KEYS, (mean_image, mean, std, cov, np.clip(eigval, 0, None), eigvec)))


# ---------------------------------------------------------------- one chunk (worker side)
_WORKER: tuple[Source, Field] | None = None


def _init_worker(source: Source, field: Field) -> None:
    global _WORKER
    _WORKER = (source, field)
    ignore_ctrl_c()  # the parent handles it (and stops us)


def _work(task: tuple) -> dict[str, Any]:
    assert _WORKER is not None
    return process(*_WORKER, *task)


def process(source: Source, field: Field, split: str, start: int, stop: int) -> dict[str, Any]:
    """Items [start, stop) of `split` -> what to append to each work file ("data": the field's
    images, WORK_FILES), "count" and "sums" (train only)."""
    chunk = source.load(split, start, stop)
    images = np.ascontiguousarray(chunk.images, dtype=np.uint8)
    data, records, index, pixels = field.encode(images, np.asarray(chunk.labels, np.int64))
    report = [
        json.dumps({"kind": kind, "path": p, "reason": r}) + "\n"
        for kind in ("skipped", "repaired")
        for p, r in getattr(chunk, kind)
    ]
    return {
        "data": data,
        "index": index,
        "labels": np.asarray(chunk.labels, "<i8"),
        "crc32": np.array([crc32(r) for r in records], "<u4"),
        "report": "".join(report).encode(),
        "count": len(images),
        "sums": chunk_sums(pixels) if split == "train" else None,
    }


# ---------------------------------------------------------------- the run
def _work_files(partial: Path, split: str, field: Field) -> dict[str, Path]:
    names = {"data": field.images_file(split)} | {k: f"{split}_{k}.bin" for k in WORK_FILES}
    return {key: partial / name for key, name in names.items()}


def _save_state(partial: Path, state: dict, sums: dict[str, np.ndarray]) -> None:
    atomic_write(
        partial / PROGRESS, lambda f: np.savez(f, state=np.array(json.dumps(state)), **sums)
    )


def _start(partial: Path, config: dict, source: Source):
    """Resume `partial` when it holds a run of the same config, else start it afresh."""
    try:
        with np.load(partial / PROGRESS) as z:
            state = json.loads(str(z["state"]))
            sums = {k: np.array(z[k]) for k in z.files if k != "state"}
    except Exception:  # noqa: BLE001 - no or damaged progress: start over
        state = {}
    if state.get("config") == config:
        done = sum(st["count"] for st in state["splits"].values())
        print(f"resuming the interrupted run in {partial} ({done} images done)", file=sys.stderr)
        return state, sums
    if partial.exists():
        _check_partial(partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    splits = {s: {"chunk": 0, "count": 0, "sizes": None, "done": False} for s in SPLITS}
    state = {"config": config, "splits": splits}
    sums = chunk_sums(np.zeros((0, *source.image_size, 3), np.uint8))
    _save_state(partial, state, sums)
    return state, sums


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
    quality: int | None = None,
) -> dict[str, Any]:
    """Pack `source` into directory `out` (train + val splits, stats, header, report.json),
    its images stored `encoding="raw"` or `"jpeg"` (at JPEG `quality`, 1..100, default 90).
    Returns the report: {"splits", "classes", "skipped", "repaired"}. With `overwrite`, `out`
    may be replaced only when it is a packed dataset or empty, and never when it is, holds or
    lies inside `src` (the directory read)."""
    field = make_field(encoding, quality)
    out = Path(out)
    check_output(out, src, overwrite)
    partial = out.with_name(out.name + ".partial")
    workers = max(1, workers if workers else (os.cpu_count() or 1))
    chunk_size = chunk_size or (64 if source.parallel else 8192)
    config = {
        "format": FORMAT_NAME,
        "version": field.version,
        "input": source.describe(),
        "classes": source.classes,
        "chunk_size": chunk_size,
        "encoding": field.name,
        **field.header(),  # JPEG: its quality
        "work_files": WORK_FILES,  # a partial run of another layout is not resumed
    }
    state, sums = _start(partial, json.loads(json.dumps(config)), source)
    pool = None
    try:
        for split in SPLITS:
            if state["splits"][split]["done"]:
                continue
            if pool is None and (source.parallel or field.parallel) and workers > 1:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=(source, field))
            sums = _pack_split(source, field, partial, split, state, sums, pool, progress)
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        raise
    if pool is not None:
        pool.close()
        pool.join()
    report = _write_report(source, partial, {s: state["splits"][s]["count"] for s in SPLITS})
    empty = [s for s in SPLITS if report["splits"][s] == 0 and source.counts[s] > 0]
    if empty:
        raise UserError(
            f"{source.name}: no usable images in the {empty[0]} split ({source.counts[empty[0]]} "
            f"tried, all skipped; see {partial / REPORT} for why)"
        )
    _finalize(source, field, partial, state, sums)
    if out.exists():
        check_output(out, src, overwrite)  # still what it was when we started
        shutil.rmtree(out)
    os.replace(partial, out)
    fsync_dir(out.parent)
    return report


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


def _pack_split(source, field, partial, split, state, sums, pool, progress: bool):
    """Append the chunks of `split` not yet recorded in `state`; returns the new sums."""
    chunk_size, st = state["config"]["chunk_size"], state["splits"][split]
    n_items = source.counts[split]
    tasks = [
        (split, k * chunk_size, min((k + 1) * chunk_size, n_items))
        for k in range(st["chunk"], math.ceil(n_items / chunk_size))
    ]
    results = pool.imap(_work, tasks) if pool else (process(source, field, *t) for t in tasks)
    shown = {"desc": f"prepare {split}", "unit": "img", "dynamic_ncols": True, "smoothing": 0.1}
    done = min(st["chunk"] * chunk_size, n_items)
    bar = progress_bar(total=n_items, initial=done, **shown) if progress else SilentBar()
    files: dict[str, Any] = {}
    try:
        for key, path in _work_files(partial, split, field).items():
            files[key] = f = open(path, "r+b" if st["sizes"] else "wb")
            if st["sizes"]:  # resumed: cut back to the last recorded chunk
                f.truncate(st["sizes"][key])
                f.seek(st["sizes"][key])
            elif key == "data":
                f.write(field.preamble)
        for (_, start, stop), res in zip(tasks, results, strict=True):
            for key, f in files.items():  # also an empty chunk
                f.write(res[key])
            for f in files.values():
                f.flush()
                os.fsync(f.fileno())
            st["chunk"] += 1
            st["count"] += res["count"]
            st["sizes"] = {key: f.tell() for key, f in files.items()}
            if res["sums"] is not None:
                sums = {k: sums[k] + v for k, v in res["sums"].items()}
            _save_state(partial, state, sums)
            bar.update(stop - start)
    finally:
        for f in files.values():
            f.close()
        bar.close()
    st["done"] = True
    _save_state(partial, state, sums)
    return sums


def _write_report(source: Source, partial: Path, counts: dict[str, int]) -> dict[str, Any]:
    """report.json from the splits' skipped / repaired lines; returns the report."""
    skipped = [{"path": p, "reason": r} for p, r in source.index_skipped]
    repaired: list[dict] = []
    for split in SPLITS:
        for line in (partial / f"{split}_report.bin").read_text().splitlines():
            entry = json.loads(line)
            (skipped if entry.pop("kind") == "skipped" else repaired).append(entry)
    report = {"splits": counts, "classes": source.classes, "skipped": skipped, "repaired": repaired}
    if source.split:  # the validation set was split off the training images: how
        report["val_split"] = source.split
    (partial / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _finalize(source: Source, field: Field, partial: Path, state: dict, sums: dict) -> None:
    """The final files from the work files, the statistics and, last, header.json."""
    counts = {s: state["splits"][s]["count"] for s in SPLITS}
    digests = {}
    for s in SPLITS:
        work = _work_files(partial, s, field)
        index = work["index"].read_bytes()
        digests[s] = field.finish(partial, s, counts[s], source.image_size, index)
        np.save(partial / labels_file(s), np.fromfile(work["labels"], "<i8").astype(np.int64))
        np.save(partial / crc_file(s), np.fromfile(work["crc32"], "<u4"))
        for key in WORK_FILES:
            work[key].unlink()
    np.savez(partial / STATS, **finish_stats(sums))
    header = {
        "format": FORMAT_NAME,
        "version": field.version,
        **field.header(),
        "image_size": list(source.image_size),
        "channels": 3,
        "classes": source.classes,
        "splits": {s: field.split_entry(s, counts[s]) for s in SPLITS},
        "stats": STATS,
        "stats_split": "train",
        "report": REPORT,
        "fingerprint": field.fingerprint(partial, source.classes, source.image_size, digests),
        "input": state["config"]["input"],
    }
    (partial / PROGRESS).unlink()
    for stray in partial.glob(".*.tmp"):  # temp files of a writer killed mid-write
        stray.unlink()
    atomic_write_text(partial / HEADER, json.dumps(header, indent=1) + "\n")
