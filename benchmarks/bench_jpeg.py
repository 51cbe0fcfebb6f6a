"""JPEG-packed vs raw datasets, on the real-photo set of bench_loader.py, in one run.

Measures, for 256x256 images packed by `alexnet prepare` (shorter side 256, centre crop):
- bytes per image stored: raw vs JPEG q90 and q95 (index and checksums included), and the
  ImageNet sizes they project (1,281,167 train + 50,000 val images);
- PSNR of the decoded JPEG pixels against the raw ones (pooled MSE; worst image too);
- CPU decode images/s on one core for each decoder (Pillow, torchvision.io.decode_jpeg; both
  libjpeg-turbo), and with 2 threads (the GIL is released if it scales);
- DeviceLoader images/s with the paper augmentation (random 224 crop, flip, fancy PCA,
  mean-image subtraction; in the loader threads on the CPU), raw vs JPEG;
- end to end: `alexnet train --model paper` images/s, raw vs JPEG (same command line).
Other jobs share the machine: every raw/JPEG pair is measured in alternating rounds and the
ratio is taken within each round (the median of the rounds is reported).
Last line: one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from bench_loader import find_photos, make_jpegs, rate  # same directory

IMAGENET = 1_281_167 + 50_000


def stored_bytes(root: Path, split: str = "train") -> float:
    """Bytes per image of a split as stored (data + offsets + CRC32 + label)."""
    names = [p for p in root.iterdir() if p.name.startswith(f"{split}_")]
    n = len(np.load(root / f"{split}_labels.npy"))
    return sum(p.stat().st_size for p in names) / n


def psnr(raw: np.ndarray, decoded: np.ndarray) -> tuple[float, float]:
    """(PSNR of the pooled MSE, PSNR of the worst image) in dB, 8-bit peak."""
    err = (decoded.astype(np.float64) - raw) ** 2
    per_image = err.reshape(len(err), -1).mean(1)
    return 10 * np.log10(255**2 / per_image.mean()), 10 * np.log10(255**2 / per_image.max())


def decode_rates(images, rounds: int) -> dict[str, float]:
    """images/s of each CPU decoder, 1 thread and 2 threads, best of `rounds` (alternating)."""
    from alexnet.data.fields import decode_pillow
    from alexnet.data.loader import decode_torchvision

    decoders = {"pillow": decode_pillow, "torchvision": decode_torchvision}
    records = [bytes(images.record(i)) for i in range(len(images))]
    h, w = images.shape[1:3]
    torch.set_num_threads(1)

    def run(name: str, part: list[bytes]) -> None:
        out = np.empty((h, w, 3), np.uint8)
        for r in part:
            decoders[name](r, out)

    for name in decoders:  # warm up (imports, first-call set-up)
        run(name, records[:4])
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name in decoders:
            for threads in (1, 2):
                parts = [records[k::threads] for k in range(threads)]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda p, n=name: run(n, p), parts))
                key = f"{name}_{threads}t"
                best[key] = max(best.get(key, 0.0), len(records) / (time.perf_counter() - t0))
    torch.set_num_threads(os.cpu_count() or 1)
    return best


def loader_rates(raw, jp, workers: int, batch: int, rounds: int) -> list[tuple[float, float]]:
    """(raw, JPEG) images/s of DeviceLoader + the paper augmentation, per round."""
    from alexnet.data.augment import TrainTransform
    from alexnet.data.loader import DeviceLoader

    st = raw.stats
    tf = TrainTransform(224, eigval=st.eigval, eigvec=st.eigvec, mean_image=st.mean_image)
    epochs = iter(range(10_000))
    out = []
    for _ in range(rounds):
        pair = []
        for ds in (raw, jp):
            loader = DeviceLoader(ds, batch, shuffle=True, drop_last=True, workers=workers)
            gen = torch.Generator().manual_seed(0)

            def batches(loader=loader, gen=gen):
                loader.set_epoch(next(epochs))
                return loader.iterate(transform=tf, generator=gen)

            pair.append(rate(batches, epochs=3))
        out.append((pair[0], pair[1]))
    return out


def train_rate(data: Path, run: Path, args) -> float:
    """images/s of `alexnet train --model paper` on `data` (metrics.jsonl of the run)."""
    cmd = [sys.executable, "-m", "alexnet", "train", "--data", str(data), "--model", "paper",
           "--epochs", "1", "--train-limit", str(args.train_images), "--batch-size",
           str(args.train_batch), "--val-limit", "16", "--eval-crops", "1", "--test-crops", "1",
           "--device", "cpu", "--workers", str(args.train_workers),
           "--output-dir", str(run)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_sec"])


def ratios(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(j / r for r, j in pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=768)
    ap.add_argument("--photos", default=None, help="directory of real photos to cut JPEGs from")
    ap.add_argument("--rounds", type=int, default=3, help="alternating raw/JPEG rounds")
    ap.add_argument("--workers", type=int, default=2, help="loader threads")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-images", type=int, default=160, help="images per training run")
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-workers", type=int, default=0, help="train --workers (its default)")
    ap.add_argument("--train-rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_jpeg_"))
    try:
        measure(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(tmp: Path, args) -> None:
    from alexnet.data.pack import prepare
    from alexnet.data.packed import open_dataset
    from alexnet.data.sources import open_source
    from alexnet.runtime import cpu_name

    photos = find_photos(args.photos)
    make_jpegs(tmp / "jpegs", photos, args.images)
    res: dict = {"machine": f"{cpu_name()}, {os.cpu_count()} CPUs", "images": args.images}
    for name, kw in (("raw", {}), ("q90", {"quality": 90}), ("q95", {"quality": 95})):
        enc = "raw" if name == "raw" else "jpeg"
        t0 = time.perf_counter()
        src = open_source(str(tmp / "jpegs"), "imagefolder", size=256)
        prepare(src, tmp / name, encoding=enc, workers=2, progress=False, **kw)
        res[f"prepare_{name}_img_s"] = (args.images + 10) / (time.perf_counter() - t0)
        res[f"bytes_{name}"] = stored_bytes(tmp / name)
        res[f"imagenet_gb_{name}"] = res[f"bytes_{name}"] * IMAGENET / 1e9
    raw = open_dataset(tmp / "raw")
    raw_pixels = np.asarray(raw.images)
    for q in ("q90", "q95"):
        pooled, worst = psnr(raw_pixels, np.asarray(open_dataset(tmp / q).images))
        res[f"psnr_{q}_db"], res[f"psnr_{q}_worst_db"] = pooled, worst
        res[f"raw_over_{q}"] = res["bytes_raw"] / res[f"bytes_{q}"]
    jp = open_dataset(tmp / "q90")
    res |= {f"decode_{k}": v for k, v in decode_rates(jp.images, args.rounds).items()}
    pairs = loader_rates(raw, jp, args.workers, args.batch_size, args.rounds)
    res["loader_raw_img_s"] = max(r for r, _ in pairs)
    res["loader_jpeg_img_s"] = max(j for _, j in pairs)
    res["loader_jpeg_over_raw"] = ratios(pairs)
    tpairs = [
        (train_rate(tmp / "raw", tmp / f"run_raw{k}", args),
         train_rate(tmp / "q90", tmp / f"run_q90_{k}", args))
        for k in range(args.train_rounds)
    ]  # fmt: skip
    res["train_raw_img_s"] = statistics.median(r for r, _ in tpairs)
    res["train_jpeg_img_s"] = statistics.median(j for _, j in tpairs)
    res["train_jpeg_over_raw"] = ratios(tpairs)
    res["train_pairs"] = [[round(r, 2), round(j, 2)] for r, j in tpairs]
    report(res, args, len(photos))


def report(res: dict, args, n_photos: int) -> None:
    print(f"machine: {res['machine']}; {args.images} JPEGs (500x375 q90, from {n_photos} photos) "
          f"packed at 256x256; {args.rounds} alternating rounds")  # fmt: skip
    kinds = ("raw", "q90", "q95")

    def row(label: str, values, fmt: str) -> None:
        print(f"{label:<34}" + "".join(format(x, fmt) if x is not None else f"{'':>12}"
                                       for x in values))  # fmt: skip

    print(f"{'':<34}{'raw':>12}{'JPEG q90':>12}{'JPEG q95':>12}")
    row("bytes / image (train, stored)", [res[f"bytes_{k}"] for k in kinds], ">12,.0f")
    row("ImageNet train + val (GB)", [res[f"imagenet_gb_{k}"] for k in kinds], ">12.1f")
    row("raw / JPEG bytes", [None, res["raw_over_q90"], res["raw_over_q95"]], ">12.1f")
    row("PSNR vs raw (dB)", [None, res["psnr_q90_db"], res["psnr_q95_db"]], ">12.1f")
    row("PSNR of the worst image (dB)", [None, res["psnr_q90_worst_db"],
                                         res["psnr_q95_worst_db"]], ">12.1f")  # fmt: skip
    row("prepare (img/s, 2 processes)", [res[f"prepare_{k}_img_s"] for k in kinds], ">12.0f")
    for name in ("pillow", "torchvision"):
        one, two = res[f"decode_{name}_1t"], res[f"decode_{name}_2t"]
        print(f"decode q90 {name:<12} {one:>7.0f} img/s on 1 core, {two:>7.0f} with 2 threads")
    print(f"loader + paper augmentation ({args.workers} threads): raw "
          f"{res['loader_raw_img_s']:.0f}, JPEG {res['loader_jpeg_img_s']:.0f} img/s; "
          f"JPEG/raw {res['loader_jpeg_over_raw']:.2f}")  # fmt: skip
    print(
        f"alexnet train --model paper (CPU, --workers {args.train_workers}): raw "
        f"{res['train_raw_img_s']:.2f}, JPEG {res['train_jpeg_img_s']:.2f} img/s; "
        f"JPEG/raw {res['train_jpeg_over_raw']:.3f} (pairs {res['train_pairs']})"
    )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))


if __name__ == "__main__":
    main()
