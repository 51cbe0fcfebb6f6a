"""`python tests/reproduce_tiny.py ARGS...` runs `alexnet ARGS...` with the experiments' budgets
shrunk to seconds (`shrink`), so a test can train an experiment's runs in separate processes
(`reproduce NAME --run I`) exactly as the test's own process does after `shrink`."""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from typing import Any

from alexnet.cli import main
from alexnet.experiments import ablations, paper_net, relu_tanh, retrieval, towers


def shrink(
    setattr_: Callable[[Any, str, Any], None] = setattr,
    setitem: Callable[[Any, Any, Any], None] = operator.setitem,
) -> None:
    """Budgets of seconds: a few steps of batch 16 on 64 images (pytest's monkeypatch.setattr
    and .setitem undo it after a test)."""
    setitem(relu_tanh.BUDGET, "quick", ((0.01, 0.1), 4, 8, 2))
    setitem(ablations.BUDGET, "quick", (48, 2))
    setitem(retrieval.BUDGET, "quick", 1)
    setitem(towers.BUDGET, "quick", 1)
    setitem(paper_net.BUDGET, "quick", (1, 8, 2))
    setattr_(paper_net, "BATCH", 4)
    setattr_(ablations, "BATCH", 16)
    setattr_(relu_tanh, "BATCH", 16)
    for name, value in (("ROUNDS", 2), ("STEPS", 1), ("WARMUP", 1)):
        setattr_(relu_tanh, name, value)


if __name__ == "__main__":
    shrink()
    sys.exit(main(sys.argv[1:]))
