"""`alexnet plot`: training curves of one or more runs from RUN/metrics.jsonl."""

from __future__ import annotations

import argparse

from alexnet.commands.outputs import output_file
from alexnet.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plot",
        help="training loss and validation top-1/top-5 error per epoch, runs overlaid",
        description="Plot RUN/metrics.jsonl of each run: training (and validation) loss, and "
        "validation top-1 / top-5 error per epoch, one colour per run, with a legend.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or metrics files)")
    p.add_argument("--out", required=True, metavar="OUT.png", help="the PNG to write")
    p.add_argument("--labels", nargs="+", help="legend names, one per run")
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.viz import training_curves

    if args.labels and len(args.labels) != len(args.runs):
        raise UserError(f"--labels: {len(args.labels)} names for {len(args.runs)} runs")
    out = output_file(args.out, "--out", ".png")
    w, h = training_curves(args.runs, out, labels=args.labels)
    print(f"wrote {out} ({w}x{h} px)")
    return 0
