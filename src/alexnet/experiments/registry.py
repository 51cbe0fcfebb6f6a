"""The experiments `alexnet reproduce NAME` knows, each its own module with `run(ctx)`."""

from __future__ import annotations

from types import ModuleType

from alexnet.experiments import ablations, depth, paper_net, relu_tanh, retrieval, towers
from alexnet.experiments.common import FAMILIES

EXPERIMENTS: dict[str, ModuleType] = {
    m.NAME: m for m in (relu_tanh, ablations, depth, retrieval, paper_net, towers)
}
# seeds when --seeds is not given: (quick, full); the 224 px network costs hours a seed on a CPU
DEFAULT_SEEDS = {name: (3, 5) for name in EXPERIMENTS} | {paper_net.NAME: (1, 1)}
# the network families each experiment can train (--family): Fig. 1 is the small CIFAR-scale
# net by definition, paper-net the 224 px one; the others run on either
FAMILIES_OF = {name: FAMILIES for name in EXPERIMENTS} | {
    relu_tanh.NAME: ("small",),
    paper_net.NAME: ("paper",),
}


def names() -> list[str]:
    return list(EXPERIMENTS)


def get(name: str) -> ModuleType:
    return EXPERIMENTS[name]
