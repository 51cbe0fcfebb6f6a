"""`alexnet predict`: top-k classes and probabilities of image files."""

from __future__ import annotations

import argparse
import sys

from alexnet.commands.argtypes import WEIGHTS_HELP, add_device, positive_int
from alexnet.data.modes import TEST_CROPS
from alexnet.errors import UserError
from alexnet.jsonout import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="top-k classes of image files (any weights format, or --weights torchvision)",
        description="Predict the classes of images with weights from `alexnet train`, a run's "
        "checkpoint, torchvision's ImageNet file (a path, or the name `torchvision`: downloaded "
        "once) or a converted Caffe model. Arguments may "
        "be files, directories (searched recursively) or globs. Images get the evaluation "
        "preprocessing of the weights (shorter side to the stored size, centre crop, then 1, 2 "
        "or 10 crops with softmax averaged). A bad image is reported on one line and skipped; "
        "the exit status is 1 if any image failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, directories, globs")
    p.add_argument("--weights", required=True, help=WEIGHTS_HELP)
    p.add_argument(
        "--topk", type=positive_int, default=5, help="classes per image, >= 1 (default 5)"
    )
    p.add_argument(
        "--crops",
        type=int,
        choices=TEST_CROPS,
        default=1,
        help="1 (centre), 2 (centre + mirror) or 10 (paper §4.1), softmax averaged (default 1)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="images per forward pass, >= 1 (default 32)",
    )
    add_device(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.inference import Predictor, expand_image_args, weights_device

    if args.topk < 1:
        raise UserError(f"--topk {args.topk}: must be at least 1")
    paths, missing = expand_image_args(args.images)
    predictor = Predictor(
        args.weights,
        weights_device(args.weights, args.device),
        crops=args.crops,
        batch_size=args.batch_size,
    )
    failed = 0
    for arg, reason in missing:
        print(f"alexnet predict: {arg}: {reason}", file=sys.stderr)
        failed += 1
    results = []
    for pred in predictor.predict_files(paths, args.topk):
        if pred.error is not None:
            failed += 1
            print(f"alexnet predict: {pred.image}: {pred.error}", file=sys.stderr)
        if args.json:
            results.append(pred.to_json())
        elif pred.error is None:
            print(pred.image)
            for name, prob in zip(pred.classes, pred.probs):
                print(f"  {100 * prob:6.2f} %  {name}")
    if args.json:
        out = {
            "weights": args.weights,
            "model": predictor.meta.model_name,
            "crops": args.crops,
            "topk": args.topk,
            "predictions": results,
            "failed": failed,
        }
        print(json_line(out))
    return 1 if failed else 0
