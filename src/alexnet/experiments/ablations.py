"""`ablations`: the paper's features switched off one at a time against the full recipe, at the
same budget, paired by seed (same seed: same initial weights in the layers the variants share
and the same data order, so only the switched feature differs).

- `no-lrn`: local response normalization off (§3.3: -1.4 / -1.2 top-1/top-5 on ImageNet;
  13% -> 11% on CIFAR-10);
- `no-overlap`: 2/2 pooling instead of the overlapping 3/2 (§3.4: -0.4 / -0.3; slightly harder
  to overfit);
- `no-dropout`: no dropout on the hidden layer (§4.2: substantial overfitting without; dropout
  roughly doubles the iterations to converge);
- `no-pca`: no fancy-PCA lighting (§4.1: > 1% top-1);
- `no-crops-flips`: no random crops and no flips (§4.1: substantial overfitting without);
- `one-tower-half`: one tower with half the kernels in every conv layer but the last (§3.2:
  two towers -1.7 / -1.2).

Measured per run: test top-1 (and top-5 where the data has >= 10 classes) error, training
error of the final weights in evaluation mode on the images trained on (`--train-eval`), the
train-test gap, and the steps to converge: the first epoch end at which the validation error is
within 1 percentage point of the run's best (a definition fixed before any run). The quick
budget trains on the first 8,000 training images (a small-data regime in which overfitting
shows within minutes); the full budget on all of them for longer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alexnet.experiments import plots
from alexnet.experiments.claims import claims_for
from alexnet.experiments.common import (
    Context,
    Plan,
    RunSpec,
    data_words,
    family_recipe,
    family_words,
    final_errors,
    training_words,
    with_options,
)
from alexnet.experiments.result import compare_claim, run_row
from alexnet.experiments.runner import RunOutcome
from alexnet.models.common import one_tower_widths
from alexnet.models.registry import option_defaults
from alexnet.train.config import TrainConfig

NAME = "ablations"
# budget -> (training images (0: all), epochs)
BUDGET = {"quick": (8000, 6), "full": (0, 15)}
CONVERGED_WITHIN = 0.01
SMALL_WIDTHS = [32, 32, 64]  # the small family's conv widths in these experiments


def variants(full: TrainConfig) -> dict[str, TrainConfig]:
    """The full recipe and each paper feature switched off (see the module docstring)."""
    widths = full.model_options.get("widths") or option_defaults(full.model)["widths"]
    no_crops = {"cfg__pad": 0, "cfg__flip": False}
    if full.model == "paper":  # 224 crops of 256 px images: resize to 224 so no crop moves
        no_crops["cfg__resize"] = option_defaults("paper")["input_size"]
    table = {
        "full": full,
        "no-lrn": with_options(full, lrn=False),
        "no-overlap": with_options(full, pool="nonoverlap"),
        "no-dropout": with_options(full, dropout=0.0),
        "no-pca": with_options(full, cfg__lighting_std=0.0),
        "no-crops-flips": with_options(full, **no_crops),
        "one-tower-half": with_options(full, towers=1, widths=list(one_tower_widths(widths))),
    }
    return {name: paired(cfg, full) for name, cfg in table.items()}


def paired(cfg: TrainConfig, full: TrainConfig) -> TrainConfig:
    """cfg with its initial weights paired with the full model's (same seed): every tensor the
    two share by name and shape starts equal, even where the variant removes or resizes a layer."""
    return dataclasses.replace(cfg, init_like=dict(full.model_options))


def steps_to_converge(history: list[dict[str, Any]]) -> float | None:
    """Steps until the validation error first comes within 1 point of the run's best."""
    errors = [r["val_top1_error"] for r in history if r.get("val_top1_error") is not None]
    if not errors:
        return None
    best = min(errors)
    return next(float(r["step"]) for r in history if r["val_top1_error"] <= best + CONVERGED_WITHIN)


def full_config(ctx: Context, seed: int) -> TrainConfig:
    images, epochs = BUDGET[ctx.budget]
    return family_recipe(
        ctx,
        model_options={"widths": SMALL_WIDTHS} if ctx.family == "small" else {},
        epochs=epochs,
        train_limit=images,
        train_eval=images or 10000,
        seed=seed,
    )


def measure(ctx: Context, outcome: RunOutcome, top5: bool) -> dict[str, Any]:
    """One `runs` row: the final errors, their gap and the steps to converge of a run."""
    errors = final_errors(outcome)
    if not top5:
        errors.pop("top5_error")
    errors["steps_to_converge"] = steps_to_converge(outcome.result.history)
    return run_row(outcome.spec.variant, outcome.spec.seed, outcome.run_dir, ctx.out, **errors)


def plan(ctx: Context) -> Plan:
    runs = []
    for seed in ctx.seed_list:
        for variant, cfg in variants(full_config(ctx, seed)).items():
            runs.append(RunSpec(f"{variant}-seed{seed}", cfg, variant, seed))
    return Plan(runs)


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    top5 = ctx.num_classes() >= 10
    rows = [measure(ctx, outcome, top5) for outcome in outcomes]
    comparisons = []
    claims = claims_for(NAME)
    full = outcomes[0].spec.cfg
    for c in claims:
        note = None
        if c.quantity == "steps_to_converge" and full.schedule == "cosine":
            note = ("a fixed cosine budget: the decay to 0 makes every run settle where its "
                    "budget ends, with or without dropout")  # fmt: skip
        comparisons.append(compare_claim(rows, c, note=note))
        if c.quantity == "top1_error" and top5 and "top5_error" in c.numbers:
            comparisons.append(compare_claim(rows, c, "top5_error"))
    plots.delta_bars(ctx.out / "deltas.png", [c for c in comparisons if c["kind"] != "ratio"])
    notes = [
        f"Budget {ctx.budget}: {family_words(ctx)} (two towers, LRN, overlapping pooling, "
        f"dropout {full.model_options.get('dropout', 0.5):g} on {_hidden(full)}) trained "
        f"{data_words(full)}; {training_words(full)}.",
        "Estimates are a - b (full minus ablated: negative = the feature lowers the error), "
        "paired by seed; the steps-to-converge row is a ratio (full / no-dropout).",
        "The paper's numbers are for the 224 px network on ImageNet (CIFAR-10 where noted); a "
        "28 px grayscale dataset cannot show the size of an ImageNet effect, only its sign.",
    ]
    return ctx.finish(claims, rows, comparisons, notes)


def _hidden(cfg: TrainConfig) -> str:
    if cfg.model == "paper":
        return "fc6 and fc7"
    return f"a {cfg.model_options.get('hidden')}-unit hidden layer"
