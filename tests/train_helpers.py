"""Shared helpers for the train/eval tests: a tiny learnable packed dataset, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_packed(
    root: Path,
    *,
    n_train: int = 192,
    n_val: int = 64,
    size: int = 28,
    classes: int = 4,
    seed: int = 0,
    gray: bool = False,
) -> Path:
    """Write a packed dataset dir in the "alexnet-packed" v1 layout (see alexnet.data.packed):
    noise images with a bright class-dependent square, so a small CNN can learn them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        y = rng.integers(0, classes, n).astype(np.int64)
        img = rng.integers(0, 80, (n, size, size, 1 if gray else 3))
        for c in range(classes):
            o = 2 + 5 * c
            img[y == c, o : o + 8, o : o + 8, :] += 150
        img = np.repeat(img, 3, axis=3) if gray else img
        np.save(root / f"{split}_images.npy", img.clip(0, 255).astype(np.uint8))
        np.save(root / f"{split}_labels.npy", y)
        splits[split] = {"count": n}
    px = np.load(root / "train_images.npy").astype(np.float64) / 255
    flat = px.reshape(-1, 3)
    cov = np.cov(flat.T)
    w, v = np.linalg.eigh(cov)
    np.savez(
        root / "stats.npz",
        mean_image=px.mean(0),
        channel_mean=flat.mean(0),
        channel_std=flat.std(0),
        rgb_cov=cov,
        eigval=w[::-1].copy(),
        eigvec=v[:, ::-1].copy(),
    )
    header = {
        "format": "alexnet-packed",
        "version": 1,
        "splits": splits,
        "classes": [f"class{i}" for i in range(classes)],
        "image_size": [size, size],
        "fingerprint": f"test-{seed}-{n_train}-{size}",
    }
    (root / "header.json").write_text(json.dumps(header))
    return root


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    path = os.pathsep.join(p for p in (str(REPO / "src"), e.get("PYTHONPATH", "")) if p)
    e.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra})
    return e


def popen(args: list[str], *, slow: bool = False, **extra_env: str) -> subprocess.Popen:
    """`alexnet ARGS` in a subprocess; `slow`: every training step sleeps 0.3 s (slow_train.py)."""
    command = [str(REPO / "tests" / "slow_train.py")] if slow else ["-m", "alexnet"]
    return subprocess.Popen(
        [sys.executable, *command, *args],
        env=env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], timeout: float = 120, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args],
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
