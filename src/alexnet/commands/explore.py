"""`alexnet explore`: the images each unit of a layer fires most on (Zeiler & Fergus 2014)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from alexnet import commands as A
from alexnet.commands.outputs import creatable_dir
from alexnet.data import SPLITS

UNITS_PER_PICTURE = 16


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explore",
        help="the top-K images of each unit of a layer, with the patch it sees -> OUT/units.json",
        description="For each unit (channel) of a layer, the K images of a split where it fires "
        "most (each image once, at its strongest position; one batched pass with a running "
        "top-K), their activation, and the box of the model's input the unit sees there (its "
        "receptive field clipped to the image, [x0, y0, x1, y1]). Writes OUT/units.json "
        '({"layer", "receptive_field", "jump", "input_size", "units": [{"unit", "top": '
        '[{"index", "y", "x", "activation", "box"}]}]}, descending) and '
        f"OUT/units_FIRST-LAST.png, {UNITS_PER_PICTURE} units a picture: each unit's top "
        "patches in a row (Zeiler & Fergus 2014, Fig. 2). Layer names as `alexnet summary` "
        "lists them; conv and fc layers after their ReLU.",
    )
    A.add_weights(p)
    p.add_argument("--data", required=True, help="packed dataset directory")
    p.add_argument("--layer", required=True, metavar="NAME", help="e.g. conv5, pool2, fc6")
    p.add_argument(
        "--units",
        default="0-15",
        metavar="LIST",
        help="'all', a range '0-15', a list '3,7,9' or both '0-3,9' (default 0-15, or all "
        "units of a layer with fewer)",
    )
    p.add_argument("--top", type=A.positive_int, default=9, help="images per unit (default 9)")
    p.add_argument("--out", required=True, metavar="OUT", help="output directory (created)")
    p.add_argument("--split", choices=SPLITS, default="val", help="split to search (default: val)")
    p.add_argument(
        "--limit", type=A.nonnegative_int, default=0, help="only the first N images (0: all)"
    )
    A.add_batch_size(p, 128)
    p.add_argument("--no-pictures", action="store_true", help="write units.json only")
    A.add_device(p)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from alexnet.data.packed import open_dataset
    from alexnet.errors import UserError
    from alexnet.explain import find_layer, parse_units, top_units, unit_patches, units_json
    from alexnet.fileio import atomic_write_text
    from alexnet.inference import Predictor, check_fits
    from alexnet.progress import progress_bar

    out = creatable_dir(args.out, "--out")
    ds = open_dataset(args.data, args.split)
    predictor = Predictor(args.weights, args.device)
    check_fits(predictor, ds.image_size, args.data)
    model = predictor.torch_model("explore")
    size = int(predictor.preprocess.crop_size)
    layer = find_layer(model, args.layer, size)
    count = layer.shape[0]
    spec = f"0-{count - 1}" if args.units == "0-15" and count < 16 else args.units
    units = parse_units(spec, count)
    n = len(ds) if args.limit <= 0 else min(args.limit, len(ds))
    if n == 0:
        raise UserError(f"{args.data}: split {args.split!r} holds no images")
    inputs = predictor.inputs
    t0 = time.perf_counter()
    with progress_bar(total=n, unit="img", desc=layer.name, disable=not sys.stderr.isatty()) as bar:

        def batches():
            for start in range(0, n, args.batch_size):
                batch = ds.images[start : min(n, start + args.batch_size)]
                yield inputs(batch)
                bar.update(len(batch))

        found = top_units(model, batches(), layer, units, args.top)
    seconds = time.perf_counter() - t0
    doc = units_json(layer, units, found, size)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "units.json", json.dumps(doc))
    pictures = []
    if not args.no_pictures:
        from alexnet.viz import unit_patches_grid

        wanted = sorted({t["index"] for u in doc["units"] for t in u["top"]})
        crops = inputs.display(np.stack([np.asarray(ds.images[i]) for i in wanted]))
        by_index = dict(zip(wanted, crops))
        for first in range(0, len(units), UNITS_PER_PICTURE):
            part = doc["units"][first : first + UNITS_PER_PICTURE]
            patches = np.stack([unit_patches(layer, u, by_index) for u in part])
            name = f"units_{part[0]['unit']}-{part[-1]['unit']}.png"
            title = (
                f"{layer.name}: top {args.top} of {n} {args.split} images per unit "
                f"(receptive field {layer.field.receptive_field} px)"
            )
            acts = [[t["activation"] for t in u["top"]] for u in part]
            unit_patches_grid(patches, [u["unit"] for u in part], acts, out / name, title=title)
            pictures.append(name)
    print(
        f"wrote {out / 'units.json'} ({len(units)} units of {layer.name}, top {args.top} of "
        f"{n} images, {n / max(seconds, 1e-9):.0f} img/s)"
        + (f" and {len(pictures)} picture(s)" if pictures else "")
    )
    return 0
