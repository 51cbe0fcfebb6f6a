"""`alexnet train`: train (or resume) AlexNet on a packed dataset with a named recipe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alexnet.commands import argtypes as A
from alexnet.errors import UserError
from alexnet.rundir import RunDir
from alexnet.train.config import TrainConfig, config_from_json, make_config, validate
from alexnet.train.engine import fit

# flags whose value overrides the recipe (dest -> type); defaults are None = "the recipe's"
_VALUE_FLAGS = [
    ("--epochs", A.positive_int, "number of epochs, >= 1 (paper: 90)"),
    ("--batch-size", A.positive_int, "images per step per process, >= 1 (paper: 128)"),
    ("--lr", A.positive_float, "peak / initial learning rate, > 0 (paper: 0.01)"),
    ("--momentum", A.momentum, "SGD momentum, in [0, 1) (paper: 0.9)"),
    ("--weight-decay", A.nonnegative_float, "L2 weight decay, >= 0 (paper: 5e-4)"),
    ("--label-smoothing", A.probability, "cross-entropy label smoothing, in [0, 1) (fast: 0.1)"),
    ("--schedule", ["plateau", "step", "cosine"], "learning-rate schedule"),
    ("--lr-factor", A.factor, "plateau/step: multiply lr by this, in (0, 1) (0.1)"),
    ("--plateau-patience", A.positive_int, "plateau: validations without improvement, >= 1 (3)"),
    ("--max-reductions", A.nonnegative_int, "plateau: at most this many reductions (paper: 3)"),
    ("--lr-step-size", A.positive_int, "step: epochs between reductions, >= 1 (torchvision: 30)"),
    ("--warmup-epochs", A.nonnegative_float, "cosine: linear warm-up epochs, >= 0 (fast: 1)"),
    ("--augment", ["paper", "random_resized_crop"], "paper (random crop + flip) or RRC"),
    ("--lighting-std", A.nonnegative_float, "fancy-PCA lighting std, 0 disables (paper: 0.1)"),
    ("--pad", A.nonnegative_int, "zero padding before random crops, >= 0 (default: automatic)"),
    ("--resize", A.int_range(8, 4096), "resize images on the device first, 8..4096 (automatic)"),
    ("--normalize", ["mean_image", "channel", "none"], "input normalization (paper: mean_image)"),
    ("--eval-crops", [1, 2, 10], "crops for the per-epoch validation: 1, 2 (centre+flip) or 10"),
    ("--test-crops", [1, 2, 10], "crops for the final evaluation in RUN/eval.json (paper: 10)"),
    ("--seed", A.nonnegative_int, "random seed, >= 0 (0)"),
    ("--workers", A.nonnegative_int, "loader threads, >= 0 (0)"),
    ("--device", A.device, f"{A.DEVICE_FORMS} (default: auto)"),
    ("--checkpoint-every", A.nonnegative_int, "also checkpoint every N steps (0: epoch ends)"),
    ("--on-nan", ["stop", "skip"], "what a non-finite loss does (default: stop)"),
    ("--model-parallel", A.device_pair, "DEV0,DEV1: the paper's two-tower split over two devices"),
    ("--max-steps", A.positive_int, "stop after this many steps in total, with weights"),
    ("--val-limit", A.nonnegative_int, "validate on the first N validation images (0: all)"),
    ("--train-limit", A.nonnegative_int, "train on the first N training images (0: all)"),
    ("--train-eval", A.nonnegative_int, "also evaluate the final weights on N training images"),
    ("--log-every", A.nonnegative_int, "every N steps, log training loss/error to steps.jsonl"),
]
_SWITCHES = [
    ("--amp", "bf16 autocast"),
    ("--compile", "torch.compile the model"),
    ("--deterministic", "torch.use_deterministic_algorithms"),
]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train AlexNet on a packed dataset (paper, torchvision or fast recipe)",
        description="Train AlexNet on a dataset packed by `alexnet prepare`. Every recipe value "
        "can be overridden by its flag. Resume a stopped run with --resume RUN.",
    )
    p.add_argument("--data", help="packed dataset directory (from `alexnet prepare`)")
    p.add_argument("--output-dir", help="run directory to write (RUN)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its checkpoint")
    p.add_argument(
        "--recipe",
        choices=["paper", "torchvision", "fast"],
        default=None,
        help="named hyper-parameter set (default: paper)",
    )
    p.add_argument(
        "--model",
        choices=["paper", "seed", "torchvision", "small"],
        default=None,
        help="model (default: the recipe's: paper, torchvision, small)",
    )
    p.add_argument(
        "--model-options",
        metavar="JSON",
        default=None,
        help='options for the model builder, e.g. \'{"init": "caffe"}\'',
    )
    for flag, typ, text in _VALUE_FLAGS:
        if isinstance(typ, list):  # a choice flag
            kind = type(typ[0])
            p.add_argument(flag, type=kind, choices=typ, default=None, help=text)
        else:
            p.add_argument(flag, type=typ, default=None, help=text)
    for flag, text in _SWITCHES:
        p.add_argument(flag, action="store_const", const=True, default=None, help=text)
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: on)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory format (default: on for --model torchvision on a CPU, where "
        "it measured faster; off otherwise)",
    )
    p.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Nesterov momentum (fast: on)",
    )
    return p


def _overrides(args: argparse.Namespace) -> dict:
    names = [f[0][2:].replace("-", "_") for f in _VALUE_FLAGS]
    names += [f[0][2:].replace("-", "_") for f in _SWITCHES]
    names += ["flip", "nesterov", "channels_last", "model", "data", "output_dir"]
    out = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.model_options is not None:
        try:
            options = json.loads(args.model_options)
        except ValueError as exc:
            raise UserError(f"--model-options: not JSON ({exc})") from None
        if not isinstance(options, dict):
            raise UserError("--model-options: expected a JSON object")
        out["model_options"] = options
    return out


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Recipe defaults + explicit flags; on --resume, the run's saved config + explicit flags.

    Paths are stored absolute in RUN/config.json, so a run resumes from any directory.
    `--resume RUN` continues RUN in place: `--output-dir` may only name RUN itself.
    """
    overrides = _overrides(args)
    if not args.resume:
        if not args.data or not args.output_dir:
            raise UserError("train needs --data DIR and --output-dir RUN (or --resume RUN)")
        overrides["data"] = _absolute(args.data)
        overrides["output_dir"] = _absolute(args.output_dir)
        return make_config(args.recipe or "paper", **overrides)
    run_dir = _run_to_resume(args.resume)
    if args.output_dir and Path(args.output_dir).resolve() != run_dir.resolve():
        raise UserError(
            f"--resume {args.resume} continues that run in place; --output-dir "
            f"{args.output_dir} is another directory (to branch a run, copy it first: "
            f"cp -r {run_dir} {args.output_dir}, then --resume {args.output_dir})"
        )
    path = RunDir(run_dir).config
    try:
        saved = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: cannot read the run's configuration ({exc})") from None
    if args.recipe and args.recipe != saved.get("recipe"):
        raise UserError(
            f"{path}: the run used recipe {saved.get('recipe')!r}; --recipe {args.recipe} "
            "cannot change on resume (override single values instead)"
        )
    saved.update(overrides)
    if args.data:
        saved["data"] = _absolute(args.data)
    elif not (Path(saved.get("data", "")) / "header.json").is_file():
        raise UserError(
            f"{path}: the run's data {saved.get('data')!r} is not a packed dataset (from this "
            "directory); point the run at its data with --data DIR"
        )
    saved["resume"] = str(run_dir.resolve())
    saved["output_dir"] = str(run_dir.resolve())
    cfg = config_from_json(saved)
    validate(cfg)
    return cfg


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _run_to_resume(resume: str) -> Path:
    """The run directory that --resume names: a run directory or its checkpoint file."""
    path = Path(resume)
    if not path.exists():
        raise UserError(f"--resume {resume}: no such run directory")
    run_dir = path if path.is_dir() else path.parent
    run = RunDir(run_dir)
    if path.is_file() and path.name != RunDir.CHECKPOINT:
        raise UserError(f"--resume {resume}: not a run directory or its {RunDir.CHECKPOINT}")
    if not run.has_checkpoint() or not run.config.is_file():
        raise UserError(
            f"--resume {resume}: not a run directory (no {RunDir.CHECKPOINT} and "
            f"{RunDir.CONFIG}); start a new run with --data DIR --output-dir RUN"
        )
    return run_dir


def run(args: argparse.Namespace) -> int:
    fit(resolve_config(args))
    return 0
