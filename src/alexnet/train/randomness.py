"""Every random stream of a run, so that a resumed run repeats an uninterrupted one exactly.

- loader order: a function of (seed, epoch) (`alexnet.data.loader.epoch_permutation`);
- augmentation: a torch.Generator seeded from (seed, epoch, step, rank) for every step
  (`step_seed`, `step_generator`);
- dropout: the global torch RNG of each rank, whose state every checkpoint holds for every rank
  (`capture_rng_state` / `restore_rng_state`, with numpy's and python's); a fresh run seeds rank
  r's from `step_seed(seed, 0, 0, r, stream=1)`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def step_seed(seed: int, epoch: int, step: int, rank: int, stream: int = 0) -> int:
    """Seed of the augmentation generator of one step: a pure function of its position, so a
    resumed run draws exactly the crops, flips and lighting of an uninterrupted one.
    `stream` 1 seeds the global (dropout) RNG of a rank at a given global step instead."""
    entropy = [stream, seed, epoch, step, rank]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def step_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` seeded with `seed`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python RNG states as tensors and ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states `capture_rng_state` took."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
