"""`prepare`: pack a `Source` into the packed format (packed.py), its images stored by a field
(fields.py: raw pixels or JPEG records), in one pass that also sums the training statistics
(paper §2 mean image, §4.1 RGB PCA) over the pixels training sees, as exact integers.

Atomic and resumable: everything is written into `OUT.partial/`; after each chunk the data is
fsync'ed, then `progress.npz` (counters, the sums) is replaced atomically. A rerun truncates
the files to the last recorded chunk and continues, byte-identical to an uninterrupted run.
`header.json` is written last and the directory renamed to OUT when complete. OUT is only
ever replaced when it is a packed dataset or an empty directory, never the directory read.
"""

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
from alexnet.data.fields import FIELDS, Field, crc_file, labels_file, make_field
from alexnet.data.packed import FORMAT_NAME, HEADER, REPORT, STATS
from alexnet.data.sources import Source
from alexnet.errors import Param, UserError
from alexnet.fileio import atomic_write, atomic_write_text, fsync_dir
from alexnet.interrupts import ignore_ctrl_c
from alexnet.progress import SilentBar, progress_bar

PROGRESS = "progress.npz"
WORK_FILES = ("index", "labels", "crc32")  # `{split}_{name}.bin`, beside the field's images


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
    own = {PROGRESS, PROGRESS + ".tmp", "report.jsonl", REPORT, STATS, HEADER, HEADER + ".tmp"}
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
    """Statistics in the [0, 1] pixel scale, float64: mean_image (H,W,3), channel_mean (3,),
    channel_std (3,) (population), rgb_cov (3,3) (population), eigval (3,) descending,
    eigvec (3,3) unit eigenvectors of rgb_cov as columns (largest |component| positive)."""
    n_img = int(sums["count"])
    h, w, _ = sums["pixel_sum"].shape
    if n_img == 0:
        shapes = {"mean_image": (h, w, 3), "rgb_cov": (3, 3), "eigvec": (3, 3)}
        keys = ("mean_image", "channel_mean", "channel_std", "rgb_cov", "eigval", "eigvec")
        return {k: np.full(shapes.get(k, 3), np.nan) for k in keys}
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
    for i in range(3):  # deterministic signs
        if eigvec[np.argmax(np.abs(eigvec[:, i])), i] < 0:
            eigvec[:, i] = -eigvec[:, i]
    return {
        "mean_image": mean_image,
        "channel_mean": mean,
        "channel_std": std,
        "rgb_cov": cov,
        "eigval": np.clip(eigval, 0, None),
        "eigvec": eigvec,
    }


# ---------------------------------------------------------------- one chunk (worker side)
_WORKER: tuple[Source, Field] | None = None


def _init_worker(source: Source, field: Field) -> None:
    global _WORKER
    _WORKER = (source, field)
    ignore_ctrl_c()  # the parent handles it (and stops us)


def _work(task: tuple) -> dict[str, Any]:
    assert _WORKER is not None
    return process(*_WORKER, *task)


def process(
    source: Source, field: Field, split: str, start: int, stop: int, with_stats: bool
) -> dict[str, Any]:
    """Items [start, stop) of `split`, stored by `field` -> {"data", "crc", "index" (see
    the field's `encode`), "labels" int64 (n,), "skipped", "repaired", "sums" (train only)}."""
    chunk = source.load(split, start, stop)
    images = np.ascontiguousarray(chunk.images, dtype=np.uint8)
    h, w = source.image_size
    if images.shape[1:] != (h, w, 3) or len(images) != len(chunk.labels):
        raise RuntimeError(f"{source.name}: chunk of shape {images.shape}, expected (n,{h},{w},3)")
    labels = np.asarray(chunk.labels, np.int64)
    res = field.encode(images, labels)
    pixels = res.pop("pixels")
    res |= {"labels": labels, "skipped": chunk.skipped, "repaired": chunk.repaired}
    res["sums"] = chunk_sums(pixels) if with_stats else None
    return res


# ---------------------------------------------------------------- the files of one split
class SplitFiles:
    """The append-only working files of one split in `OUT.partial/`: the field's images, the
    chunk index (`encode`'s "index"), labels int64 and CRC32s uint32. The state records their
    sizes after each chunk, so a resumed run cuts them back to the last recorded chunk and
    nothing that grows with the dataset is rewritten."""

    def __init__(self, partial: Path, split: str, field: Field) -> None:
        self.partial, self.split, self.field = partial, split, field
        self.names = {"data": field.images_file(split)}
        self.names |= {key: f"{split}_{key}.bin" for key in WORK_FILES}
        self._files: dict[str, Any] = {}

    def open(self, sizes: dict[str, int] | None) -> None:
        """Open the files for appending: created afresh (`sizes` None) or cut to `sizes`."""
        for key, name in self.names.items():
            f = open(self.partial / name, "r+b" if sizes else "wb")
            if sizes:
                f.truncate(sizes[key])
                f.seek(sizes[key])
            elif key == "data":
                f.write(self.field.preamble)
            self._files[key] = f

    def append(self, res: dict, st: dict) -> None:
        """Write one processed chunk (see `process`) and record it in `st` (not saved)."""
        labels, crc = res["labels"].astype("<i8"), res["crc"].astype("<u4")
        for key, part in zip(self.names, (res["data"], res["index"], labels, crc), strict=True):
            self._files[key].write(part)
        st["chunk"] += 1
        st["count"] += len(res["labels"])
        st["sizes"] = {key: f.tell() for key, f in self._files.items()}

    def sync(self) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def finalize(self, n: int, image_size: tuple[int, int]) -> list[str]:
        """Turn the working files into the final ones; returns what the field's `finish` does."""
        p, split = self.partial, self.split
        work = {key: p / name for key, name in self.names.items()}
        digests = self.field.finish(p, split, n, image_size, work["index"].read_bytes())
        np.save(p / labels_file(split), np.fromfile(work["labels"], "<i8").astype(np.int64))
        np.save(p / crc_file(split), np.fromfile(work["crc32"], "<u4"))
        for key in WORK_FILES:
            work[key].unlink()
        return digests


