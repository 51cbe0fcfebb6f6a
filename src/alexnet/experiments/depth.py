"""`depth`: paper §7 — "removing any of the middle layers results in a loss of about 2% for the
top-1 performance of the network".

The full recipe of `ablations` against the same network with each of its middle convolutional
layers removed in turn (model option `remove_conv`; the first and last conv layers are not
"middle"), paired by seed. The `small` family (default) has one middle layer, conv2 (conv3
then reads conv1's pooled maps); `--family paper`, the 224 px network of the paper's claim, has
three, conv2, conv3 and conv4 (hours per run on a CPU: for ImageNet-scale data and a GPU).
"""

from __future__ import annotations

from typing import Any

from alexnet.experiments.ablations import full_config, measure, paired
from alexnet.experiments.claims import claim
from alexnet.experiments.common import (
    Context,
    Plan,
    RunSpec,
    data_words,
    family_words,
    with_options,
)
from alexnet.experiments.result import compare
from alexnet.experiments.runner import RunOutcome

NAME = "depth"
# the middle conv layers removed in turn, per family
REMOVED = {"small": ("conv2",), "paper": ("conv2", "conv3", "conv4")}


def plan(ctx: Context) -> Plan:
    runs = []
    for seed in ctx.seed_list:
        full = paired(full_config(ctx, seed), full_config(ctx, seed))
        runs.append(RunSpec(f"full-seed{seed}", full, "full", seed))
        for layer in REMOVED[ctx.family]:
            cfg = paired(with_options(full, remove_conv=layer), full)
            runs.append(RunSpec(f"no-{layer}-seed{seed}", cfg, f"no-{layer}", seed,
                                f"without {layer} seed {seed}"))  # fmt: skip
    return Plan(runs)


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    top5 = ctx.num_classes() >= 10
    rows = [measure(ctx, outcome, top5) for outcome in outcomes]
    c = claim("depth")
    comparisons = []
    for layer in REMOVED[ctx.family]:
        for quantity in ("top1_error", "top5_error") if top5 else ("top1_error",):
            comparisons.append(
                compare(
                    rows,
                    quantity,
                    f"no-{layer}",
                    "full",
                    direction=c.direction,
                    paper=c.numbers.get(quantity),
                    claim=c.key,
                )  # fmt: skip
            )
    full = outcomes[0].spec.cfg
    notes = [
        f"Budget {ctx.budget}: as `ablations` ({data_words(full)})."
        + " Estimates are (without the layer) - (full): positive = removing it costs accuracy.",
        f"Network: {family_words(ctx)}, middle conv layers {', '.join(REMOVED[ctx.family])}"
        + (" (the paper's network has three: --family paper)." if ctx.family == "small" else "."),
    ]
    return ctx.finish(c, rows, comparisons, notes)
