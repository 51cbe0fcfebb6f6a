"""`towers`: paper Fig. 3 (§6.1) — the two towers' first-layer kernels specialize: "the kernels
on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are largely color-specific",
in every run, up to a renumbering of the GPUs.

Score of one conv1 kernel (`analyses.colour_specificity`): the share of its energy outside the
gray axis, sum((w - mean over RGB)^2) / sum(w^2), in [0, 1] (0: the same weights in R, G and B;
2/3: a kernel on one colour channel alone). Conv1 itself is not grouped; its first half feeds
tower 1 (conv2's first group), its second half tower 2.

Per seed (a trained two-tower model): each tower's mean score, a two-sided permutation test of
their difference, and the towers' gap |mean1 - mean2| against the gap of random halves of the
same kernels (the mean over 1,000 random splits). Because the towers may swap roles between
runs, the claim is tested on the gap: towers minus random halves, paired by seed (> 0 when the
split into towers separates colour from gray more than chance does).
Needs colour images: on a grayscale dataset it stops with one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.experiments import plots
from alexnet.experiments.analyses import colour_specificity, compare_towers, tower_scores
from alexnet.experiments.claims import claim
from alexnet.experiments.common import Context, family_recipe, family_words
from alexnet.experiments.result import compare, run_row
from alexnet.inference import Predictor
from alexnet.viz import first_conv_weight, kernel_grid

NAME = "towers"
BUDGET = {"quick": (0, 3), "full": (0, 15)}  # (training images (0: all), epochs)
RANDOM_SPLITS = 1000


def random_split_gap(scores: np.ndarray, splits: int = RANDOM_SPLITS, seed: int = 0) -> float:
    """Mean |mean(A) - mean(B)| over random halves A, B of the scores (the chance level)."""
    rng = np.random.default_rng(seed)
    half = scores.shape[0] // 2
    gaps = []
    for _ in range(splits):
        perm = rng.permutation(scores.shape[0])
        gaps.append(abs(scores[perm[:half]].mean() - scores[perm[half:]].mean()))
    return float(np.mean(gaps))


def run(ctx: Context) -> dict[str, Any]:
    if open_dataset(ctx.data, "train").stats.is_grayscale():
        raise UserError(
            f"--data {ctx.data}: grayscale images; the towers' colour specialization (paper "
            "Fig. 3) needs colour data such as CIFAR-10 or ImageNet"
        )
    images, epochs = BUDGET[ctx.budget]
    specs = [
        (f"towers-seed{s}", family_recipe(ctx, epochs=epochs, train_limit=images, seed=s),
         f"two-tower model seed {s}")
        for s in ctx.seed_list
    ]  # fmt: skip
    outcomes = ctx.train(specs)
    rows, groups = [], {}
    for (_, cfg, _), outcome in zip(specs, outcomes):
        model = Predictor(outcome.result.weights).model
        scores = colour_specificity(first_conv_weight(model).detach().cpu().numpy())
        one, two = tower_scores(scores, 2)
        test = compare_towers(two, one)
        common = {"p_value": test.p_value}
        rows.append(run_row("tower1", cfg.seed, outcome.run_dir, ctx.out,
                            colour_specificity=float(one.mean()), **common))  # fmt: skip
        rows.append(run_row("tower2", cfg.seed, outcome.run_dir, ctx.out,
                            colour_specificity=float(two.mean()), **common))  # fmt: skip
        rows.append(run_row("towers", cfg.seed, outcome.run_dir, ctx.out,
                            tower_gap=abs(float(two.mean() - one.mean()))))  # fmt: skip
        rows.append(run_row("random-split", cfg.seed, outcome.run_dir, ctx.out,
                            tower_gap=random_split_gap(scores)))  # fmt: skip
        groups[f"seed {cfg.seed} tower 1"] = one.tolist()
        groups[f"seed {cfg.seed} tower 2"] = two.tolist()
        if cfg.seed == ctx.seed_list[0]:
            kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels by tower")
    c = claim("towers-colour")
    comparisons = [
        compare(rows, "tower_gap", "towers", "random-split", direction="greater", claim=c.key),
        compare(rows, "colour_specificity", "tower2", "tower1", direction="differ", claim=c.key),
    ]
    plots.scores_plot(ctx.out / "scores.png", groups)
    notes = [
        "colour_specificity: share of a conv1 kernel's energy outside the gray axis (0 gray, "
        "2/3 one channel); tower_gap: |mean tower 2 - mean tower 1|, against random halves.",
        "Per-seed permutation p-values are in the runs (p_value); the towers may swap roles "
        "between seeds, so the tower2 - tower1 row can straddle 0 even when each run splits.",
        f"Models: {family_words(ctx)}, the ablations' full recipe with two towers, "
        f"{epochs} epochs.",
    ]
    return ctx.finish(c, rows, comparisons, notes)
