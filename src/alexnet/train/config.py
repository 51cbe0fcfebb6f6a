"""Training configuration: three named recipes as one dataclass, every field overridable.

Recipes (sources in docs/training.md):
- ``paper``: Krizhevsky et al. 2012 §4-§5: SGD 0.9 / 5e-4, batch 128, lr 0.01 divided by 10 on a
  validation plateau (3 times at most), 90 epochs, random crops + flips + fancy-PCA lighting,
  mean-image subtraction, 10-crop test.
- ``torchvision``: pytorch/vision references/classification, AlexNet entry: lr 0.01, batch 32 per
  process (x 8 GPUs), 90 epochs, StepLR 30 / 0.1, wd 1e-4, RandomResizedCrop + flip, channel
  normalization, centre-crop test.
- ``fast``: small budgets (ours): SGD nesterov, linear warm-up + cosine decay per step, label
  smoothing 0.1, flips (no translations), flip test-time augmentation.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy
import torch

from alexnet.errors import UserError

RECIPES = ("paper", "torchvision", "fast")

# The fast recipe's `small` model: BatchNorm instead of LRN, 2/2 pooling and a 256-unit hidden
# layer (modern choices, not the paper's); what lets it pass 0.92 on Fashion-MNIST in a few CPU
# minutes (docs/training.md). Applied only when the fast recipe trains the `small` model.
RECIPE_MODEL_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("fast", "small"): {"batchnorm": True, "lrn": False, "pool": "nonoverlap", "hidden": 256},
}


@dataclass
class TrainConfig:
    # what to train on and where to write
    data: str = ""
    output_dir: str = ""
    recipe: str = "paper"
    model: str = "paper"
    model_options: dict[str, Any] = field(default_factory=dict)
    # optimisation (paper §5)
    epochs: int = 90
    batch_size: int = 128  # per process; the global batch is batch_size * WORLD_SIZE
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    label_smoothing: float = 0.0
    schedule: str = "plateau"  # plateau | step | cosine
    lr_factor: float = 0.1  # plateau and step: multiply lr by this
    plateau_patience: int = 3  # validations without improvement before a reduction (our choice)
    plateau_threshold: float = 0.0
    max_reductions: int = 3  # the paper reduced 3 times
    lr_step_size: int = 30  # step schedule: epochs between reductions
    warmup_epochs: float = 0.0  # cosine schedule
    # augmentation (paper §4.1) and normalization
    augment: str = "paper"  # paper | random_resized_crop
    flip: bool = True
    lighting_std: float = 0.1  # fancy PCA alpha std; 0 disables
    pad: int | None = None  # None: automatic (see loop.plan_geometry)
    resize: int | None = None  # None: automatic
    normalize: str = "mean_image"  # mean_image | channel | none
    eval_crops: int = 1  # per-epoch validation: 1, 2 (centre + flip) or 10
    test_crops: int = 10  # the final evaluation written to RUN/eval.json
    # run mechanics
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool | None = None  # None: CHANNELS_LAST_ON_CPU for the model on a CPU
    compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 0  # steps; 0: only at epoch ends and on signals
    on_nan: str = "stop"  # stop | skip
    model_parallel: str | None = None  # "DEV0,DEV1"
    max_steps: int = 0  # stop (with a checkpoint) after this many steps in total; 0: no limit
    val_limit: int = 0  # validate on the first N images only (short budgets); 0: all
    log_every: int = 0  # append training loss/error over every N steps to RUN/steps.jsonl
    train_limit: int = 0  # train on the first N training images only (small-data studies); 0: all
    train_eval: int = 0  # eval.json also holds the error on the first N training images, eval mode
    # experiments: start every tensor shared (by name and shape) with the model built with these
    # options and the same seed from that model's value (variants paired by seed)
    init_like: dict[str, Any] | None = None
    resume: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recipe_defaults(name: str) -> dict[str, Any]:
    """The field values a recipe sets (everything else keeps the dataclass default)."""
    if name == "paper":
        return {"recipe": "paper", "model": "paper"}
    if name == "torchvision":
        return {
            "recipe": "torchvision",
            "model": "torchvision",
            "epochs": 90,
            "batch_size": 32,
            "lr": 0.01,
            "weight_decay": 1e-4,
            "schedule": "step",
            "lr_step_size": 30,
            "augment": "random_resized_crop",
            "lighting_std": 0.0,
            "normalize": "channel",
            "test_crops": 1,
        }
    if name == "fast":
        return {
            "recipe": "fast",
            "model": "small",
            "epochs": 6,
            "batch_size": 256,
            "lr": 0.1,
            "weight_decay": 5e-4,
            "nesterov": True,
            "label_smoothing": 0.1,
            "schedule": "cosine",
            "warmup_epochs": 1.0,
            "pad": 0,  # flips only: translations cost more than they give in 6 epochs
            "lighting_std": 0.0,
            "normalize": "channel",
            "eval_crops": 2,
            "test_crops": 2,
        }
    raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")


def make_config(recipe: str = "paper", **overrides: Any) -> TrainConfig:
    """Recipe defaults, then every override that is not None."""
    values = recipe_defaults(recipe)
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


# Models that train faster in channels-last on a CPU, measured end to end with
# benchmarks/bench_train.py (batch 64, 2 loader threads, AMD EPYC, 2 cores): torchvision's
# model 73.0 -> 79.7 img/s (+9%); the paper model 81.3 -> 81.6 (no gain: its fused LRN/pool
# kernels run NCHW); the others were not measured and keep NCHW.
CHANNELS_LAST_ON_CPU = {"torchvision"}


def resolve_channels_last(cfg: TrainConfig, device_type: str) -> bool:
    """--channels-last as given, else the measured default: on for CHANNELS_LAST_ON_CPU models
    on a CPU, off elsewhere (on CUDA give --channels-last explicitly, with --amp)."""
    if cfg.channels_last is not None:
        return bool(cfg.channels_last)
    return device_type == "cpu" and cfg.model in CHANNELS_LAST_ON_CPU


def recipe_model_options(cfg: TrainConfig) -> dict[str, Any]:
    """Model options that the recipe brings for this model (before the user's --model-options)."""
    return dict(RECIPE_MODEL_OPTIONS.get((cfg.recipe, cfg.model), {}))


def config_from_json(values: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in names})


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def validate(cfg: TrainConfig) -> None:
    """Check every value's range (for `fit` callers as for the CLI); UserError naming the flag."""
    checks = [
        (cfg.epochs >= 1, f"--epochs must be >= 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1, got {cfg.batch_size}"),
        (_finite(cfg.lr) and cfg.lr > 0, f"--lr must be a finite number > 0, got {cfg.lr}"),
        (
            _finite(cfg.momentum) and 0 <= cfg.momentum < 1,
            f"--momentum must be in [0, 1), got {cfg.momentum}",
        ),
        (
            _finite(cfg.weight_decay) and cfg.weight_decay >= 0,
            f"--weight-decay must be a finite number >= 0, got {cfg.weight_decay}",
        ),
        (
            _finite(cfg.label_smoothing) and 0 <= cfg.label_smoothing < 1,
            f"--label-smoothing must be in [0, 1), got {cfg.label_smoothing}",
        ),
        (cfg.schedule in ("plateau", "step", "cosine"), f"unknown schedule {cfg.schedule!r}"),
        (
            _finite(cfg.lr_factor) and 0 < cfg.lr_factor < 1,
            f"--lr-factor must be in (0, 1), got {cfg.lr_factor}",
        ),
        (cfg.plateau_patience >= 0, f"--plateau-patience must be >= 0, got {cfg.plateau_patience}"),
        (cfg.max_reductions >= 0, f"--max-reductions must be >= 0, got {cfg.max_reductions}"),
        (cfg.lr_step_size >= 1, f"--lr-step-size must be >= 1, got {cfg.lr_step_size}"),
        (
            _finite(cfg.warmup_epochs) and cfg.warmup_epochs >= 0,
            f"--warmup-epochs must be a finite number >= 0, got {cfg.warmup_epochs}",
        ),
        (cfg.augment in ("paper", "random_resized_crop"), f"unknown augment {cfg.augment!r}"),
        (
            _finite(cfg.lighting_std) and cfg.lighting_std >= 0,
            f"--lighting-std must be a finite number >= 0, got {cfg.lighting_std}",
        ),
        (cfg.pad is None or cfg.pad >= 0, f"--pad must be >= 0, got {cfg.pad}"),
        (cfg.resize is None or cfg.resize >= 1, f"--resize must be >= 1, got {cfg.resize}"),
        (cfg.normalize in ("mean_image", "channel", "none"), f"unknown normalize {cfg.normalize}"),
        (cfg.eval_crops in (1, 2, 10), f"eval crops must be 1, 2 or 10, got {cfg.eval_crops}"),
        (cfg.test_crops in (1, 2, 10), f"test crops must be 1, 2 or 10, got {cfg.test_crops}"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
        (cfg.workers >= 0, f"--workers must be >= 0, got {cfg.workers}"),
        (cfg.on_nan in ("stop", "skip"), f"--on-nan must be stop or skip, got {cfg.on_nan}"),
        (cfg.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {cfg.checkpoint_every}"),
        (cfg.max_steps >= 0, f"--max-steps must be >= 0, got {cfg.max_steps}"),
        (cfg.val_limit >= 0, f"--val-limit must be >= 0, got {cfg.val_limit}"),
        (cfg.log_every >= 0, f"--log-every must be >= 0, got {cfg.log_every}"),
        (cfg.train_limit >= 0, f"--train-limit must be >= 0, got {cfg.train_limit}"),
        (cfg.train_eval >= 0, f"--train-eval must be >= 0, got {cfg.train_eval}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _package_version() -> str:
    try:
        return importlib.metadata.version("alexnet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def environment() -> dict[str, str]:
    """Versions recorded next to the resolved config (RUN/config.json)."""
    return {
        "alexnet": _package_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": str(torch.version.cuda),
    }


def config_json(cfg: TrainConfig, **extra: Any) -> str:
    return json.dumps({"config": cfg.to_json(), "versions": environment(), **extra}, indent=2)
