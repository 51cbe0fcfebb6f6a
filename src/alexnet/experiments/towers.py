"""`towers`: paper Fig. 3 (§6.1), the two towers' conv1 kernels specialize (one tower
colour-agnostic, the other colour-specific). Conv1's first half of kernels feeds tower 1, its
second half tower 2 (§3.2). The towers may swap roles between runs, so the claim is tested on
their gap |mean1 - mean2| against random halves of the same kernels, paired by seed. Needs
colour images; `from_weights` checks given weights (e.g. bvlc_alexnet) without training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.packed import open_dataset
from alexnet.errors import Param, UserError
from alexnet.experiments import plots, stats
from alexnet.experiments.ablations import family_plan, family_words
from alexnet.experiments.result import Claim, compare, item_rows, run_row
from alexnet.experiments.runner import Context, Outcome, Plan
from alexnet.inference import Predictor
from alexnet.viz import first_conv_weight, kernel_grid
from alexnet.weights import load as load_weights

NAME = "towers"
WORDS = (
    "The kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are largely "
    "color-specific; this specialization occurs during every run (modulo a renumbering of "
    "the GPUs)."
)
CLAIM = Claim(
    "towers-colour",
    NAME,
    "Fig. 3 (§6.1)",
    WORDS,
    "colour_specificity",
    "tower2",
    "tower1",
    direction="differ",
)
BUDGET = {"quick": 3, "full": 15}  # budget -> epochs
RANDOM_SPLITS = 1000
SCORE_NOTE = (
    "colour_specificity: share of a conv1 kernel's energy outside the gray axis (0 gray, "
    "2/3 one channel); tower_gap: |mean tower 2 - mean tower 1|, against random halves."
)


def colour_specificity(weight: np.ndarray) -> np.ndarray:
    """Per conv1 kernel, the share of its energy off the gray axis, sum((w - mean over RGB)^2) /
    sum(w^2): (O, 3, kh, kw) -> (O,); 0 gray, 2/3 one channel, 1 when each pixel's channels sum
    to 0 (an all-zero kernel: 0)."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise UserError(
            f"colour specificity needs conv1 kernels of 3 colour channels, got shape "
            f"{w.shape} (was the model trained on grayscale data?)"
        )
    total = (w**2).sum(axis=(1, 2, 3))
    rest = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2, 3))
    return np.where(total > 0, rest / np.where(total > 0, total, 1), 0.0)


def tower_scores(model: nn.Module, *where: str) -> np.ndarray:
    """(2, O/2): each tower's conv1 kernel scores; UserError naming `where` for one tower."""
    towers = int(getattr(model, "config", {}).get("options", {}).get("towers", 1))
    if towers != 2:
        raise UserError(
            *where,
            f": a one-tower model (towers={towers}); the towers' colour "
            "specialization (paper Fig. 3) needs two-tower weights, e.g. bvlc_alexnet "
            "from `alexnet convert caffe` or a model trained with towers=2",
        )
    return colour_specificity(first_conv_weight(model).double().numpy()).reshape(2, -1)


def rows_of(scores: np.ndarray, seed: int, run_dir: str | os.PathLike, out: Path) -> list[dict]:
    """The four `runs` rows of one model: each tower's mean score (with a permutation test's
    p-value), the towers' gap, and the mean gap of RANDOM_SPLITS random halves of the kernels."""
    one, two = scores
    rng, half, flat = np.random.default_rng(0), one.size, scores.reshape(-1)
    gaps = []
    for _ in range(RANDOM_SPLITS):
        perm = rng.permutation(flat.size)
        gaps.append(abs(flat[perm[:half]].mean() - flat[perm[half:]].mean()))
    p = stats.permutation_test(two, one).p_value
    mean1, mean2 = float(one.mean()), float(two.mean())
    return [
        run_row("tower1", seed, run_dir, out, colour_specificity=mean1, p_value=p),
        run_row("tower2", seed, run_dir, out, colour_specificity=mean2, p_value=p),
        run_row("towers", seed, run_dir, out, tower_gap=abs(mean2 - mean1)),
        run_row("random-split", seed, run_dir, out, tower_gap=float(np.mean(gaps))),
    ]


def plan(ctx: Context) -> Plan:
    if open_dataset(ctx.data, "train").stats.is_grayscale():
        raise UserError(
            Param("data"),
            f" {ctx.data}: grayscale images; the towers' colour specialization "
            "(paper Fig. 3) needs colour data such as CIFAR-10 or ImageNet",
        )
    return family_plan(ctx, "towers", "two-tower", BUDGET[ctx.budget])


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    rows, groups = [], {}
    for spec, res in outcomes:
        model = Predictor(res.weights).model
        scores = tower_scores(model, str(res.output_dir))
        rows += rows_of(scores, spec.seed, res.output_dir, ctx.out)
        groups[f"seed {spec.seed} tower 1"] = scores[0].tolist()
        groups[f"seed {spec.seed} tower 2"] = scores[1].tolist()
        if spec is outcomes[0][0]:
            kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels by tower")
    comparisons = [
        compare(rows, "tower_gap", "towers", "random-split", CLAIM, direction="greater"),
        compare(rows, "colour_specificity", "tower2", "tower1", CLAIM),
    ]
    plots.scores_plot(ctx.out / "scores.png", groups)
    notes = [
        SCORE_NOTE,
        "Per-seed permutation p-values are in the runs (p_value); the towers may swap roles "
        "between seeds, so the tower2 - tower1 row can straddle 0 even when each run splits.",
        f"Models: {family_words(ctx)}, the ablations' full recipe with two towers, "
        f"{outcomes[0][0].cfg.epochs} epochs.",
    ]
    return ctx.finish(CLAIM, rows, comparisons, notes)


def from_weights(ctx: Context, weights: str) -> dict[str, Any]:
    """Fig. 3 on given weights without training: the rows of `gather` for one model, compared
    over its conv1 kernels (tower 2 minus tower 1, Welch interval)."""
    model, _ = load_weights(weights, "cpu")
    one, two = scores = tower_scores(model, Param("weights"), f" {weights}")
    path = Path(weights).expanduser().resolve()
    ctx.out.mkdir(parents=True, exist_ok=True)
    rows = rows_of(scores, 0, path, ctx.out)
    kernels = item_rows("colour_specificity", {"tower2": two, "tower1": one})
    by_kernel = compare(
        kernels, "colour_specificity", "tower2", "tower1", CLAIM, paired=False, over="conv1 kernels"
    )
    by_kernel["p_value"] = p = rows[0]["p_value"]
    kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels by tower")
    plots.scores_plot(ctx.out / "scores.png", {"tower 1": one.tolist(), "tower 2": two.tolist()})
    notes = [
        SCORE_NOTE,
        f"Weights: {path.name} ({one.size} + {two.size} conv1 kernels), analysed as given, "
        f"nothing trained; permutation test of tower 2 - tower 1: p = {p:.3g}. The paper's "
        "Fig. 3 shows tower 1 colour-agnostic and tower 2 colour-specific; which tower is which "
        "may be swapped.",
    ]
    return ctx.finish(CLAIM, rows, [by_kernel], notes, weights=str(path))