# ---------------------------------------------------------------- state
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
    state = {"config": config, "splits": {}, "report_bytes": 0}
    for split in SPLITS:
        state["splits"][split] = {"chunk": 0, "count": 0, "sizes": None, "done": False}
    open(partial / "report.jsonl", "wb").close()
    sums = chunk_sums(np.zeros((0, *source.image_size, 3), np.uint8))
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
    files = {s: SplitFiles(partial, s, field) for s in SPLITS}
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
    config = json.loads(json.dumps(config))
    state, sums = _start(partial, config, source)
    pool = None
    try:
        for split in SPLITS:
            if state["splits"][split]["done"]:
                continue
            if pool is None and (source.parallel or field.parallel) and workers > 1:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                pool = ctx.Pool(workers, initializer=_init_worker, initargs=(source, field))
            sums = _pack_split(source, files[split], state, sums, pool, progress)
    except BaseException:
        if pool is not None:
            _stop_pool(pool)
        raise
    if pool is not None:
        pool.close()
        pool.join()
    _check_not_empty(source, partial, state)
    report = _finalize(source, files, state, sums)
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


def _write_report(source: Source, partial: Path, counts: dict[str, int]) -> dict[str, Any]:
    """report.json from the skipped / repaired lines of report.jsonl; returns the report."""
    skipped = [{"path": p, "reason": r} for p, r in source.index_skipped]
    repaired: list[dict] = []
    with open(partial / "report.jsonl") as f:
        for line in f:
            entry = json.loads(line)
            (skipped if entry.pop("kind") == "skipped" else repaired).append(entry)
    report = {"splits": counts, "classes": source.classes, "skipped": skipped, "repaired": repaired}
    if source.split:  # the validation set was split off the training images: how
        report["val_split"] = source.split
    (partial / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _check_not_empty(source: Source, partial: Path, state: dict) -> None:
    """A split whose every image was skipped: write the report and say where it is."""
    empty = [s for s in SPLITS if state["splits"][s]["count"] == 0 and source.count(s) > 0]
    if empty:
        _write_report(source, partial, {})
        raise UserError(
            f"{source.name}: no usable images in the {empty[0]} split ({source.count(empty[0])} "
            f"tried, all skipped; see {partial / REPORT} for why)"
        )


def _pack_split(source: Source, files: SplitFiles, state: dict, sums: dict, pool, progress: bool):
    split, chunk_size = files.split, state["config"]["chunk_size"]
    st = state["splits"][split]
    n_items = source.count(split)
    first = st["chunk"]
    tasks = [
        (split, k * chunk_size, min((k + 1) * chunk_size, n_items), split == "train")
        for k in range(first, math.ceil(n_items / chunk_size))
    ]
    files.open(st["sizes"])
    f_rep = open(files.partial / "report.jsonl", "r+b")
    f_rep.truncate(state["report_bytes"])
    f_rep.seek(state["report_bytes"])
    results = pool.imap(_work, tasks) if pool else (process(source, files.field, *t) for t in tasks)
    shown = {"desc": f"prepare {split}", "unit": "img", "dynamic_ncols": True, "smoothing": 0.1}
    done = min(first * chunk_size, n_items)
    bar = progress_bar(total=n_items, initial=done, **shown) if progress else SilentBar()
    try:
        for (_, start, stop, _), res in zip(tasks, results, strict=True):
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
                sums = {k: sums[k] + v for k, v in res["sums"].items()}
            state["report_bytes"] = f_rep.tell()
            _save_state(files.partial, state, sums)
            bar.update(stop - start)
    finally:
        files.close()
        f_rep.close()
        bar.close()
    st["done"] = True
    _save_state(files.partial, state, sums)
    return sums


def _finalize(source: Source, files: dict[str, SplitFiles], state: dict, sums: dict) -> dict:
    """The final files, statistics, report.json and, last, header.json; returns the report."""
    field, partial = files["train"].field, files["train"].partial
    counts = {s: state["splits"][s]["count"] for s in SPLITS}
    digests = {s: files[s].finalize(counts[s], source.image_size) for s in SPLITS}
    np.savez(partial / STATS, **finish_stats(sums))
    report = _write_report(source, partial, counts)
    (partial / "report.jsonl").unlink()
    h, w = source.image_size
    header = {
        "format": FORMAT_NAME,
        "version": field.version,
        **field.header(),
        "image_size": [h, w],
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
    return report
