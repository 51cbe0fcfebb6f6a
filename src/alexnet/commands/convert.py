"""`alexnet convert caffe MODEL.caffemodel [--deploy P] [--mean M] [--classes S] OUT`."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "convert",
        help="convert other frameworks' AlexNet weights (Caffe's bvlc_alexnet)",
        description="Convert Caffe's bvlc_alexnet (.caffemodel, either the 'layer' or the old "
        "'layers' layout) to an alexnet weights file: the paper model at input size 227 with "
        "Caffe's LRN (k=1, alpha/n), conv1 flipped from BGR to RGB, and Caffe's preprocessing "
        "(0..255 minus the mean) in its metadata, so predict / eval / features apply it.",
    )
    p.add_argument("format", choices=["caffe"], help="the source framework")
    p.add_argument("model", type=Path, metavar="MODEL.caffemodel", help="the Caffe weights")
    p.add_argument(
        "out", type=Path, metavar="OUT.safetensors", help="the alexnet weights file to write"
    )
    p.add_argument(
        "--deploy",
        type=Path,
        metavar="deploy.prototxt",
        help="the net's text definition (default: the layers stored in the caffemodel)",
    )
    p.add_argument(
        "--mean",
        type=Path,
        metavar="imagenet_mean.binaryproto",
        help="Caffe's mean image (default: the per-channel mean 104, 117, 123 BGR)",
    )
    p.add_argument(
        "--classes",
        type=Path,
        metavar="synset_words.txt",
        help="class names, one 'wnid words' line per class in index order (Caffe's "
        "synset_words.txt): use it so `alexnet eval` accepts an ImageNet packed from the "
        "official devkit (default: torchvision's short ImageNet names)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.weights.caffe import convert

    if args.out.suffix != ".safetensors":
        raise UserError(f"{args.out}: the output must be a .safetensors file")
    if args.out.resolve() == args.model.resolve():
        raise UserError(f"{args.out}: would overwrite the input")
    meta = convert(args.model, args.out, deploy=args.deploy, mean=args.mean, classes=args.classes)
    opts = meta["model"]["options"]
    mean = "mean image" if meta["preprocess"]["normalize"] == "mean_image" else "channel mean"
    print(
        f"wrote {args.out}: paper model, input {opts['input_size']}, LRN k={opts['lrn_k']:g} "
        f"alpha/n, {len(meta['classes'])} classes, Caffe input (0..255 minus the {mean})"
    )
    return 0
