"""2-process gloo DDP (torchrun, CPU) against 1 process with the same global batch.

Augmentation is switched off (no flip, no padding, no lighting) and the model has no dropout
and no BatchNorm, so both runs compute the same global-batch gradients; they differ only in
float summation order (DDP averages two half-batch means). Stated tolerance: weights within
1e-4 absolute, train loss within 1e-4 relative, validation errors within one image.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from train_helpers import env, metrics, run, weights, write_packed

N_VAL = 45  # batch 16 x 2 ranks: rank 0 gets 16 + 13 images, rank 1 16; none padded
COMMON = [
    "--recipe",
    "fast",
    "--model",
    "small",
    "--epochs",
    "2",
    "--lr",
    "0.05",
    "--no-flip",
    "--pad",
    "0",
    "--lighting-std",
    "0",
    "--seed",
    "1",
    "--device",
    "cpu",
    "--model-options",
    '{"widths": [8, 8, 16], "batchnorm": false}',
]


def test_two_process_gloo_equals_one_process_same_global_batch(tmp_path):
    data = write_packed(tmp_path / "data", n_train=128, n_val=N_VAL)
    one, two = tmp_path / "one", tmp_path / "two"
    done = run(
        ["train", "--data", str(data), "--output-dir", str(one), "--batch-size", "32", *COMMON]
    )
    assert done.returncode == 0, done.stderr
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "alexnet",
        "train",
        "--data",
        str(data),
        "--output-dir",
        str(two),
        "--batch-size",
        "16",
        *COMMON,
    ]
    dist = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=180)
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert dist.stderr.count("epoch 2:") == 1, "only rank 0 logs"
    wa, wb = weights(one / "weights.safetensors"), weights(two / "weights.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-4, rtol=0)
    moved = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert moved < 1e-4
    ma, mb = metrics(one), metrics(two)
    for a, b in zip(ma, mb, strict=True):
        assert b["val_images"] == N_VAL == a["val_images"]  # every image counted once
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert abs(b["val_top1_error"] - a["val_top1_error"]) <= 1 / N_VAL + 1e-12
        assert a["val_top5_error"] is None and b["val_top5_error"] is None  # 4 classes


def test_two_process_batchnorm_with_uneven_validation_shards_finishes(tmp_path):
    """BatchNorm (buffers broadcast by DDP) and ranks with unequal validation batches (16 + 13
    vs 16 images): the run finishes and validation counts every image once. (Validation runs
    the bare model, not DDP's forward, whose buffer broadcast is a collective; on gloo the
    DDP-forward variant happened not to hang either.)"""
    data = write_packed(tmp_path / "data", n_train=64, n_val=N_VAL)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "alexnet",
        "train",
        "--data",
        str(data),
        "--output-dir",
        str(tmp_path / "r"),
        "--recipe",
        "fast",
        "--model",
        "small",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--model-options",
        '{"widths": [8, 8, 16]}',
        "--device",
        "cpu",
    ]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert metrics(tmp_path / "r")[0]["val_images"] == N_VAL
