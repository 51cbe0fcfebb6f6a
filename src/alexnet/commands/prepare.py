"""`alexnet prepare SRC OUT`: pack a dataset once (paper §2 preprocessing + statistics)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from alexnet.data.pack import prepare
from alexnet.data.sources import SOURCE_NAMES, open_source
from alexnet.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="pack a dataset (ImageNet, Fashion-MNIST, CIFAR-10, ...) for fast training",
        description=(
            "Read SRC (ImageFolder train/ + val/, the official ILSVRC2012 tars + devkit, the "
            "Kaggle layout, Fashion-MNIST idx files, CIFAR-10 batches, or `synthetic`) and "
            "write the packed dataset directory OUT: uint8 images (large images: shorter side "
            "to --size, centre crop; small datasets keep their size), labels, class names, the "
            "training mean image and RGB PCA, and OUT/report.json listing every skipped or "
            "repaired file. Interrupt it and run it again to resume."
        ),
    )
    p.add_argument(
        "src", metavar="SRC", help="dataset directory (any label for --source synthetic)"
    )
    p.add_argument("out", metavar="OUT", help="packed dataset directory to write")
    p.add_argument(
        "--source", choices=SOURCE_NAMES, default="auto", help="layout (default: detect)"
    )
    p.add_argument(
        "--size", type=int, default=256, help="side of stored large images (default 256)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: all cores)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="skip images with more pixels than this (decompression bombs)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("synthetic data (--source synthetic)")
    g.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    g.add_argument("--count", type=int, default=1000, help="train images; val gets count/5")
    g.add_argument("--image-size", type=int, default=32, help="image side (default 32)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.size < 8:
        raise UserError(f"--size {args.size}: must be at least 8")
    if Path(args.out).exists() and not args.overwrite:
        raise UserError(f"{args.out}: already exists (use --overwrite to replace it)")
    t0 = time.perf_counter()
    source = open_source(
        args.src,
        args.source,
        size=args.size,
        max_pixels=args.max_pixels,
        synthetic={
            "classes": args.classes,
            "count": args.count,
            "image_size": args.image_size,
            "seed": args.seed,
        },  # fmt: skip
    )
    report = prepare(source, args.out, workers=args.workers, overwrite=args.overwrite,
                     progress=not args.no_progress)  # fmt: skip
    s = report["splits"]
    h, w = source.image_size
    print(
        f"{args.out}: {source.name}, {s['train']} train + {s['val']} val images of {h}x{w}, "
        f"{len(report['classes'])} classes, {len(report['skipped'])} skipped, "
        f"{len(report['repaired'])} repaired (see {Path(args.out) / 'report.json'}), "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0
