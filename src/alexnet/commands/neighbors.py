"""`alexnet neighbors`: training images nearest to query images in fc7 space (paper §6.1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.commands.argtypes import add_device, positive_int
from alexnet.commands.outputs import output_file
from alexnet.data.modes import SPLITS
from alexnet.errors import UserError
from alexnet.jsonout import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "neighbors",
        help="nearest training images by fc7 Euclidean distance (paper Fig. 4)",
        description="For each query (an image file, or an integer: an index into --query-split "
        "of the dataset), the k images of the features' split nearest in Euclidean distance "
        "of their fc7 activations, computed with batched matrix products on the device. "
        "Prints text or JSON; --out writes the paper's Fig. 4 layout (query first).",
    )
    p.add_argument("--features", metavar="FEATS", help="from `alexnet features` (else computed)")
    p.add_argument("--data", help="packed dataset (default: the one named in FEATS.json)")
    p.add_argument("--weights", help="weights file (default: the one named in FEATS.json)")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="train",
        help="split searched when computing the features (default: train; with --features, "
        "the one named in FEATS.json)",
    )
    p.add_argument(
        "--query",
        nargs="+",
        required=True,
        metavar="IMAGE_OR_INDEX",
        help="image files, directories or globs, or integers: indices into --query-split",
    )
    p.add_argument(
        "--query-split",
        choices=SPLITS,
        default="val",
        help="split that integer queries index (val)",
    )
    p.add_argument("--k", type=positive_int, default=8, help="neighbours per query (default 8)")
    p.add_argument("--out", metavar="GRID.png", help="write the neighbours grid")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per forward pass when computing the features, >= 1 (default 256)",
    )
    add_device(p)
    return p


def _base(args: argparse.Namespace, device):
    """The searched side: (predictor, dataset, features (N, D), split row of each feature)."""
    from alexnet.data.packed import open_dataset
    from alexnet.inference import (
        Predictor,
        check_features_source,
        check_fits,
        load_features,
        split_features,
    )

    if args.features:
        feats, fmeta = load_features(args.features)
        data = args.data or fmeta.get("data")
        weights = args.weights or fmeta.get("weights")
        split, rows = fmeta.get("split", "train"), list(fmeta["indices"])
    else:
        if not (args.data and args.weights):
            raise UserError("neighbors needs --features FEATS, or --data DIR and --weights FILE")
        data, weights, split = args.data, args.weights, args.split
        feats, rows = None, None
    if not weights or not data:
        raise UserError(f"{args.features}: names no weights/data; pass --weights and --data")
    predictor = Predictor(weights, device)
    base_ds = open_dataset(data, split)
    check_fits(predictor, base_ds.image_size, data)
    if feats is not None:
        check_features_source(args.features, fmeta, weights, base_ds)
        if rows and max(rows) >= len(base_ds):
            raise UserError(f"{args.features}: rows up to {max(rows)}, {data} has {len(base_ds)}")
    else:
        feats = split_features(predictor, base_ds.images, args.batch_size)
        rows = list(range(len(base_ds)))
    return predictor, base_ds, feats, rows, data


def _queries(args: argparse.Namespace, predictor, data) -> tuple[list[str], list, int]:
    """Query names, (H, W, 3) uint8 images, and how many could not be read."""
    import numpy as np

    from alexnet.data.packed import open_dataset
    from alexnet.inference import (
        check_fits,
        expand_image_args,
        read_image,
    )

    query_ds = None
    names, images, failed = [], [], 0
    for q in args.query:
        if q.lstrip("-").isdigit():
            if query_ds is None:
                query_ds = open_dataset(data, args.query_split)
                check_fits(predictor, query_ds.image_size, data)
            i, n = int(q), len(query_ds)
            if not 0 <= i < n:
                valid = f"0..{n - 1}" if n else "none: the split is empty"
                where = f"{data} split {args.query_split!r}"
                raise UserError(f"query index {i} out of range: {where} has {n} images ({valid})")
            images.append(np.asarray(query_ds.images[i]))
            names.append(f"{args.query_split}:{i} ({query_ds.classes[query_ds.labels[i]]})")
            continue
        paths, missing = expand_image_args([q])
        for arg, reason in missing:
            print(f"alexnet neighbors: {arg}: {reason}", file=sys.stderr)
            failed += 1
        for path in paths:
            try:
                img = read_image(path, predictor.image_size, predictor.resize_rule)
            except UserError as exc:
                print(f"alexnet neighbors: {exc}", file=sys.stderr)
                failed += 1
                continue
            names.append(path)
            images.append(img)
    if not images:
        raise UserError("no query image could be read")
    return names, images, failed


def _draw(args, predictor, base_ds, names, images, results, dim: int) -> None:
    import numpy as np

    from alexnet.viz import feature_name, neighbors_grid

    nb_imgs = [[np.asarray(base_ds.images[n["index"]]) for n in r["neighbors"]] for r in results]
    nb_titles = [[f"{n['label']}\n{n['distance']:.3g}" for n in r["neighbors"]] for r in results]
    layer = feature_name(predictor.meta.model_name, dim)
    neighbors_grid(
        images,
        nb_imgs,
        args.out,
        query_titles=[Path(n).name for n in names],
        neighbour_titles=nb_titles,
        feature=layer,
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from alexnet.inference import neighbours, weights_device

    if args.out:
        args.out = str(output_file(args.out, "--out", ".png"))
    weights = args.weights
    if not weights and args.features:  # the weights the features file names
        from alexnet.inference import load_features

        weights = load_features(args.features)[1].get("weights")
    device = weights_device(weights, args.device)
    predictor, base_ds, feats, rows, data = _base(args, device)
    names, images, failed = _queries(args, predictor, data)
    # one at a time: a file query has the weights' stored size, an index query the data's
    qf = np.concatenate([predictor.features(img[None]).cpu().numpy() for img in images])
    if len(feats) and qf.shape[1] != feats.shape[1]:
        raise UserError(
            f"{args.features}: {feats.shape[1]}-d features, but {predictor.weights} gives "
            f"{qf.shape[1]}-d"
        )
    found = neighbours(qf, feats, rows, base_ds, args.k, device=device)
    results = [{"query": name, "neighbors": f} for name, f in zip(names, found)]
    if args.out:
        _draw(args, predictor, base_ds, names, images, results, qf.shape[1])
    split = base_ds.split
    if args.json:
        print(json_line({"split": split, "k": args.k, "results": results, "grid": args.out}))
    else:
        for r in results:
            print(r["query"])
            for n in r["neighbors"]:
                print(f"  {split}:{n['index']:<7} {n['distance']:10.4f}  {n['label']}")
        if args.out:
            print(f"grid: {args.out}")
    return 1 if failed else 0
