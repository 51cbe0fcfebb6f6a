"""What `alexnet reproduce` offers, without importing any experiment (so the command line
starts without torch): the experiments' names, their default seeds and network families.

`alexnet.experiments.registry` maps each name to its module (imported when one is run); a
test checks that the two list the same experiments.
"""

from __future__ import annotations

# in the order `alexnet reproduce --help` and docs/experiments.md list them
NAMES = ("relu-tanh", "ablations", "depth", "retrieval", "paper-net", "towers")
BUDGETS = ("quick", "full")
# the network family of ablations, depth, retrieval and towers (`--family`)
FAMILIES = ("small", "paper")
# seeds when --seeds is not given: (quick, full); the 224 px network costs hours a seed on a CPU
DEFAULT_SEEDS = {name: (3, 5) for name in NAMES} | {"paper-net": (1, 1)}
# the network families each experiment can train (--family): Fig. 1 is the small CIFAR-scale
# net by definition, paper-net the 224 px one; the others run on either
FAMILIES_OF = {name: FAMILIES for name in NAMES} | {
    "relu-tanh": ("small",),
    "paper-net": ("paper",),
}


def default_seeds(name: str, budget: str) -> int:
    """Seeds per variant when --seeds is not given."""
    quick, full = DEFAULT_SEEDS[name]
    return quick if budget == "quick" else full


def default_output(name: str, budget: str, family: str) -> str:
    """reproduce/NAME-BUDGET, with -paper for the 224 px family of an experiment that has two."""
    paper = family == "paper" and len(FAMILIES_OF[name]) > 1
    return "reproduce/" + "-".join([name, budget] + (["paper"] if paper else []))
