"""`alexnet summary`: the per-layer table of a model, measured from the model itself."""

from __future__ import annotations

import argparse
import json

from alexnet import commands as A
from alexnet.models.registry import MODELS


def add_parser(subparsers) -> argparse.ArgumentParser:
    models = "; ".join(f"{k}: {about}" for k, (about, _) in MODELS.items())
    parser = subparsers.add_parser(
        "summary",
        help="per-layer table: shapes, parameters, multiply-adds",
        description=f"Per-layer table computed from the model object. Models: {models}.",
    )
    parser.add_argument(
        "--model", default="paper", choices=list(MODELS), help="the network (default: %(default)s)"
    )
    parser.add_argument(
        "--input-size",
        type=A.positive_int,
        default=None,
        help="input side: 224 or 227 for paper, 28 or 32 for small, 224 for seed, >= 63 for "
        "torchvision (default: the model's)",
    )
    parser.add_argument(
        "--num-classes",
        type=A.positive_int,
        default=None,
        help="output classes, >= 1 (default: the model's)",
    )
    A.add_json(parser, "print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser


def run(args: argparse.Namespace) -> int:
    from alexnet.models.registry import get_model
    from alexnet.models.summary import format_table, summary_dict

    options = {}
    if args.input_size is not None and args.model in ("paper", "small"):
        options["input_size"] = args.input_size
    model = get_model(args.model, num_classes=args.num_classes, **options)
    summary = summary_dict(model, args.input_size)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary, markdown=args.markdown))
    return 0
