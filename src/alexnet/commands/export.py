"""`alexnet export`: weights out as ONNX (checked with onnxruntime), in another tower layout, as a
Hugging Face-style folder or a torch.export program (checked against the model)."""

from __future__ import annotations

import argparse

from alexnet import commands as A
from alexnet.commands import flag_of
from alexnet.commands.outputs import output_file
from alexnet.errors import UserError
from alexnet.fileio import json_line


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="ONNX (fp32 or --int8), torch.export, a Hugging Face-style folder; tower layouts",
        description="Export a weights file. --onnx writes an ONNX model with input 'images' "
        "(batch, C, S, S), already preprocessed, and output 'logits', then runs it with "
        "onnxruntime on another batch size and compares with PyTorch (|diff| <= 1e-4 + "
        "1e-4 * |logit|); it also outputs 'features' (fc7) and carries the classes and "
        "preprocessing, so every --weights flag takes it. --int8 quantizes it (onnxruntime "
        "static quantization, calibrated on --calibration-data; README 'int8'). "
        "--two-device / --paper rewrite the `paper` model's weights in the "
        "two-device layout (one tower per device, models/parallel.py) or back.",
    )
    A.add_weights(p)
    p.add_argument("--onnx", metavar="OUT.onnx", help="write an ONNX model")
    p.add_argument(
        "--opset", type=A.int_range(9, 20), default=17, help="ONNX opset, 9..20 (default 17)"
    )
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    g = p.add_argument_group("int8 (with --onnx)")
    g.add_argument(
        "--int8",
        action="store_true",
        help="write the ONNX model quantized to int8 (onnxruntime static quantization, QDQ: "
        "weights int8 per channel, activations uint8), calibrated on --calibration-data",
    )
    g.add_argument(
        "--calibration-data",
        metavar="DIR",
        help="packed dataset whose training split calibrates the int8 activation ranges",
    )
    g.add_argument(
        "--calibration-images",
        type=A.positive_int,
        default=256,
        help="calibration images, a seeded sample of the training split, >= 1 (default 256; "
        "all of a smaller split)",
    )
    for flag, layout in (("--two-device", "two-device"), ("--paper", "paper (grouped)")):
        p.add_argument(
            flag,
            metavar="OUT.safetensors",
            help="write --weights (the two-tower `paper` model's: a weights file, a checkpoint "
            f"or a run directory) in the {layout} layout",
        )
    A.add_json(p)
    g = p.add_argument_group("for other code (docs/use.md)")
    g.add_argument(
        "--hf",
        metavar="DIR",
        help="write a Hugging Face-style folder: DIR/model.safetensors, DIR/config.json (model, "
        "classes, preprocessing), DIR/README.md (a model card quoting the run's eval.json); "
        "alexnet.from_pretrained(DIR) and every --weights read it",
    )
    g.add_argument(
        "--torch-export",
        metavar="OUT.pt2",
        help="write a torch.export program (eval mode, dynamic batch, LRN and pooling as plain "
        "torch ops: torch.export.load(OUT).module() needs no alexnet), then compare it with "
        "the model at batch sizes 1 and 3 (|diff| <= 1e-4 + 1e-4 * |logit|) unless --no-check",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from alexnet.export import export_onnx, export_torch, require_onnx
    from alexnet.weights import convert_layout, hf, load

    if args.int8 and not args.onnx:
        raise UserError("--int8 needs --onnx OUT.onnx")
    if not (args.onnx or args.two_device or args.paper or args.hf or args.torch_export):
        raise UserError(
            "export needs --onnx OUT.onnx, --two-device OUT, --paper OUT, --hf DIR or "
            "--torch-export OUT.pt2"
        )
    if args.onnx:  # before any file is written
        require_onnx(args.int8 or not args.no_check, args.int8, args.calibration_data)
    for flag in ("onnx", "two_device", "paper", "torch_export"):
        if getattr(args, flag):
            output_file(getattr(args, flag), flag_of(flag))
    out: dict = {}
    if args.two_device:
        out["two_device"] = convert_layout(args.weights, args.two_device, "two-device")
    if args.paper:
        out["paper"] = convert_layout(args.weights, args.paper, "paper")
    if args.onnx:
        out["onnx"] = export_onnx(
            args.weights,
            args.onnx,
            opset=args.opset,
            check=not args.no_check,
            int8=args.int8,
            calibration_data=args.calibration_data,
            calibration_images=args.calibration_images,
        )
    if args.hf:
        model, meta = load(args.weights, "cpu")
        out["hf"] = hf.write_folder(args.hf, model, meta, hf.run_dir_of(args.weights))
    if args.torch_export:
        out["torch_export"] = export_torch(args.weights, args.torch_export, check=not args.no_check)
    if args.json:
        print(json_line(out))
        return 0
    for key in ("two_device", "paper"):
        if key in out:
            print(f"wrote {out[key]['to']} ({out[key]['layout']} layout)")
    if "onnx" in out:
        o = out["onnx"]
        print(f"wrote {o['onnx']} (input images {o['input_shape']}, opset {o['opset']})")
        if o["checked"]:
            print(
                f"onnxruntime vs PyTorch on a batch of {o['check_batch']}: max |diff| "
                f"{o['max_abs_diff']:.2e} (tolerance {o['atol']} + {o['rtol']} * |logit|)"
            )
        if o.get("int8"):
            c = o["int8_vs_fp32"]
            print(
                f"int8 vs fp32 on {o['calibration_images']} calibration images: top-1 agrees on "
                f"{100 * c['top1_agreement']:.1f} %, max |logit diff| {c['max_abs_diff']:.3g} "
                f"(logits up to {c['logit_range']:.3g}); check accuracy with alexnet eval"
            )
    if "hf" in out:
        h = out["hf"]
        quoted = f"; card quotes {h['eval']}" if h["eval"] else ""
        print(f"wrote {h['folder']}/ ({', '.join(h['files'])}){quoted}")
    if "torch_export" in out:
        t = out["torch_export"]
        print(f"wrote {t['pt2']} (input {t['input_shape']}, LRN {t['lrn']})")
        if t["checked"]:
            print(
                f"program vs model at batch sizes {t['check_batches']}: max |diff| "
                f"{t['max_abs_diff']:.2e} (tolerance {t['atol']} + {t['rtol']} * |logit|)"
            )
    return 0
