"""Checkpoints: a plain dict of tensors and primitives, written atomically, loaded safely.

Layout of RUN/checkpoint.pt (format "alexnet-checkpoint/1"):
    format, model_config (JSON str), data_fingerprint, config (JSON str of TrainConfig),
    model (state_dict), optimizer (state_dict), schedule (dict), epoch, batch (next batch index
    inside `epoch`), global_step, epoch_sums (running loss/count of the current epoch),
    history (list of metrics records), best_error, nan_skipped, elapsed,
    rng: {torch, cuda (list), numpy: {keys, pos, has_gauss, cached},
         python: {version, state, gauss}}
Nothing in it is a pickled object: `torch.load(weights_only=True)` reads it, and any file whose
pickle would build another object (code) is refused before anything runs.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import UserError
from alexnet.fileio import atomic_write, safe_torch_load
from alexnet.models.registry import list_models, option_defaults
from alexnet.weights.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME

FORMAT = CHECKPOINT_FORMAT
__all__ = ["CHECKPOINT_NAME", "FORMAT", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write a checkpoint dict (see module docstring)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; every failure is one UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (was the run started with --output-dir?)")
    state = safe_torch_load(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not an alexnet checkpoint (format {FORMAT} expected)")
    return state


def check_compatible(
    state: dict, path: str | os.PathLike, *, model_config: dict, data_fingerprint: str
) -> None:
    """Refuse to resume a checkpoint of another model or other data, naming the difference.

    An option that a checkpoint from an earlier version lacks means that option's default
    (options are only ever added with a default that keeps the earlier network)."""
    saved = with_default_options(json.loads(state["model_config"]))
    model_config = with_default_options(model_config)
    if saved != model_config:
        diffs = _dict_diff(saved, model_config)
        raise UserError(f"{path}: checkpoint is of another model: {diffs}")
    if state["data_fingerprint"] != data_fingerprint:
        raise UserError(
            f"{path}: checkpoint was trained on other data (fingerprint "
            f"{state['data_fingerprint']} in the checkpoint, {data_fingerprint} in --data)"
        )


def with_default_options(model_config: dict) -> dict:
    """`model_config` ({"name", "options"}) with each absent option set to its default."""
    name = model_config.get("name")
    if name not in list_models() or not isinstance(model_config.get("options"), dict):
        return model_config
    options = {**option_defaults(name), **model_config["options"]}
    return {**model_config, "options": options}


def _dict_diff(saved: dict, now: dict, prefix: str = "") -> str:
    parts = []
    for key in sorted(set(saved) | set(now), key=str):
        a, b = saved.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                parts.append(_dict_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            parts.append(f"{prefix}{key}={a!r} in the checkpoint, {b!r} now")
    return "; ".join(parts)


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
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
