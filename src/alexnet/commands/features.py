"""`alexnet features`: fc7 activations of a packed split or an image folder, for retrieval
(paper §6.1)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alexnet import commands as A
from alexnet.commands.outputs import output_file
from alexnet.data import SPLITS
from alexnet.errors import UserError
from alexnet.progress import progress_bar


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features",
        help="a layer's activations (default fc7) of a packed split or an image folder -> "
        "FEATS.npy + FEATS.json",
        description="Compute the penultimate activations (fc7 after ReLU, 4096-d, for the 224 "
        "px models; the last hidden layer of `small`) of every image of a split, centre crop, "
        "in batches on the device. Writes FEATS.npy (float32, shape (N, D)) and FEATS.json "
        '({"format": "alexnet-features/1", "count", "dim", "indices": split index of each '
        'row, "data", "split", "weights", "model", "labels", "layer"}). --data may instead be '
        "a folder of image files (searched recursively, sorted), read and preprocessed as "
        "`alexnet predict` reads them; a bad image is reported on one line and skipped (exit "
        'status 1); FEATS.json then has "paths" (relative to the folder) instead of "indices" '
        'and "split", and "labels" and "classes" only when every image sits in a class folder '
        "directly under it (FOLDER/<class>/*, classes sorted). --layer NAME takes any "
        "layer `alexnet summary` lists for the model instead (conv and fc layers after their "
        "ReLU, the last fc layer the logits), with --pool for conv maps; the file then also "
        'records "pool".',
    )
    p.add_argument(
        "--data", required=True, help="packed dataset directory, or a folder of image files"
    )
    A.add_weights(p)
    p.add_argument(
        "--split",
        choices=SPLITS,
        help="split of a packed dataset to compute (default: train)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="FEATS",
        help="writes FEATS.npy and FEATS.json (a .npy or .json suffix given is dropped)",
    )
    p.add_argument(
        "--limit",
        type=A.nonnegative_int,
        default=0,
        help="only the first N images (of a folder: files, in sorted order; 0: all)",
    )
    A.add_batch_size(p, 256)
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
    A.add_device(p)
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.inference import Predictor, features_paths, is_image_folder, save_features

    if args.layer is None and args.pool is not None:
        raise UserError("--pool goes with --layer NAME")
    args.pool = args.pool or "none"
    folder = is_image_folder(args.data)
    if folder and args.split is not None:
        raise UserError(f"--split: {args.data} is an image folder, not a packed dataset")
    for path in features_paths(args.out):
        output_file(path, "--out")
    predictor = Predictor(args.weights, args.device, batch_size=args.batch_size)
    embed, layer = _embedding(predictor, args)
    progress = sys.stderr.isatty()  # never `\r` lines into a redirected output
    t0 = time.perf_counter()
    if folder:
        feats, rows, failed = _folder_features(predictor, args, embed, progress)
    else:
        feats, rows, failed = _split_features(predictor, args, embed, progress)
    seconds = time.perf_counter() - t0
    meta = {
        "data": str(Path(args.data).resolve()),
        "weights": str(Path(args.weights).resolve()),
        "model": predictor.meta.model_config,
        **layer,
        **rows,
    }
    npy = save_features(args.out, feats, meta)
    n = feats.shape[0]
    dim = feats.shape[1] if n else 0
    print(f"wrote {npy} ({n} x {dim} float32, {n / max(seconds, 1e-9):.0f} img/s)")
    return 1 if failed else 0


def _embedding(predictor, args: argparse.Namespace):
    """(a function: uint8 images (B, S, S, 3) -> float32 (B, D) numpy, what FEATS.json records
    of the layer): the penultimate layer, or `--layer NAME --pool P` through `alexnet.explain`
    (torch weights only)."""
    from alexnet.inference import FEATURES_LAYER

    if args.layer is None:
        return lambda images: predictor.features(images).cpu().numpy(), {"layer": FEATURES_LAYER}
    from alexnet.explain import Inputs, features_at, find_layer, pool_features

    model = predictor.torch_model("--layer")
    layer = find_layer(model, args.layer, predictor.preprocess.crop_size)
    inputs = Inputs(predictor.preprocess, predictor.mean_image, predictor.device)

    def embed(images):
        maps = features_at(model, inputs(images), layer)
        return pool_features(maps, args.pool).float().cpu().numpy()

    return embed, {"layer": args.layer, "pool": args.pool}


def _split_features(predictor, args: argparse.Namespace, embed, progress: bool):
    """(features (N, D), what FEATS.json records of the rows, 0 failed) of a packed split."""
    from alexnet.data.packed import open_dataset
    from alexnet.inference import check_fits, features_source

    split = args.split or "train"
    ds = open_dataset(args.data, split)
    check_fits(predictor, ds.image_size, args.data)
    n = len(ds) if args.limit <= 0 else min(args.limit, len(ds))
    ranges = (range(i, min(n, i + args.batch_size)) for i in range(0, n, args.batch_size))
    batches = ((r, ds.images[r.start : r.stop], None) for r in ranges)
    feats, _, _ = _embed_all(batches, n, embed, progress)
    rows = {
        "split": split,
        "indices": list(range(n)),
        "labels": [int(v) for v in ds.labels[:n]],
        **features_source(args.weights, ds),
    }
    return feats, rows, 0


def _folder_features(predictor, args: argparse.Namespace, embed, progress: bool):
    """(features (N, D), what FEATS.json records of the rows, files that failed) of the image
    files under --data, read as `predict` reads them; unreadable ones named on stderr."""
    from alexnet.inference import expand_image_args, features_source

    paths, missing = expand_image_args([args.data])
    if missing:
        raise UserError(f"--data {args.data}: holds no image files (nor a packed dataset)")
    relative = {p: Path(p).relative_to(args.data).as_posix() for p in paths}
    labelled = _class_labels(list(relative.values()))
    paths = paths[: args.limit or None]
    batches = ((b.paths, b.images, b.error) for b in predictor.file_batches(paths))
    feats, done, failed = _embed_all(batches, len(paths), embed, progress)
    if paths and not done:
        raise UserError(f"--data {args.data}: none of its {len(paths)} image files could be read")
    rows = {"paths": [relative[p] for p in done]}
    if labelled is not None:
        classes, label_of = labelled
        rows.update(labels=[label_of[relative[p]] for p in done], classes=classes)
    return feats, {**rows, **features_source(args.weights)}, failed


def _embed_all(batches, total: int, embed, progress: bool):
    """(ids, uint8 images (B, S, S, 3), error) batches -> (float32 features (N, D) of those
    without an error, (0, 0) for none; their ids; how many failed, each named on stderr)."""
    import numpy as np

    chunks, done, failed = [], [], 0
    with progress_bar(total=total, unit="img", desc="features", disable=not progress) as bar:
        for ids, images, error in batches:
            if error is None:
                chunks.append(embed(np.ascontiguousarray(images)))
                done.extend(ids)
            else:
                print(f"alexnet features: {ids[0]}: {error}", file=sys.stderr)
                failed += 1
            bar.update(len(ids))
    if not chunks:
        return np.zeros((0, 0), np.float32), done, failed
    return np.concatenate(chunks).astype(np.float32, copy=False), done, failed


def _class_labels(relative: list[str]) -> tuple[list[str], dict[str, int]] | None:
    """When every path sits in a folder directly under the root ("<class>/FILE"): the sorted
    class names and {path: index of its class}; else None."""
    folders = {r: r.split("/")[0] for r in relative if r.count("/") == 1}
    if len(folders) != len(relative):
        return None
    classes = sorted(set(folders.values()))
    index = {c: i for i, c in enumerate(classes)}
    return classes, {r: index[c] for r, c in folders.items()}
