"""`alexnet kernels`: the conv1 kernels as an image grid (paper Fig. 3)."""

from __future__ import annotations

import argparse

from alexnet import commands as A
from alexnet.commands.outputs import output_file


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "kernels",
        help="conv1 kernel grid PNG (paper Fig. 3)",
        description="Draw every conv1 kernel of a weights file, each normalized to its own "
        "min..max for display; the `paper` model's two towers (48 kernels each) in separate, "
        "labelled blocks.",
    )
    A.add_weights(p)
    p.add_argument("--out", required=True, metavar="OUT.png", help="the PNG to write")
    p.add_argument(
        "--width", type=A.int_range(64, 16384), default=800, help="image width, 64..16384 px (800)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.viz import kernel_grid
    from alexnet.weights import load as load_weights

    out = output_file(args.out, "--out", ".png")
    model, _ = load_weights(args.weights, "cpu")
    w, h = kernel_grid(model, out, width_px=args.width)
    print(f"wrote {out} ({w}x{h} px)")
    return 0
