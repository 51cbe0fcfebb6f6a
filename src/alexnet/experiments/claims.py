"""The paper's claims as data: what each experiment tests, in the paper's words and numbers.

Each `Claim` names the measured quantity that tests it, the two variants compared (the estimate
is a - b for a difference, a / b for a ratio), and the direction that counts as reproduced
(`stats.reproduced`): "less" (a below b, or the ratio below 1), "greater", or "differ". Errors
are fractions (0.014 = 1.4 percentage points), as in RUN/eval.json. `numbers` holds the paper's
values of the estimate, measured on `paper_data` (empty for a qualitative claim).
Sections are those of Krizhevsky, Sutskever & Hinton, NIPS 2012.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Claim:
    """One finding of the paper and how an experiment tests it."""

    key: str  # unique, e.g. "lrn"
    experiment: str  # the experiment that tests it: relu-tanh, ablations, depth, ...
    section: str  # "§3.3", "Fig. 1 (§3.1)"
    words: str  # the paper's words (quoted or closely paraphrased)
    quantity: str  # the measured quantity of the main comparison
    a: str  # variant names: estimate = a - b ("difference") or a / b ("ratio")
    b: str
    kind: str = "difference"
    direction: str = "less"
    numbers: dict[str, float] = field(default_factory=dict)  # the paper's estimate per quantity
    paper_data: str = "ImageNet ILSVRC-2012"

    @property
    def null(self) -> float:
        """No effect: 0 for a difference, 1 for a ratio."""
        return 1.0 if self.kind == "ratio" else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "null": self.null}


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "relu-tanh",
        "relu-tanh",
        "Fig. 1 (§3.1)",
        "A four-layer convolutional neural network with ReLUs reaches a 25% training error rate "
        "on CIFAR-10 six times faster than an equivalent network with tanh neurons.",
        "steps_to_25",
        "tanh",
        "relu",
        kind="ratio",
        direction="greater",
        numbers={"steps_to_25": 6.0},
        paper_data="CIFAR-10",
    ),
    Claim(
        "lrn",
        "ablations",
        "§3.3",
        "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%.",
        "top1_error",
        "full",
        "no-lrn",
        numbers={"top1_error": -0.014, "top5_error": -0.012},
    ),
    Claim(
        "lrn-cifar10",
        "ablations",
        "§3.3",
        "On CIFAR-10 a four-layer CNN achieved a 13% test error rate without normalization and "
        "11% with normalization.",
        "top1_error",
        "full",
        "no-lrn",
        numbers={"top1_error": -0.02},
        paper_data="CIFAR-10",
    ),
    Claim(
        "overlap-pool",
        "ablations",
        "§3.4",
        "Overlapping pooling reduces the top-1 and top-5 error rates by 0.4% and 0.3%; models "
        "with overlapping pooling find it slightly more difficult to overfit.",
        "top1_error",
        "full",
        "no-overlap",
        numbers={"top1_error": -0.004, "top5_error": -0.003},
    ),
    Claim(
        "overlap-pool-overfit",
        "ablations",
        "§3.4",
        "Models with overlapping pooling find it slightly more difficult to overfit.",
        "train_test_gap",
        "full",
        "no-overlap",
    ),
    Claim(
        "dropout",
        "ablations",
        "§4.2",
        "Without dropout, our network exhibits substantial overfitting.",
        "train_test_gap",
        "full",
        "no-dropout",
    ),
    Claim(
        "dropout-iterations",
        "ablations",
        "§4.2",
        "Dropout roughly doubles the number of iterations required to converge.",
        "steps_to_converge",
        "full",
        "no-dropout",
        kind="ratio",
        direction="greater",
        numbers={"steps_to_converge": 2.0},
    ),
    Claim(
        "fancy-pca",
        "ablations",
        "§4.1",
        "This scheme [PCA lighting] reduces the top-1 error rate by over 1%.",
        "top1_error",
        "full",
        "no-pca",
        numbers={"top1_error": -0.01},
    ),
    Claim(
        "crops-flips",
        "ablations",
        "§4.1",
        "Without this scheme [random crops and horizontal reflections], our network suffers "
        "from substantial overfitting.",
        "train_test_gap",
        "full",
        "no-crops-flips",
    ),
    Claim(
        "towers",
        "ablations",
        "§3.2",
        "This scheme [two GPUs] reduces our top-1 and top-5 error rates by 1.7% and 1.2%, "
        "compared with a net with half as many kernels in each convolutional layer trained on "
        "one GPU.",
        "top1_error",
        "full",
        "one-tower-half",
        numbers={"top1_error": -0.017, "top5_error": -0.012},
    ),
    Claim(
        "depth",
        "depth",
        "§7",
        "Removing any of the middle layers results in a loss of about 2% for the top-1 "
        "performance of the network.",
        "top1_error",
        "no-conv",
        "full",
        direction="greater",
        numbers={"top1_error": 0.02},
    ),
    Claim(
        "retrieval",
        "retrieval",
        "Fig. 4 (§6.1)",
        "If two images produce feature activation vectors with a small Euclidean separation, the "
        "higher levels of the neural network consider them to be similar; the retrieved training "
        "images are often not close in L2 to the query at the pixel level.",
        "label_agreement",
        "fc7",
        "pixels",
        direction="greater",
    ),
    Claim(
        "towers-colour",
        "towers",
        "Fig. 3 (§6.1)",
        "The kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are largely "
        "color-specific; this specialization occurs during every run (modulo a renumbering of "
        "the GPUs).",
        "colour_specificity",
        "tower2",
        "tower1",
        direction="differ",
    ),
)


def claims_for(experiment: str) -> list[Claim]:
    """The claims an experiment tests (KeyError naming the choices for an unknown experiment)."""
    found = [c for c in CLAIMS if c.experiment == experiment]
    if not found:
        names = sorted({c.experiment for c in CLAIMS})
        raise KeyError(f"no claims for experiment {experiment!r}; known: {', '.join(names)}")
    return found


def claim(key: str) -> Claim:
    """The claim with this key."""
    for c in CLAIMS:
        if c.key == key:
            return c
    raise KeyError(f"unknown claim {key!r}; known: {', '.join(c.key for c in CLAIMS)}")
