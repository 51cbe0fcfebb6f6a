"""`ablations`: the paper's features switched off one at a time against the full recipe, paired
by seed (the same data order and initial weights in the layers the variants share).

Measured per run: test top-1 (top-5 with >= 10 classes) error, the training error of the
final weights in evaluation mode (`--train-eval`), the train-test gap, and the steps to
converge (the first validation within 1 point of the run's best). The quick budget trains on
8,000 images, a small-data regime in which overfitting shows within minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from alexnet.experiments import plots
from alexnet.experiments.result import Claim, compare, run_row
from alexnet.experiments.runner import Context, Outcome, Plan, RunSpec, data_words, training_words
from alexnet.models.common import one_tower_widths
from alexnet.models.registry import option_defaults
from alexnet.train import TrainConfig, make_config
from alexnet.train.recipes import recipe_model_options

NAME = "ablations"
# the claims that are not a difference measured on ImageNet
EXTRA = {
    "lrn-cifar10": {"paper_data": "CIFAR-10"},
    "dropout-iterations": {"kind": "ratio", "direction": "greater"},
}
CLAIMS = tuple(
    Claim(key, NAME, section, words, quantity, "full", ablated, **EXTRA.get(key, {}),
          numbers=dict(zip((quantity, "top5_error"), paper)))
    # the paper's numbers (`quantity`, then top-5 error) and words
    for key, section, quantity, ablated, paper, words in [
        ("lrn", "§3.3", "top1_error", "no-lrn", (-0.014, -0.012),
         "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%."),
        ("lrn-cifar10", "§3.3", "top1_error", "no-lrn", (-0.02,),
         "On CIFAR-10 a four-layer CNN achieved a 13% test error rate without normalization "
         "and 11% with normalization."),
        ("overlap-pool", "§3.4", "top1_error", "no-overlap", (-0.004, -0.003),
         "Overlapping pooling reduces the top-1 and top-5 error rates by 0.4% and 0.3%; models "
         "with overlapping pooling find it slightly more difficult to overfit."),
        ("overlap-pool-overfit", "§3.4", "train_test_gap", "no-overlap", (),
         "Models with overlapping pooling find it slightly more difficult to overfit."),
        ("dropout", "§4.2", "train_test_gap", "no-dropout", (),
         "Without dropout, our network exhibits substantial overfitting."),
        ("dropout-iterations", "§4.2", "steps_to_converge", "no-dropout", (2.0,),
         "Dropout roughly doubles the number of iterations required to converge."),
        ("fancy-pca", "§4.1", "top1_error", "no-pca", (-0.01,),
         "This scheme [PCA lighting] reduces the top-1 error rate by over 1%."),
        ("crops-flips", "§4.1", "train_test_gap", "no-crops-flips", (),
         "Without this scheme [random crops and horizontal reflections], our network suffers "
         "from substantial overfitting."),
        ("towers", "§3.2", "top1_error", "one-tower-half", (-0.017, -0.012),
         "This scheme [two GPUs] reduces our top-1 and top-5 error rates by 1.7% and 1.2%, "
         "compared with a net with half as many kernels in each convolutional layer trained on "
         "one GPU."),
    ]
)  # fmt: skip
BATCH = 128  # images per step (the paper's batch)
BUDGET = {"quick": (8000, 6), "full": (0, 15)}  # budget -> (training images (0: all), epochs)
CONVERGED_WITHIN = 0.01
SMALL_WIDTHS = [32, 32, 64]  # the small family's conv widths in these experiments


def family_config(ctx: Context, **overrides: Any) -> TrainConfig:
    """The experiments' full recipe on this call's network family: the `ablation` recipe with
    `overrides` (`model_options` merged into the recipe's); on the 224 px network with bf16
    autocast, as `paper-net`."""
    model = ctx.family
    options = {**recipe_model_options("ablation", model), **overrides.pop("model_options", {})}
    values = {"data": str(ctx.data), "model": model, "model_options": options, "device": ctx.device}
    values["batch_size"] = BATCH
    if model == "paper":
        values["amp"] = True
    return make_config("ablation", **{**values, **overrides})


def family_words(ctx: Context) -> str:
    """How the notes name the family's network."""
    return "the 224 px paper network" if ctx.family == "paper" else "the small family"


def with_options(cfg: TrainConfig, **options: Any) -> TrainConfig:
    """A copy of cfg with some model options changed."""
    return dataclasses.replace(cfg, model_options={**cfg.model_options, **options})


def full_config(ctx: Context, seed: int) -> TrainConfig:
    images, epochs = BUDGET[ctx.budget]
    widths = {"widths": SMALL_WIDTHS} if ctx.family == "small" else {}
    return family_config(
        ctx,
        model_options=widths,
        epochs=epochs,
        train_limit=images,
        train_eval=images or 10000,
        seed=seed,
    )


def variants(full: TrainConfig) -> dict[str, TrainConfig]:
    """The full recipe and each paper feature switched off."""
    widths = full.model_options.get("widths") or option_defaults(full.model)["widths"]
    # 224 crops of 256 px images: resize to 224 so no crop moves
    resize = option_defaults("paper")["input_size"] if full.model == "paper" else full.resize
    return {
        "full": full,
        "no-lrn": with_options(full, lrn=False),  # §3.3
        "no-overlap": with_options(full, pool="nonoverlap"),  # 2/2 pooling, not 3/2 (§3.4)
        "no-dropout": with_options(full, dropout=0.0),  # §4.2
        "no-pca": dataclasses.replace(full, lighting_std=0.0),  # §4.1
        "no-crops-flips": dataclasses.replace(full, pad=0, flip=False, resize=resize),  # §4.1
        # one tower, half the kernels in every conv layer but the last (§3.2)
        "one-tower-half": with_options(full, towers=1, widths=list(one_tower_widths(widths))),
    }


def seed_plan(ctx: Context, variants_of: Callable[[TrainConfig], dict[str, TrainConfig]]) -> Plan:
    """Per seed, each variant of the full config as run <variant>-seed<seed>, paired with it:
    every tensor it shares (by name and shape) with the full model starts from the full
    model's value."""
    runs = []
    for seed in range(ctx.seeds):
        full = full_config(ctx, seed)
        for variant, cfg in variants_of(full).items():
            paired = dataclasses.replace(cfg, init_like=dict(full.model_options))
            runs.append(RunSpec(f"{variant}-seed{seed}", paired, variant, seed))
    return Plan(runs)


def family_plan(ctx: Context, name: str, variant: str, epochs: int) -> Plan:
    """Per seed, the full recipe on all training images for `epochs` as run <name>-seed<seed>."""
    configs = [family_config(ctx, epochs=epochs, seed=s) for s in range(ctx.seeds)]
    return Plan([RunSpec(f"{name}-seed{s}", cfg, variant, s) for s, cfg in enumerate(configs)])


def plan(ctx: Context) -> Plan:
    return seed_plan(ctx, variants)


def measure(ctx: Context, outcome: Outcome, top5: bool) -> dict[str, Any]:
    """One `runs` row: final test and train errors, their gap and the steps to converge."""
    spec, res = outcome
    final = res.final
    top1, train = final.get("top1_error"), final.get("train", {}).get("top1_error")
    errors = {"top1_error": top1, "top5_error": final.get("top5_error"), "train_error": train}
    if not top5:
        errors.pop("top5_error")
    errors["train_test_gap"] = None if top1 is None or train is None else top1 - train
    history = [r for r in res.history if r.get("val_top1_error") is not None]
    best = min((r["val_top1_error"] for r in history), default=None)
    errors["steps_to_converge"] = next(
        (float(r["step"]) for r in history if r["val_top1_error"] <= best + CONVERGED_WITHIN), None
    )
    return run_row(spec.variant, spec.seed, res.output_dir, ctx.out, **errors)


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    top5 = len(ctx.header()["classes"]) >= 10
    rows = [measure(ctx, o, top5) for o in outcomes]
    full = outcomes[0][0].cfg
    comparisons = []
    for c in CLAIMS:
        note = None
        if c.quantity == "steps_to_converge" and full.schedule == "cosine":
            note = (
                "a fixed cosine budget: the decay to 0 makes every run settle where its "
                "budget ends, with or without dropout"
            )
        comparisons.append(compare(rows, c.quantity, c.a, c.b, c, note=note))
        if c.quantity == "top1_error" and top5 and "top5_error" in c.numbers:
            comparisons.append(compare(rows, "top5_error", c.a, c.b, c))
    plots.delta_bars(ctx.out / "deltas.png", comparisons)
    hidden = (
        "fc6 and fc7"
        if full.model == "paper"
        else f"a {full.model_options.get('hidden')}-unit hidden layer"
    )
    notes = [
        f"Budget {ctx.budget}: {family_words(ctx)} (two towers, LRN, overlapping pooling, "
        f"dropout {full.model_options.get('dropout', 0.5):g} on {hidden}) trained "
        f"{data_words(full)}; {training_words(full)}.",
        "Estimates are a - b (full minus ablated: negative = the feature lowers the error), "
        "paired by seed; the steps-to-converge row is a ratio (full / no-dropout).",
        "The paper's numbers are for the 224 px network on ImageNet (CIFAR-10 where noted); a "
        "28 px grayscale dataset cannot show the size of an ImageNet effect, only its sign.",
    ]
    return ctx.finish(CLAIMS, rows, comparisons, notes)
