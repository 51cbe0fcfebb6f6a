"""The training step never waits for the device; checked on the CPU with fused SGD (as on CUDA,
where it skips a non-finite step on the device): the ranks' agreement (stop signals, non-finite
steps, the loss shown) after every step and every `POLL_STEPS` steps give the same losses,
correct counts, skipped steps and weights.

Both runs use torch's fused SGD, so the only difference is when the numbers are read: each
step's loss, the epoch's sums, the non-finite steps skipped and the final weights must agree
exactly.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from data_helpers import synthetic_data

from alexnet.errors import UserError
from alexnet.train import loop
from alexnet.train.config import make_config
from alexnet.weights import read


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthetic_data(tmp_path_factory.mktemp("syncfree") / "data", count=64)


def _run(data, out, monkeypatch, *, sync_free: bool, poison=(), **extra):
    real_sgd = loop.make_optimizer
    monkeypatch.setattr(
        loop, "make_optimizer", lambda *a, **k: real_sgd(*a, **{**k, "fused": True})
    )
    monkeypatch.setattr(loop, "POLL_STEPS", 50 if sync_free else 1)
    real_loss = F.cross_entropy
    calls = {"n": 0}

    def loss(*a, **k):  # a non-finite loss at the chosen steps (counted from 1)
        calls["n"] += 1
        value = real_loss(*a, **k)
        return value * float("nan") if calls["n"] in poison else value

    monkeypatch.setattr(loop, "F", SimpleNamespace(cross_entropy=loss))  # the step's loss only
    cfg = make_config("fast", model="small", data=str(data), output_dir=str(out), epochs=2,
                      batch_size=16, log_every=1, device="cpu", **extra)  # fmt: skip
    return loop.fit(cfg)


def _steps(run):
    return [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]


def test_same_losses_counts_and_weights(data, tmp_path, monkeypatch):
    a = _run(data, tmp_path / "host", monkeypatch, sync_free=False)
    b = _run(data, tmp_path / "device", monkeypatch, sync_free=True)
    keys = ("step", "train_loss", "train_top1_error", "window_images")
    assert [[s[k] for k in keys] for s in _steps(a.output_dir)] == [
        [s[k] for k in keys] for s in _steps(b.output_dir)
    ]
    for ra, rb in zip(a.history, b.history, strict=True):
        for k in ("train_loss", "train_top1_error", "val_top1_error", "nan_skipped"):
            assert ra[k] == rb[k], k
    wa, _ = read(a.weights)
    wb, _ = read(b.weights)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nonfinite_steps_are_skipped_alike(data, tmp_path, monkeypatch):
    a = _run(data, tmp_path / "host", monkeypatch, sync_free=False, poison=(2, 3), on_nan="skip")
    b = _run(data, tmp_path / "dev", monkeypatch, sync_free=True, poison=(2, 3), on_nan="skip")
    assert [r["nan_skipped"] for r in a.history] == [2, 0] == [r["nan_skipped"] for r in b.history]
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    wa, _ = read(a.weights)
    wb, _ = read(b.weights)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # a skipped step left the weights alone


def test_a_nonfinite_loss_stops_both_in_one_line(data, tmp_path, monkeypatch):
    for sync_free in (False, True):
        with pytest.raises(UserError, match="non-finite loss") as exc:
            _run(data, tmp_path / f"r{sync_free}", monkeypatch, sync_free=sync_free, poison=(3,))
        assert "\n" not in str(exc.value)
