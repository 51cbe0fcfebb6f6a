"""`alexnet neighbors`: training images nearest to query images in fc7 space (paper §6.1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet import commands as A
from alexnet.commands.outputs import output_file
from alexnet.data import SPLITS
from alexnet.errors import UserError
from alexnet.fileio import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "neighbors",
        help="nearest training images by fc7 Euclidean distance (paper Fig. 4)",
        description="For each query (an image file, or an integer: an index into --query-split "
        "of the dataset), the k images of the features' split nearest in Euclidean distance "
        "of their fc7 activations, computed with batched matrix products on the device. "
        "Features of an image folder (`alexnet features --data FOLDER`) name each neighbour "
        "by its path in the folder (and read it from there for --out); integer queries then "
        "have no dataset to index. Prints text or JSON; --out writes the paper's Fig. 4 "
        "layout (query first).",
    )
    p.add_argument("--features", metavar="FEATS", help="from `alexnet features` (else computed)")
    p.add_argument(
        "--data",
        help="packed dataset, or the image folder of FEATS (default: the one named in FEATS.json)",
    )
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
    p.add_argument("--k", type=A.positive_int, default=8, help="neighbours per query (default 8)")
    p.add_argument("--out", metavar="GRID.png", help="write the neighbours grid")
    A.add_json(p)
    A.add_batch_size(p, 256, " when computing the features")
    A.add_device(p)
    return p


def _base(args: argparse.Namespace):
    """The searched side: (predictor, features (N, D), the images of their rows, the packed
    dataset or image folder they came from)."""
    from alexnet.data.packed import open_dataset
    from alexnet.inference import (
        Predictor,
        SplitRows,
        check_features_source,
        check_fits,
        index_rows,
        is_image_folder,
        load_features,
        split_features,
    )

    if not args.features:
        if not (args.data and args.weights):
            raise UserError("neighbors needs --features FEATS, or --data DIR and --weights FILE")
        data, weights = args.data, args.weights
        if is_image_folder(data):
            raise UserError(
                f"--data {data}: an image folder; first `alexnet features --data {data} "
                f"--weights {weights} --out FEATS`, then `alexnet neighbors --features FEATS`"
            )
        predictor = Predictor(weights, args.device)
        ds = open_dataset(data, args.split)
        check_fits(predictor, ds.image_size, data)
        feats = split_features(predictor, ds.images, args.batch_size)
        return predictor, feats, SplitRows(ds, list(range(len(ds)))), data
    feats, fmeta = load_features(args.features)
    data = args.data or fmeta.get("data")
    weights = args.weights or fmeta.get("weights")
    if not weights or not data:
        raise UserError(f"{args.features}: names no weights/data; pass --weights and --data")
    predictor = Predictor(weights, args.device)
    base = index_rows(fmeta, data, predictor)
    dataset = base.dataset if isinstance(base, SplitRows) else None  # None: an image folder
    if dataset is not None:
        check_fits(predictor, dataset.image_size, data)
    check_features_source(args.features, fmeta, weights, dataset)
    if dataset is not None and base.ids and max(base.ids) >= len(dataset):
        raise UserError(f"{args.features}: rows up to {max(base.ids)}, {data} has {len(dataset)}")
    return predictor, feats, base, data


def _queries(args: argparse.Namespace, predictor, data) -> tuple[list[str], list, int]:
    """Query names, (H, W, 3) uint8 images, and how many could not be read."""
    import numpy as np

    from alexnet.data.packed import open_dataset
    from alexnet.inference import check_fits, expand_image_args, is_image_folder, read_image

    query_ds = None
    names, images, failed = [], [], 0
    for q in args.query:
        if q.lstrip("-").isdigit():
            if is_image_folder(data):
                raise UserError(
                    f"query {q}: an index into a packed dataset's split, but the features "
                    f"are of the image folder {data}: query with image files"
                )
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


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from alexnet.inference import neighbours

    if args.out:
        args.out = str(output_file(args.out, "--out", ".png"))
    predictor, feats, base, data = _base(args)
    names, images, failed = _queries(args, predictor, data)
    # one at a time: a file query has the weights' stored size, an index query the data's
    qf = np.concatenate([predictor.features(img[None]).cpu().numpy() for img in images])
    if len(feats) and qf.shape[1] != feats.shape[1]:
        raise UserError(
            f"{args.features}: {feats.shape[1]}-d features, but {predictor.weights} gives "
            f"{qf.shape[1]}-d"
        )
    found = neighbours(qf, feats, base, args.k, device=predictor.device)
    results = [{"query": name, "neighbors": f} for name, f in zip(names, found)]
    if args.out:
        from alexnet.viz import neighbors_grid

        neighbors_grid(
            images,
            [[base.image(n[base.key]) for n in row] for row in found],
            args.out,
            query_titles=[Path(n).name for n in names],
            # each neighbour: its class, or (unlabelled) its file name, and its distance
            neighbour_titles=[
                [f"{n['label'] or Path(n['path']).name}\n{n['distance']:.3g}" for n in row]
                for row in found
            ],
            feature=predictor.feature_layer,
        )
    split = base.split
    if args.json:
        out = {"split": split, "data": str(data), "k": args.k, "results": results, "grid": args.out}
        print(json_line(out))
    else:
        for r in results:
            print(r["query"])
            for n in r["neighbors"]:
                where = f"{split}:{n['index']:<7}" if split else n["path"]
                label = "" if n["label"] is None else f"  {n['label']}"
                print(f"  {where} {n['distance']:10.4f}{label}")
        if args.out:
            print(f"grid: {args.out}")
    return 1 if failed else 0
