"""`alexnet features`: fc7 activations of a packed split, for retrieval (paper §6.1)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from alexnet.data.packed import open_dataset
from alexnet.inference import Predictor, save_features, split_features
from alexnet.runtime import resolve_device


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features",
        help="fc7 (penultimate) activations of a packed split -> FEATS.npy + FEATS.json",
        description="Compute the penultimate activations (fc7 after ReLU, 4096-d, for the 224 "
        "px models; the last hidden layer of `small`) of every image of a split, centre crop, "
        "in batches on the device. Writes FEATS.npy (float32, shape (N, D)) and FEATS.json "
        '({"format": "alexnet-features/1", "count", "dim", "indices": split index of each '
        'row, "data", "split", "weights", "model", "labels"}).',
    )
    p.add_argument("--data", required=True, help="packed dataset directory")
    p.add_argument("--weights", required=True, help="weights file")
    p.add_argument("--split", default="train", help="split (default: train)")
    p.add_argument("--out", required=True, metavar="FEATS", help="output path without suffix")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return p


def run(args: argparse.Namespace) -> int:
    ds = open_dataset(args.data, args.split)
    predictor = Predictor(args.weights, resolve_device(args.device))
    n = len(ds) if args.limit <= 0 else min(args.limit, len(ds))
    t0 = time.perf_counter()
    feats = split_features(predictor, ds.images[:n], args.batch_size, progress=True)
    seconds = time.perf_counter() - t0
    meta = {
        "data": str(Path(args.data).resolve()),
        "split": args.split,
        "weights": str(Path(args.weights).resolve()),
        "model": predictor.meta.model_config,
        "layer": "penultimate (fc7 after ReLU for paper/seed/torchvision)",
        "indices": list(range(n)),
        "labels": [int(v) for v in ds.labels[:n]],
    }
    npy = save_features(args.out, feats, meta)
    dim = feats.shape[1] if n else 0
    print(f"wrote {npy} ({n} x {dim} float32, {n / max(seconds, 1e-9):.0f} img/s)")
    return 0
