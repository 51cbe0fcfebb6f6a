"""The experiments `alexnet reproduce NAME` knows, each its own module with `plan(ctx)` and
`gather(ctx, outcomes)`; their names, seeds and families are listed (torch-free) in
`alexnet.experiments.catalog`."""

from __future__ import annotations

from types import ModuleType

from alexnet.experiments import ablations, depth, paper_net, relu_tanh, retrieval, towers
from alexnet.experiments.catalog import DEFAULT_SEEDS, FAMILIES, FAMILIES_OF, NAMES

__all__ = ["DEFAULT_SEEDS", "EXPERIMENTS", "FAMILIES", "FAMILIES_OF", "get", "names"]

EXPERIMENTS: dict[str, ModuleType] = {
    m.NAME: m for m in (relu_tanh, ablations, depth, retrieval, paper_net, towers)
}


def names() -> list[str]:
    return list(NAMES)


def get(name: str) -> ModuleType:
    return EXPERIMENTS[name]
