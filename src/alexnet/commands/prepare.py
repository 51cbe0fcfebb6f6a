"""`alexnet prepare SRC OUT [--encoding raw|jpeg]`: pack a dataset once (paper §2
preprocessing + statistics); `alexnet prepare --verify OUT`: check every stored record."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alexnet.commands import float_range, int_range, nonnegative_int, positive_int
from alexnet.commands.outputs import creatable_dir
from alexnet.data import DEFAULT_QUALITY, ENCODINGS, SOURCE_NAMES
from alexnet.errors import UserError
from alexnet.interrupts import interruptible, stopped_by

DESCRIPTION = (
    "Read SRC (a folder of class folders SRC/<class>/*, ImageFolder train/ + val/, the "
    "official ILSVRC2012 tars + devkit, the Kaggle layout, Fashion-MNIST idx files, "
    "CIFAR-10 batches, or `synthetic`) and "
    "write the packed dataset directory OUT: uint8 images (large images: shorter side "
    "to --size, centre crop; small datasets keep their size), labels, class names, the "
    "training mean image and RGB PCA, and OUT/report.json listing every skipped or "
    "repaired file. Interrupt it and run it again to resume. --encoding jpeg stores "
    "each image as a JPEG (about 1/13 of the bytes at q90), decoded as it is loaded. "
    "`alexnet prepare --verify OUT` re-reads a packed dataset and names every record "
    "whose bytes no longer match their checksum. A folder without a validation split "
    "gets one: --val-fraction of each class, drawn with --seed (recorded in "
    "OUT/report.json)."
)
HELP = {
    "src": "dataset directory (any label for --source synthetic)",
    "out": "packed dataset directory to write",
    "--source": "layout (default: detect)",
    "--size": "side of stored large images, 8..4096 (256)",
    "--workers": "decoding processes; with --verify, checking threads (default: all cores)",
    "--overwrite": "replace OUT if it is a packed dataset or an empty directory "
    "(never anything else)",
    "--max-pixels": "skip images with more pixels than this (decompression bombs), >= 1 "
    "(default 89,478,485: Pillow's limit)",
    "--val-fraction": "for a folder without a validation split (SRC/<class>/*, or only train/): "
    "the fraction of each class held out for validation, in (0, 1) (default 0.1)",
    "--seed": "random seed of that split and of synthetic data, >= 0 (0)",
    "--encoding": "how images are stored: raw uint8 pixels (default) or JPEG records",
    "--quality": f"JPEG quality for --encoding jpeg, 1..100 ({DEFAULT_QUALITY})",
    "--verify": "instead of packing: check every record of the packed dataset OUT "
    "against its CRC32 (exit 1 naming split and index of each damaged one)",
    "--no-progress": "no progress bar",
    "--classes": "number of classes, 2..100000 (10)",
    "--count": "train images, >= 1 (1000); val gets count // 5, at least 1",
    "--image-size": "image side, 8..1024 (32)",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="pack a dataset (ImageNet, Fashion-MNIST, CIFAR-10, ...) for fast training",
        description=DESCRIPTION,
    )
    synthetic = p.add_argument_group("synthetic data (--source synthetic)")
    for where, name, kw in (
        (p, "src", {"metavar": "SRC", "nargs": "?"}),
        (p, "out", {"metavar": "OUT", "nargs": "?"}),
        (p, "--source", {"choices": SOURCE_NAMES, "default": "auto"}),
        (p, "--size", {"type": int_range(8, 4096), "default": 256}),
        (p, "--workers", {"type": positive_int}),
        (p, "--overwrite", {"action": "store_true"}),
        (p, "--max-pixels", {"type": positive_int}),
        (p, "--val-fraction", {"type": float_range(0, 1, lo_open=True, hi_open=True)}),
        (p, "--seed", {"type": nonnegative_int, "default": 0}),
        (p, "--encoding", {"choices": ENCODINGS, "default": "raw"}),
        (p, "--quality", {"type": int_range(1, 100)}),
        (p, "--verify", {"metavar": "OUT"}),
        (p, "--no-progress", {"action": "store_true"}),
        (synthetic, "--classes", {"type": int_range(2, 100000), "default": 10}),
        (synthetic, "--count", {"type": positive_int, "default": 1000}),
        (synthetic, "--image-size", {"type": int_range(8, 1024), "default": 32}),
    ):
        where.add_argument(name, help=HELP[name], **kw)
    return p


def _verify(args: argparse.Namespace, limit: int = 20) -> int:
    """Print a line per damaged record (at most `limit`), then the totals."""
    from alexnet.data.packed import verify

    if args.src is not None or args.out is not None:
        raise UserError("--verify OUT checks one packed dataset: give no SRC or OUT besides it")
    v = verify(args.verify, threads=args.workers)
    lines = [f"{v.root}: {split} record {i}: {why}" for split, i, why in v.damaged[:limit]]
    if len(v.damaged) > limit:
        lines.append(f"{v.root}: ... and {len(v.damaged) - limit} more damaged records")
    counts = " + ".join(f"{n} {s}" for s, n in v.checked.items())
    fp = {True: ", fingerprint matches", False: ", FINGERPRINT DOES NOT MATCH", None: ""}
    tail = "" if v.ok else "; prepare the dataset again"
    totals = f"{counts} records checked, {len(v.damaged)} damaged{fp[v.fingerprint_ok]}{tail}"
    lines.append(f"{v.root}: {v.encoding}, {totals}")
    print("\n".join(lines), file=sys.stdout if v.ok else sys.stderr)
    return 0 if v.ok else 1


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return _verify(args)
    if args.src is None or args.out is None:
        raise UserError("needs SRC and OUT (or --verify OUT to check a packed dataset)")
    from alexnet.data.pack import check_output, prepare
    from alexnet.data.sources import open_source

    if args.quality is not None and args.encoding != "jpeg":
        raise UserError("--quality sets the JPEG quality: it needs --encoding jpeg")
    src = None if args.source == "synthetic" else args.src
    check_output(args.out, src, args.overwrite)  # before reading anything: nothing is lost
    creatable_dir(args.out, "OUT")  # OUT.partial is written beside OUT
    t0 = time.perf_counter()
    source = open_source(
        args.src,
        args.source,
        size=args.size,
        max_pixels=args.max_pixels,
        synthetic={k: getattr(args, k) for k in ("classes", "count", "image_size", "seed")},
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    try:
        with interruptible():  # the progress is saved: a rerun resumes
            report = prepare(
                source,
                args.out,
                workers=args.workers,
                overwrite=args.overwrite,
                progress=not args.no_progress,
                src=src,
                encoding=args.encoding,
                quality=args.quality,
            )
    except KeyboardInterrupt as exc:  # the command line prints this as its one line
        exc.args = (
            f"{stopped_by(exc)}; run the same command again to resume from {args.out}.partial",
        )
        raise
    s = report["splits"]
    h, w = source.image_size
    jpeg = f" (JPEG q{args.quality or DEFAULT_QUALITY})" if args.encoding == "jpeg" else ""
    print(
        f"{args.out}: {source.name}, {s['train']} train + {s['val']} val images of {h}x{w}"
        f"{jpeg}, "
        f"{len(report['classes'])} classes, {len(report['skipped'])} skipped, "
        f"{len(report['repaired'])} repaired (see {Path(args.out) / 'report.json'}), "
        f"{time.perf_counter() - t0:.1f} s"
    )
    if source.split:
        print(
            f"{args.out}: no validation split in {args.src}: {source.split['val_fraction']:g} of "
            f"each class held out for it (seed {source.split['seed']}; --val-fraction, --seed)"
        )
    return 0
