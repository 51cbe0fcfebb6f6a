"""The experiments `alexnet reproduce NAME` knows, each its own module with `run(ctx)`."""

from __future__ import annotations

from types import ModuleType

from alexnet.experiments import ablations, depth, paper_net, relu_tanh, retrieval, towers

EXPERIMENTS: dict[str, ModuleType] = {
    m.NAME: m for m in (relu_tanh, ablations, depth, retrieval, paper_net, towers)
}
# seeds when --seeds is not given: (quick, full); the 224 px network costs hours a seed on a CPU
DEFAULT_SEEDS = {name: (3, 5) for name in EXPERIMENTS} | {paper_net.NAME: (1, 1)}


def names() -> list[str]:
    return list(EXPERIMENTS)


def get(name: str) -> ModuleType:
    return EXPERIMENTS[name]
