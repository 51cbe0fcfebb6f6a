"""`alexnet predict`: top-k classes and probabilities of image files."""

from __future__ import annotations

import argparse
import sys

from alexnet import commands as A
from alexnet.errors import UserError
from alexnet.fileio import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="top-k classes of image files (any weights); --explain occlusion: where it looks",
        description="Predict the classes of images with weights from `alexnet train`, a run's "
        "checkpoint, torchvision's ImageNet file (a path, or the name `torchvision`: downloaded "
        "once) or a converted Caffe model. Arguments may "
        "be files, directories (searched recursively) or globs. Images get the evaluation "
        "preprocessing of the weights (shorter side to the stored size, centre crop, then 1, 2 "
        "or 10 crops with softmax averaged). A bad image is reported on one line and skipped; "
        "the exit status is 1 if any image failed.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, directories, globs")
    A.add_weights(p)
    p.add_argument(
        "--topk", type=A.positive_int, default=5, help="classes per image, >= 1 (default 5)"
    )
    A.add_crops(p)
    A.add_batch_size(p, 32)
    A.add_device(p)
    A.add_json(p)
    g = p.add_argument_group("where the network looks (Zeiler & Fergus 2014, section 4.2)")
    g.add_argument(
        "--explain",
        choices=("occlusion",),
        help="occlusion: for the top class c, drop[i][j] = p(c | centre crop) - p(c | the crop "
        "with the PATCH x PATCH square at (i*STRIDE, j*STRIDE) set to the normalized mean); "
        '--json adds "occlusion": {"class", "index", "patch", "stride", "prob", "drop"} to '
        "each prediction (torch weights only)",
    )
    g.add_argument(
        "--patch",
        type=A.positive_int,
        help="side of the occluding square in model-input pixels (default: input size // 7, "
        "32 at 224)",
    )
    g.add_argument(
        "--stride",
        type=A.positive_int,
        help="pixels between squares (default: patch // 2); squares lie inside the input",
    )
    g.add_argument(
        "--out",
        metavar="DIR",
        help="with --explain: a heat map of the drop over each image, DIR/NAME.png (created)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.inference import Predictor, expand_image_args

    if args.explain is None and (args.patch or args.stride or args.out):
        raise UserError("--patch, --stride and --out go with --explain occlusion")
    paths, missing = expand_image_args(args.images)
    predictor = Predictor(args.weights, args.device, args.crops, args.batch_size)
    explainer = _occlusion(predictor, args) if args.explain else None
    failed = 0
    for arg, reason in missing:
        print(f"alexnet predict: {arg}: {reason}", file=sys.stderr)
        failed += 1
    results = []
    for pred in predictor.predict_files(paths, args.topk):
        if pred.error is not None:
            failed += 1
            print(f"alexnet predict: {pred.image}: {pred.error}", file=sys.stderr)
        occlusion = explainer(pred) if explainer and pred.error is None else None
        if args.json:
            entry = pred.to_json()
            results.append({**entry, "occlusion": occlusion} if occlusion else entry)
        elif pred.error is None:
            print(pred.image)
            for name, prob in zip(pred.classes, pred.probs):
                print(f"  {100 * prob:6.2f} %  {name}")
            if occlusion:
                print(_occlusion_line(occlusion))
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


def _occlusion(predictor, args: argparse.Namespace):
    """`--explain occlusion` for each prediction (alexnet.explain.occlusion), and its picture
    OUT/NAME.png, NAME the file's stem made unique."""
    from pathlib import Path

    from alexnet.commands.outputs import creatable_dir
    from alexnet.explain import occlusion, occlusion_grid, occlusion_json
    from alexnet.inference import read_image

    model = predictor.torch_model("--explain occlusion")
    occlusion_grid(int(predictor.preprocess.crop_size), args.patch, args.stride)  # one line
    out = creatable_dir(args.out, "--out") if args.out else None
    names: set[str] = set()

    def explain(pred) -> dict:
        image = read_image(pred.image, predictor.image_size, predictor.resize_rule)[None]
        top = pred.indices[0]
        x = predictor.inputs(image)
        found = occlusion(model, x, top, args.patch, args.stride, args.batch_size)
        if out is not None:
            from alexnet.viz import occlusion_map

            stem, n = Path(pred.image).stem, 1
            name = stem
            while name in names:
                n += 1
                name = f"{stem}-{n}"
            names.add(name)
            out.mkdir(parents=True, exist_ok=True)
            title = f"{Path(pred.image).name}: {pred.classes[0]} (p = {found['prob']:.3f})"
            view = predictor.inputs.display(image)[0]
            drop, patch, stride = found["drop"], found["patch"], found["stride"]
            occlusion_map(view, drop, patch, stride, out / f"{name}.png", title=title)
        return occlusion_json(found, pred.classes[0], top)

    return explain


def _occlusion_line(occ: dict) -> str:
    """The text output's summary of an occlusion map: where covering the image hurts most."""
    drop = occ["drop"]
    best = max((v, i, j) for i, row in enumerate(drop) for j, v in enumerate(row))
    y, x = best[1] * occ["stride"], best[2] * occ["stride"]
    return (
        f"  occlusion: p({occ['class']}) drops most, by {best[0]:.4f}, when the "
        f"{occ['patch']} px square at x={x}, y={y} is covered"
    )
