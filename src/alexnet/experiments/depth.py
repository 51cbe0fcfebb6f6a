"""`depth`: paper §7, each middle conv layer removed in turn (`remove_conv`) against the full
recipe of `ablations`, paired by seed. `small` has one middle layer (conv2), the 224 px
`paper` network three (conv2, conv3, conv4)."""

from __future__ import annotations

from typing import Any

from alexnet.experiments.ablations import family_words, measure, seed_plan, with_options
from alexnet.experiments.result import Claim, compare
from alexnet.experiments.runner import Context, Outcome, Plan, data_words

NAME = "depth"
WORDS = (
    "Removing any of the middle layers results in a loss of about 2% for the top-1 "
    "performance of the network."
)
NUMBERS = {"top1_error": 0.02}
CLAIM = Claim(
    NAME, NAME, "§7", WORDS, "top1_error", "no-conv", "full", direction="greater", numbers=NUMBERS
)
REMOVED = {"small": ("conv2",), "paper": ("conv2", "conv3", "conv4")}  # per family


def plan(ctx: Context) -> Plan:
    return seed_plan(
        ctx,
        lambda full: (
            {"full": full}
            | {
                f"no-{layer}": with_options(full, remove_conv=layer)
                for layer in REMOVED[ctx.family]
            }
        ),
    )


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    top5 = len(ctx.header()["classes"]) >= 10
    rows = [measure(ctx, o, top5) for o in outcomes]
    comparisons = [
        compare(rows, quantity, f"no-{layer}", "full", CLAIM)
        for layer in REMOVED[ctx.family]
        for quantity in ("top1_error", "top5_error")[: 1 + top5]
    ]
    notes = [
        f"Budget {ctx.budget}: as `ablations` ({data_words(outcomes[0][0].cfg)})."
        + " Estimates are (without the layer) - (full): positive = removing it costs accuracy.",
        f"Network: {family_words(ctx)}, middle conv layers {', '.join(REMOVED[ctx.family])}"
        + (" (the paper's network has three: --family paper)." if ctx.family == "small" else "."),
    ]
    return ctx.finish(CLAIM, rows, comparisons, notes)
