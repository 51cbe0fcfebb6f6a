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
import pickle
import random
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.errors import UserError

FORMAT = "alexnet-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write `path` via `write(fileobj)` to a temp file in the same directory, fsync, rename.

    A crash at any moment leaves either the old file or the new one, never a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write a checkpoint dict (see module docstring)."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with weights_only=True; every failure is one UserError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (was the run started with --output-dir?)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path}: refused: the file holds pickled objects other than tensors and plain "
            f"values (possible code payload; nothing was run): {first}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path}: not a readable checkpoint (corrupt or truncated?): {first}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not an alexnet checkpoint (format {FORMAT} expected)")
    return state


def check_compatible(
    state: dict, path: str | os.PathLike, *, model_config: dict, data_fingerprint: str
) -> None:
    """Refuse to resume a checkpoint of another model or other data, naming the difference."""
    saved = json.loads(state["model_config"])
    if saved != model_config:
        diffs = _dict_diff(saved, model_config)
        raise UserError(f"{path}: checkpoint is of another model: {diffs}")
    if state["data_fingerprint"] != data_fingerprint:
        raise UserError(
            f"{path}: checkpoint was trained on other data (fingerprint "
            f"{state['data_fingerprint']} in the checkpoint, {data_fingerprint} in --data)"
        )


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
