"""The model family by name, without importing torch: each name, one line about it, and where
its class lives (imported when a model is built; its `name` must be its key here)."""

from __future__ import annotations

from typing import NamedTuple


class ModelEntry(NamedTuple):
    """One model of the family: a line about it, and `module:Class` of its builder."""

    about: str
    builder: str


MODELS: dict[str, ModelEntry] = {
    "paper": ModelEntry(
        "the 2012 paper's two-tower network with LRN (paper §3, Fig. 2)",
        "alexnet.models.alexnet:PaperAlexNet",
    ),
    "seed": ModelEntry(
        "the project's seed PyTorch code: no LRN, no towers, dropout before fc6/fc7",
        "alexnet.models.variants:SeedAlexNet",
    ),
    "torchvision": ModelEntry(
        "torchvision's alexnet, the 2014 one-weird-trick variant (64-192-384-256-256)",
        "alexnet.models.variants:TorchvisionAlexNet",
    ),
    "small": ModelEntry(
        "the paper's CIFAR-10-scale 4-layer CNN for 28-32 px images (§3.1 Fig. 1, §3.3)",
        "alexnet.models.variants:SmallCNN",
    ),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)
