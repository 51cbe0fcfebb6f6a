"""The named training recipes, as data: each the paper's defaults (§4-§5) with the fields it
changes, and the model options it gives each model before the user's `--model-options`.
Torch-free: the command line lists them in `alexnet train --help`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alexnet.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A named training config: the paper's defaults with `values` changed; `model_options`:
    what it gives each model (by name)."""

    name: str
    about: str
    values: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "paper",
            "Krizhevsky et al. 2012 §4-§5: SGD 0.9 / 5e-4, batch 128, lr 0.01 divided by 10 on "
            "a validation plateau (3 times at most), 90 epochs, random crops + flips + fancy-PCA "
            "lighting, mean-image subtraction, 10-crop test",
            {"recipe": "paper", "model": "paper"},
        ),
        Recipe(
            "torchvision",
            "pytorch/vision references/classification, AlexNet entry: lr 0.01, batch 32 per "
            "process (x 8 GPUs), 90 epochs, StepLR 30 / 0.1, wd 1e-4, RandomResizedCrop + flip, "
            "channel normalization, centre-crop test",
            {
                "recipe": "torchvision",
                "model": "torchvision",
                "batch_size": 32,
                "weight_decay": 1e-4,
                "schedule": "step",
                "lr_step_size": 30,
                "augment": "random_resized_crop",
                "lighting_std": 0.0,
                "normalize": "channel",
                "test_crops": 1,
            },  # fmt: skip
        ),
        Recipe(
            "fast",
            "small budgets (ours): SGD nesterov, linear warm-up (a sixth of the run, at most an "
            "epoch) + cosine decay per step, label smoothing 0.1, flips (no translations), flip "
            "test-time augmentation; on `small`: "
            "BatchNorm instead of LRN, 2/2 pooling, a 256-unit hidden layer (modern choices that "
            "pass 0.92 on Fashion-MNIST in a few CPU minutes)",
            {
                "recipe": "fast",
                "model": "small",
                "epochs": 6,
                "batch_size": 256,
                "lr": 0.1,
                "nesterov": True,
                "label_smoothing": 0.1,
                "schedule": "cosine",
                "warmup_epochs": None,
                "pad": 0,
                "lighting_std": 0.0,
                "normalize": "channel",
                "eval_crops": 2,
                "test_crops": 2,
            },  # fmt: skip
            {"small": {"batchnorm": True, "lrn": False, "pool": "nonoverlap", "hidden": 256}},
        ),
        Recipe(
            "ablation",
            "the experiments' base (`alexnet reproduce`: ablations, depth, retrieval, towers): "
            "the paper's features all on for a short fixed budget: SGD 0.9 / 5e-4, batch 128, "
            "lr 0.01 with a cosine decay (half an epoch of warm-up) instead of the plateau rule, "
            "random crops + flips + fancy-PCA lighting, mean-image subtraction, centre-crop test; "
            "on `small`: LRN after conv1 and conv2, overlapping pooling, two towers, a 256-unit "
            "hidden layer with dropout 0.5 and PyTorch's initialization (the family's N(0, 0.01) "
            "is too small for a short run); on `paper`: Caffe's initialization",
            {
                "recipe": "ablation",
                "model": "small",
                "batch_size": 128,
                "schedule": "cosine",
                "warmup_epochs": 0.5,
                "eval_crops": 1,
                "test_crops": 1,
                "checkpoint_every": 500,
            },  # fmt: skip
            {
                "small": {
                    "lrn": True,
                    "pool": "overlap",
                    "towers": 2,
                    "hidden": 256,
                    "dropout": 0.5,
                },
                "paper": {"init": "caffe"},
            },  # fmt: skip
        ),
        Recipe(
            "finetune",
            "fine-tuning trained weights (ours; give --init-from, paper §6): 10 epochs of SGD "
            "0.9 / 5e-4, batch 64, lr 0.001 for the trained layers and 10x for the last layer "
            "(re-made when the classes differ), a cosine decay without warm-up (the weights are "
            "trained already; the run ends at rate 0), random crops + flips without lighting, "
            "the weights' input normalization, centre-crop test",
            {
                "recipe": "finetune",
                "epochs": 10,
                "batch_size": 64,
                "lr": 0.001,
                "head_lr_factor": 10.0,
                "schedule": "cosine",
                "warmup_epochs": 0.0,
                "lighting_std": 0.0,
                "eval_crops": 1,
                "test_crops": 1,
            },  # fmt: skip
        ),
    )
}


def recipe_defaults(name: str) -> dict[str, Any]:
    """The field values recipe `name` sets (everything else keeps the dataclass default)."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return dict(RECIPES[name].values)


def recipe_model_options(recipe: str, model: str) -> dict[str, Any]:
    """Model options that recipe `recipe` brings for `model` (before the user's --model-options)."""
    return dict(RECIPES[recipe].model_options.get(model, {}))
