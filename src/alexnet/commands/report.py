"""`alexnet report`: pictures and report.md for a run directory."""

from __future__ import annotations

import argparse

from alexnet import commands as A
from alexnet.commands.outputs import output_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="write RUN/report.md with kernels, curves, neighbours and predictions",
        description="Write into RUN: kernels.png (paper Fig. 3), curves.png, neighbours.png "
        "(paper Fig. 4), predictions.png, and report.md showing them with the results table.",
    )
    p.add_argument("run", metavar="RUN", help="run directory from `alexnet train`")
    p.add_argument("--data", required=True, help="the packed dataset the run trained on")
    p.add_argument(
        "--weights",
        help="weights file (default RUN/weights.safetensors, or RUN/weights-best.safetensors "
        "when only that exists)",
    )
    p.add_argument("--queries", type=A.positive_int, default=4, help="neighbour queries, >= 1 (4)")
    p.add_argument("--k", type=A.positive_int, default=7, help="neighbours per query, >= 1 (7)")
    p.add_argument(
        "--max-train",
        type=A.nonnegative_int,
        default=0,
        help="search the first N train images (0: all)",
    )
    A.add_device(p)
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.report import write_report
    from alexnet.runtime import resolve_device

    output_dir(args.run, "RUN")
    out = write_report(
        args.run,
        args.data,
        weights=args.weights,
        device=str(resolve_device(args.device)),
        queries=args.queries,
        k=args.k,
        max_train=args.max_train,
    )
    print(f"wrote {out['report']} with " + ", ".join(f.split("/")[-1] for f in out["files"][1:]))
    return 0
