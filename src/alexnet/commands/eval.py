"""`alexnet eval`: top-1 / top-5 error of a weights file on a packed dataset's validation split."""

from __future__ import annotations

import argparse
import sys

from alexnet import commands as A
from alexnet.commands.outputs import output_file
from alexnet.data import SPLITS
from alexnet.errors import UserError
from alexnet.fileio import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="top-1 / top-5 error of a weights file on a packed split (default: val)",
        description="Evaluate weights (any format --weights takes: an alexnet .safetensors, "
        "torchvision's .pth, the two-device layout, a run's checkpoint or directory, or a name "
        "such as torchvision) on a packed dataset: 1 crop, 2 (centre + flip) or the paper's 10 "
        "crops, averaging softmax outputs.",
    )
    p.add_argument("--data", required=True, help="packed dataset directory")
    A.add_weights(p)
    A.add_crops(p)
    p.add_argument(
        "--split", choices=SPLITS, default="val", help="split to evaluate (default: val)"
    )
    A.add_batch_size(p, 256, ", each as --crops crops (per process under torchrun)")
    A.add_device(p)
    p.add_argument("--amp", action="store_true", help="run the model under bf16 autocast")
    A.add_json(p)
    p.add_argument("--per-class", action="store_true", help="also report per-class accuracy")
    p.add_argument("--confusion", metavar="OUT.png", help="write a confusion-matrix PNG")
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.data.loader import DeviceLoader
    from alexnet.data.packed import open_dataset
    from alexnet.evaluate import distinct_crops, evaluate, make_eval_transform, per_class_accuracy
    from alexnet.inference import is_onnx, load_backend, weights_device
    from alexnet.runtime import dist_info, init_distributed, shutdown_distributed

    if args.confusion:  # checked before the work, and named as really written
        args.confusion = str(output_file(args.confusion, "--confusion", ".png"))
    info = dist_info()
    device = weights_device(args.weights, args.device, info)
    if args.amp and is_onnx(args.weights):
        raise UserError(f"--amp: {args.weights} is an ONNX model (fp32 or int8); drop --amp")
    ds = open_dataset(args.data, args.split)
    model, meta = load_backend(args.weights, device)
    if meta.classes != list(ds.classes):
        raise UserError(
            f"{args.weights}: trained on {meta.num_classes} classes "
            f"({', '.join(meta.classes[:3])}, ...) but {args.data} has {ds.num_classes} "
            f"({', '.join(ds.classes[:3])}, ...)"
        )
    crops = distinct_crops(meta.preprocess, ds.image_size, args.crops)
    if crops != args.crops:
        h, w = ds.image_size
        print(
            f"alexnet eval: note: --crops {args.crops} on {h}x{w} images cropped to "
            f"{meta.preprocess.crop_size} repeats the centre crop; evaluating --crops {crops} "
            "(the centre and its mirror: the same result in a fifth of the time)",
            file=sys.stderr,
        )
    init_distributed(info, device)
    try:
        loader = DeviceLoader(
            ds,
            args.batch_size,
            shuffle=False,
            drop_last=False,
            rank=info.rank,
            world_size=info.world_size,
            device=device,
        )
        loader.set_epoch(0)
        transform = make_eval_transform(meta.preprocess, meta.mean_image, crops)
        out = evaluate(
            model,
            loader.iterate(),
            transform,
            crops=crops,
            num_classes=ds.num_classes,
            amp=args.amp,
            confusion=bool(args.per_class or args.confusion),
        )
    finally:
        shutdown_distributed()
    if not info.is_main:
        return 0
    conf = out.pop("confusion", None)
    if args.per_class:
        out["per_class_accuracy"] = dict(zip(ds.classes, per_class_accuracy(conf), strict=True))
    if args.confusion:
        from alexnet.viz import save_confusion_png  # matplotlib: only for the picture

        save_confusion_png(conf, ds.classes, args.confusion)
        out["confusion_png"] = args.confusion
    if args.json:
        print(json_line(out))
        return 0
    print(f"weights   {args.weights}")
    print(f"data      {args.data} ({args.split}, {out['images']} images, {out['crops']} crop(s))")
    print(f"top-1 err {100 * out['top1_error']:.2f} %   (accuracy {1 - out['top1_error']:.4f})")
    if out["top5_error"] is not None:  # None: 5 classes or fewer
        print(f"top-5 err {100 * out['top5_error']:.2f} %")
    print(f"loss      {out['loss']:.4f}")
    if "per_class_accuracy" in out:
        print("per-class accuracy (top-1; - where the split has no image of the class):")
    for name, acc in out.get("per_class_accuracy", {}).items():
        print(f"  {name:<24} {'-' if acc is None else f'{100 * acc:.2f} %'}")
    if args.confusion:
        print(f"confusion matrix: {args.confusion}")
    return 0
