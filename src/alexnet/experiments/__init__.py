"""`alexnet reproduce`: the paper's findings, each trained over several seeds, with 95% intervals.

One module per experiment, each with NAME, CLAIM(S), `plan(ctx) -> Plan` and `gather(ctx,
outcomes) -> result`; `runner` trains and gathers. Torch-free: the command line reads it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# in the order `alexnet reproduce --help` and docs/experiments.md list them
NAMES = ("relu-tanh", "ablations", "depth", "retrieval", "paper-net", "towers")
BUDGETS = ("quick", "full")
FAMILIES = ("small", "paper")  # the networks `--family` trains
# seeds when --seeds is not given: (quick, full); the 224 px network costs hours a seed on a CPU
DEFAULT_SEEDS = {name: (3, 5) for name in NAMES} | {"paper-net": (1, 1)}
# Fig. 1 is the small CIFAR-scale net by definition, paper-net the 224 px one; others either
FAMILIES_OF = {name: FAMILIES for name in NAMES} | {
    "relu-tanh": ("small",),
    "paper-net": ("paper",),
}


def get(name: str) -> ModuleType:
    """The experiment's module (imported now: it imports torch)."""
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
