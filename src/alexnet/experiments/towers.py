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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.experiments import plots
from alexnet.experiments.analyses import colour_specificity, compare_towers, tower_scores
from alexnet.experiments.claims import claim
from alexnet.experiments.common import Context, Plan, RunSpec, family_recipe, family_words
from alexnet.experiments.result import compare, compare_per_item, run_row
from alexnet.experiments.runner import RunOutcome
from alexnet.inference import Predictor
from alexnet.viz import first_conv_weight, kernel_grid
from alexnet.weights import load as load_weights

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


@dataclass(frozen=True)
class TowerAnalysis:
    """One two-tower model's conv1: each tower's kernel scores, the permutation test of their
    means (tower 2 - tower 1), and the gap of random halves of the same kernels."""

    tower1: np.ndarray  # (O/2,) colour specificity of the kernels feeding tower 1
    tower2: np.ndarray
    p_value: float
    random_gap: float

    @property
    def gap(self) -> float:
        return abs(float(self.tower2.mean() - self.tower1.mean()))

    def rows(self, seed: int, run_dir: str | os.PathLike, out: Path) -> list[dict[str, Any]]:
        """The four `runs` rows of one model: each tower's mean score, the towers' gap and
        that of random halves."""
        common = {"p_value": self.p_value}
        return [
            run_row("tower1", seed, run_dir, out,
                    colour_specificity=float(self.tower1.mean()), **common),
            run_row("tower2", seed, run_dir, out,
                    colour_specificity=float(self.tower2.mean()), **common),
            run_row("towers", seed, run_dir, out, tower_gap=self.gap),
            run_row("random-split", seed, run_dir, out, tower_gap=self.random_gap),
        ]  # fmt: skip


def analyse(model: nn.Module, where: str = "the model") -> TowerAnalysis:
    """The towers' colour specificity of a two-tower model (conv1's first half feeds tower 1,
    its second half tower 2, §3.2); one-tower models are refused (UserError naming `where`)."""
    towers = int(getattr(model, "config", {}).get("options", {}).get("towers", 1))
    if towers != 2:
        raise UserError(
            f"{where}: a one-tower model (towers={towers}); the towers' colour specialization "
            "(paper Fig. 3) needs two-tower weights, e.g. bvlc_alexnet from `alexnet convert "
            "caffe` or a model trained with towers=2"
        )
    scores = colour_specificity(first_conv_weight(model).numpy())
    one, two = tower_scores(scores, 2)
    return TowerAnalysis(one, two, compare_towers(two, one).p_value, random_split_gap(scores))


def plan(ctx: Context) -> Plan:
    if open_dataset(ctx.data, "train").stats.is_grayscale():
        raise UserError(
            f"--data {ctx.data}: grayscale images; the towers' colour specialization (paper "
            "Fig. 3) needs colour data such as CIFAR-10 or ImageNet"
        )
    images, epochs = BUDGET[ctx.budget]
    return Plan([
        RunSpec(f"towers-seed{s}", family_recipe(ctx, epochs=epochs, train_limit=images, seed=s),
                "two-tower", s, f"two-tower model seed {s}")
        for s in ctx.seed_list
    ])  # fmt: skip


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    rows, groups = [], {}
    for outcome in outcomes:
        seed = outcome.spec.seed
        model = Predictor(outcome.result.weights).model
        a = analyse(model, str(outcome.run_dir))
        rows += a.rows(seed, outcome.run_dir, ctx.out)
        groups[f"seed {seed} tower 1"] = a.tower1.tolist()
        groups[f"seed {seed} tower 2"] = a.tower2.tolist()
        if outcome is outcomes[0]:
            kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels by tower")
    c = claim("towers-colour")
    comparisons = [
        compare(rows, "tower_gap", "towers", "random-split", direction="greater", claim=c.key),
        compare(rows, "colour_specificity", "tower2", "tower1", direction="differ", claim=c.key),
    ]
    plots.scores_plot(ctx.out / "scores.png", groups)
    cfg = outcomes[0].spec.cfg
    notes = [
        SCORE_NOTE,
        "Per-seed permutation p-values are in the runs (p_value); the towers may swap roles "
        "between seeds, so the tower2 - tower1 row can straddle 0 even when each run splits.",
        f"Models: {family_words(ctx)}, the ablations' full recipe with two towers, "
        f"{cfg.epochs} epochs.",
    ]
    return ctx.finish(c, rows, comparisons, notes)


SCORE_NOTE = (
    "colour_specificity: share of a conv1 kernel's energy outside the gray axis (0 gray, "
    "2/3 one channel); tower_gap: |mean tower 2 - mean tower 1|, against random halves."
)


def from_weights(ctx: Context, weights: str) -> dict[str, Any]:
    """Fig. 3 checked on given weights (e.g. Caffe's bvlc_alexnet from `alexnet convert
    caffe`), without training: the same score and test as `gather`, for one model. With one
    model there are no seeds: the comparison runs over its conv1 kernels (tower 2 minus tower
    1, Welch interval, and the permutation test's p-value), answering whether this model's
    towers differ, not how often training makes them."""
    model, _ = load_weights(weights, "cpu")
    a = analyse(model, f"--weights {weights}")
    path = Path(weights).expanduser().resolve()
    ctx.out.mkdir(parents=True, exist_ok=True)
    rows = a.rows(0, path, ctx.out)
    c = claim("towers-colour")
    by_kernel = compare_per_item(
        a.tower2.tolist(), a.tower1.tolist(), "colour_specificity", "tower2", "tower1",
        over="conv1 kernels", paired=False, direction="differ", claim=c.key,
    )  # fmt: skip
    by_kernel["p_value"] = a.p_value
    kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels by tower")
    plots.scores_plot(ctx.out / "scores.png", {"tower 1": a.tower1.tolist(),
                                               "tower 2": a.tower2.tolist()})  # fmt: skip
    notes = [
        SCORE_NOTE,
        f"Weights: {path.name} ({len(a.tower1)} + {len(a.tower2)} conv1 kernels), analysed "
        f"as given, nothing trained; permutation test of tower 2 - tower 1: p = "
        f"{a.p_value:.3g}. The paper's Fig. 3 shows tower 1 colour-agnostic and tower 2 "
        "colour-specific; which tower is which may be swapped.",
    ]
    return ctx.finish(c, rows, [by_kernel], notes, extra={"weights": str(path)})
