"""`alexnet features`: fc7 activations of a packed split, for retrieval (paper §6.1)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alexnet.commands.argtypes import WEIGHTS_HELP, add_device, nonnegative_int, positive_int
from alexnet.commands.outputs import output_file
from alexnet.data.modes import SPLITS
from alexnet.errors import UserError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features",
        help="a layer's activations (default fc7) of a packed split -> FEATS.npy + FEATS.json",
        description="Compute the penultimate activations (fc7 after ReLU, 4096-d, for the 224 "
        "px models; the last hidden layer of `small`) of every image of a split, centre crop, "
        "in batches on the device. Writes FEATS.npy (float32, shape (N, D)) and FEATS.json "
        '({"format": "alexnet-features/1", "count", "dim", "indices": split index of each '
        'row, "data", "split", "weights", "model", "labels", "layer"}). --layer NAME takes any '
        "layer `alexnet summary` lists for the model instead (conv and fc layers after their "
        "ReLU, the last fc layer the logits), with --pool for conv maps; the file then also "
        'records "pool".',
    )
    p.add_argument("--data", required=True, help="packed dataset directory")
    p.add_argument("--weights", required=True, help=WEIGHTS_HELP)
    p.add_argument(
        "--split", choices=SPLITS, default="train", help="split to compute (default: train)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FEATS",
        help="writes FEATS.npy and FEATS.json (a .npy or .json suffix given is dropped)",
    )
    p.add_argument(
        "--limit", type=nonnegative_int, default=0, help="only the first N images (0: all)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per forward pass, >= 1 (default 256)",
    )
    p.add_argument(
        "--layer",
        metavar="NAME",
        help="a layer as `alexnet summary` names it (conv1..conv5, pool1, pool2, pool5, fc6, "
        "fc7, fc8 for the paper net; default: the penultimate layer, fc7)",
    )
    p.add_argument(
        "--pool",
        choices=("max", "avg", "none"),
        help="with --layer on a conv, pool or norm layer: max or avg over positions -> (N, C), "
        "or none: the flattened maps (N, C*H*W) (default none)",
    )
    add_device(p)
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.data.packed import open_dataset
    from alexnet.inference import (
        FEATURES_LAYER,
        Predictor,
        check_fits,
        features_paths,
        features_source,
        save_features,
        split_features,
        weights_device,
    )

    if args.layer is None and args.pool is not None:
        raise UserError("--pool goes with --layer NAME")
    args.pool = args.pool or "none"
    for path in features_paths(args.out):
        output_file(path, "--out")
    ds = open_dataset(args.data, args.split)
    predictor = Predictor(args.weights, weights_device(args.weights, args.device))
    check_fits(predictor, ds.image_size, args.data)
    n = len(ds) if args.limit <= 0 else min(args.limit, len(ds))
    t0 = time.perf_counter()
    progress = sys.stderr.isatty()  # never `\r` lines into a redirected output
    if args.layer is None:
        feats = split_features(predictor, ds.images[:n], args.batch_size, progress=progress)
        layer = {"layer": FEATURES_LAYER}
    else:
        feats = _layer_features(predictor, ds.images[:n], args, progress)
        layer = {"layer": args.layer, "pool": args.pool}
    seconds = time.perf_counter() - t0
    meta = {
        "data": str(Path(args.data).resolve()),
        "split": args.split,
        "weights": str(Path(args.weights).resolve()),
        "model": predictor.meta.model_config,
        **layer,
        "indices": list(range(n)),
        "labels": [int(v) for v in ds.labels[:n]],
        **features_source(args.weights, ds),
    }
    npy = save_features(args.out, feats, meta)
    dim = feats.shape[1] if n else 0
    print(f"wrote {npy} ({n} x {dim} float32, {n / max(seconds, 1e-9):.0f} img/s)")
    return 0


def _layer_features(predictor, images, args: argparse.Namespace, progress: bool):
    """`--layer NAME --pool P` through `alexnet.explain` (torch weights only)."""
    from alexnet.explain import Inputs, find_layer, split_layer_features

    model = predictor.torch_model("--layer")
    layer = find_layer(model, args.layer, predictor.preprocess.crop_size)
    inputs = Inputs(predictor.preprocess, predictor.mean_image, predictor.device)
    return split_layer_features(model, inputs, images, layer, args.pool, args.batch_size, progress)
