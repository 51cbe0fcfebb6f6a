"""Costs as the data grows: `prepare`, open and one epoch of DeviceLoader reads for synthetic
datasets of 10^4, 10^5 and 10^6 small images (raw and JPEG), and the ILSVRC2012 tar reader's
index over tars of up to 10^5 members.

For every stage and size: time per image (train + val images for prepare, train images for
the epoch) and the peak anonymous RSS of the stage above the process's RSS when it began
(sampled every 5 ms; file pages of the memory map are the page cache, not counted). A cost
that stays flat gives the same time per image at every size (goal: within 1.3x from the
smallest to the largest) and a peak that grows only by the index (bytes per image stated:
labels, offsets, CRC32s, the epoch order). Full mode runs each size in a fresh process;
`--quick` runs small sizes in this process, in seconds (the test suite runs it).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (300, 1_200)
TAR_SIZES = (10_000, 100_000)
QUICK_TAR_SIZES = (300, 1_200)


def rss_anon() -> int:
    """This process's anonymous resident memory in bytes (RssAnon of /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Peak:
    """Samples rss_anon() in a thread while the `with` block runs: .peak - .start (bytes)."""

    def __enter__(self) -> Peak:
        self.start = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_anon())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0  # all threads of this process
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())
        self.grew = self.peak - self.start


def run_size(n: int, encoding: str, root: Path, image_size: int, chunk: int | None) -> dict:
    """prepare, open, one epoch for a synthetic dataset of n train images (n/5 val)."""
    import torch

    from alexnet.data.loader import DeviceLoader
    from alexnet.data.pack import prepare
    from alexnet.data.packed import open_dataset
    from alexnet.data.sources import SyntheticSource

    out = root / f"{encoding}-{n}"
    src = SyntheticSource(classes=10, count=n, image_size=image_size, seed=0)
    total = n + max(1, n // 5)
    res: dict = {"n": n, "encoding": encoding}
    with Peak() as p:
        prepare(src, out, workers=1, progress=False, encoding=encoding, chunk_size=chunk)
    res["prepare"] = (p.seconds / total, p.grew, p.cpu / total)
    with Peak() as p:
        ds = open_dataset(out)
        open_dataset(out, "val")
        ds.stats  # noqa: B018 - read once, as training does
    res["open"] = (p.seconds / total, p.grew, p.cpu / total)
    loader = DeviceLoader(ds, 256, shuffle=True, drop_last=False, workers=2)
    with Peak() as p:
        for x, _ in loader.iterate():
            del x
    res["epoch"] = (p.seconds / n, p.grew, p.cpu / n)
    if encoding == "raw":
        res["gather_floor"] = gather_floor(ds.images, n)
    res["stored_bytes_per_image"] = sum(f.stat().st_size for f in out.iterdir()) / total
    del ds, loader
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return res


def make_tar(path: Path, members: int, nested: bool) -> None:
    """A tar of `members` tiny files: flat (like ILSVRC2012_img_val.tar) or 100 inner tars
    of wnid-named files (like ILSVRC2012_img_train.tar)."""
    data = b"\xff\xd8 not really a jpeg"

    def add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))

    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        if not nested:
            for i in range(members):
                add(tar, f"ILSVRC2012_val_{i + 1:08d}.JPEG", data)
            return
        per = members // 100
        for c in range(100):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as inner:
                for i in range(per):
                    add(inner, f"n{c:08d}_{i}.JPEG", data)
            add(tar, f"n{c:08d}.tar", buf.getvalue())


def run_tar(members: int, root: Path, kinds=("flat", "nested")) -> dict:
    """Index a flat and a nested tar of `members` members (each kind in a fresh process in
    full mode: memory freed by one would hide the other's growth)."""
    from alexnet.data import imagenet

    res: dict = {"members": members}
    for kind in kinds:
        path = root / f"{kind}-{members}.tar"
        make_tar(path, members, kind == "nested")
        best, best_cpu, grew = math.inf, math.inf, 0
        for attempt in range(3):  # best of 3 (short runs, shared machine); RSS of the first
            with Peak() as p:
                if kind == "flat":
                    items = imagenet._index_tar(path, imagenet.VAL_TAR)
                else:
                    wnids = {f"n{c:08d}": c for c in range(100)}
                    items, _ = imagenet._index_train_tar(path, wnids)
            assert len(items) == members - (members % 100 if kind == "nested" else 0)
            best = min(best, p.seconds / len(items))
            best_cpu = min(best_cpu, p.cpu / len(items))
            if attempt == 0:
                grew = p.grew
            del items
        res[kind] = (best, grew, best_cpu)
        path.unlink()
    return res


def child(args) -> None:
    root = Path(args.root)
    if args.encoding.startswith("tar-"):
        res = run_tar(args.n, root, (args.encoding[4:],))
    else:
        res = run_size(args.n, args.encoding, root, args.image_size, args.chunk_size)
    print(json.dumps(res))


def _in_child(args, root: Path, n: int, what: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--encoding", what, "--root",
           str(root), "--image-size", str(args.image_size)]  # fmt: skip
    cmd += ["--chunk-size", str(args.chunk_size)] if args.chunk_size else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def collect(args, root: Path) -> tuple[list[dict], list[dict]]:
    sizes, tars = (QUICK_SIZES, QUICK_TAR_SIZES) if args.quick else (SIZES, TAR_SIZES)
    runs, tar_runs = [], []
    for n in sizes if "sizes" in args.parts else ():
        for encoding in args.encodings.split(","):
            if args.quick:
                runs.append(run_size(n, encoding, root, args.image_size, args.chunk_size))
            else:
                runs.append(_in_child(args, root, n, encoding))
    for m in tars if "tar" in args.parts else ():
        if args.quick:
            tar_runs.append(run_tar(m, root))
        else:
            parts = [_in_child(args, root, m, f"tar-{kind}") for kind in ("flat", "nested")]
            tar_runs.append({**parts[0], **parts[1]})
    return runs, tar_runs


def gather_floor(images, n: int, batch: int = 256) -> tuple[float, int, float]:
    """The floor under any shuffled epoch: plain numpy fancy indexing of the memory-mapped
    images in a random order, batch by batch, in one thread (seconds and CPU per image).
    Its time per image grows with n by itself, once the images outgrow the CPU's caches
    (random reads from RAM instead of cache); what the loader adds on top is ours."""
    import numpy as np

    order = np.random.default_rng(0).permutation(n)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        np.asarray(images[np.sort(order[i : i + batch])])
    return ((time.perf_counter() - t0) / n, 0, (time.process_time() - c0) / n)


def _ratios(lo: tuple, hi: tuple, n_lo: int, n_hi: int) -> dict:
    """Growth from the smallest to the largest size: wall and CPU time per item, RSS per item."""
    return {"time_ratio": round(hi[0] / lo[0], 3), "cpu_ratio": round(hi[2] / lo[2], 3),
            "rss_bytes_per_item": round((hi[1] - lo[1]) / (n_hi - n_lo), 1)}  # fmt: skip


def report(runs: list[dict], tar_runs: list[dict], args) -> dict:
    from alexnet.runtime import cpu_name

    size = f"{args.image_size}x{args.image_size}"
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; synthetic {size} images (val = n/5); "
          "per stage: wall us/image, CPU us/image (all threads), peak RSS growth (MB)")  # fmt: skip
    summary: dict = {"machine": cpu_name(), "image_size": args.image_size,
                     "chunk_size": args.chunk_size, "growth": {}}  # fmt: skip
    stages = ("prepare", "open", "epoch")
    print(f"{'encoding':<8}{'n':>9}" + "".join(f"{s:>27}" for s in stages))
    for r in runs:
        cells = "".join(f"{r[s][0] * 1e6:>10.1f}{r[s][2] * 1e6:>9.1f}{r[s][1] / 1e6:>8.1f}"
                        for s in stages)  # fmt: skip
        print(f"{r['encoding']:<8}{r['n']:>9}{cells}")
    for enc in sorted({r["encoding"] for r in runs}):
        rs = [r for r in runs if r["encoding"] == enc]
        for s in ("prepare", "epoch"):
            g = _ratios(rs[0][s], rs[-1][s], rs[0]["n"], rs[-1]["n"])
            summary["growth"][f"{enc}_{s}"] = g
            print(f"{enc} {s}: from n={rs[0]['n']} to n={rs[-1]['n']} time/image x"
                  f"{g['time_ratio']:.2f} (CPU x{g['cpu_ratio']:.2f}); peak RSS grows "
                  f"{g['rss_bytes_per_item']:.1f} bytes per image")  # fmt: skip
        if "gather_floor" in rs[0]:
            lo, hi = rs[0]["gather_floor"][0], rs[-1]["gather_floor"][0]
            g = summary["growth"][f"{enc}_epoch"]
            g["floor_ratio"] = round(hi / lo, 3)
            g["over_floor_ratio"] = round(g["time_ratio"] / g["floor_ratio"], 3)
            print(f"{enc} epoch floor (numpy gather in a random order, 1 thread): "
                  f"{lo * 1e6:.2f} -> {hi * 1e6:.2f} us/image, x{g['floor_ratio']:.2f}; "
                  f"the epoch over the floor x{g['over_floor_ratio']:.2f}")  # fmt: skip
    for t in tar_runs:
        print(f"tar index {t['members']:>8} members: " + ", ".join(
            f"{k} {t[k][0] * 1e6:.1f} us (CPU {t[k][2] * 1e6:.1f}) and {t[k][1] / 1e6:.1f} MB"
            for k in ("flat", "nested")))  # fmt: skip
    if len(tar_runs) > 1:
        a, b = tar_runs[0], tar_runs[-1]
        for kind in ("flat", "nested"):
            g = _ratios(a[kind], b[kind], a["members"], b["members"])
            summary["growth"][f"tar_{kind}"] = g
            print(
                f"tar {kind}: time/member x{g['time_ratio']:.2f} (CPU x{g['cpu_ratio']:.2f}), "
                f"RSS {g['rss_bytes_per_item']:.1f} bytes per member"
            )
    summary |= {"runs": runs, "tar": tar_runs}
    print(json.dumps(summary))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, in seconds")
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--encodings", default="raw,jpeg", help="comma-separated (raw,jpeg)")
    ap.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="prepare's chunk size (default: the source's, 8192; file sources: 64)",
    )
    ap.add_argument("--parts", default="sizes,tar", help="what to run: sizes, tar or both")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--encoding", default="raw", help=argparse.SUPPRESS)
    ap.add_argument("--root", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    root = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        runs, tar_runs = collect(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(runs, tar_runs, args)


if __name__ == "__main__":
    main()
