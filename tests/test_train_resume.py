"""Resume to the bit: SIGKILL mid-epoch and SIGTERM, each in a real subprocess (CPU)."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
from train_helpers import metrics, popen, run, weights, write_packed

# 192 images / batch 16 = 12 steps per epoch, 2 epochs; dropout on so the RNG state matters
TRAIN = [
    "--recipe",
    "fast",
    "--model",
    "small",
    "--epochs",
    "2",
    "--batch-size",
    "16",
    "--lr",
    "0.05",
    "--seed",
    "3",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--model-options",
    '{"hidden": 32, "dropout": 0.5, "widths": [8, 8, 16]}',
    "--log-every",
    "2",
]
STEPS = 12


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    done = run(["train", "--data", str(data), "--output-dir", str(out), *TRAIN])
    assert done.returncode == 0, done.stderr
    return out


def _wait_for_checkpoint(proc, path):
    """Until `path` exists (a run that never writes it ends at pytest's per-test timeout)."""
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def _assert_same_weights(a, b):
    wa, wb = weights(a / "weights.safetensors"), weights(b / "weights.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs"


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = popen(
        ["train", "--data", str(data), "--output-dir", str(out), *TRAIN, "--checkpoint-every", "5"],
        slow=True,
    )
    _wait_for_checkpoint(proc, out / "checkpoint.pt")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 0 < state["batch"] < STEPS, "the kill must land mid-epoch"
    assert not (out / "weights.safetensors").exists()
    done = run(["train", "--resume", str(out)])
    assert done.returncode == 0, done.stderr
    _assert_same_weights(reference, out)
    ref, got = metrics(reference), metrics(out)
    assert [r["train_loss"] for r in ref] == [r["train_loss"] for r in got]
    assert [r["val_top1_error"] for r in ref] == [r["val_top1_error"] for r in got]
    # the step log: every 2nd step once, the same values as the uninterrupted run's
    ref_steps, got_steps = _steps(reference), _steps(out)
    assert [r["step"] for r in got_steps] == list(range(2, 2 * STEPS + 1, 2))
    assert ref_steps == got_steps


def _steps(run_dir):
    keys = ("step", "epoch", "images", "train_loss", "train_top1_error", "window_images")
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    return [{k: json.loads(line)[k] for k in keys} for line in lines]


def test_sigterm_saves_a_checkpoint_exits_143_and_resumes(data, reference, tmp_path):
    # 128 + SIGTERM, as shells report it: torchrun, SLURM and `&&` must not read a stop as a
    # finished run; the last line says how to continue
    out = tmp_path / "run"
    proc = popen(
        ["train", "--data", str(data), "--output-dir", str(out), *TRAIN],
        slow=True,
    )
    _wait_for_checkpoint(proc, out / "config.json")  # the loop has started
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].endswith(f"alexnet train --resume {out}"), stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["global_step"] < 2 * STEPS
    done = run(["train", "--resume", str(out)])
    assert done.returncode == 0, done.stderr
    _assert_same_weights(reference, out)


@pytest.mark.slow
def test_sigterm_at_any_moment_saves_exits_143_and_resumes_to_the_bit(data, reference, tmp_path):
    # moments spread over the start-up, the steps, the epoch's end (validation, the best
    # weights' write, the checkpoint) and the final evaluation of a slowed run
    failures = []
    for i, delay in enumerate([0.5, 2.0, 3.0, 3.5, 4.0, 4.5, 5.5, 7.0]):  # the run takes ~8 s
        out = tmp_path / f"run{i}"
        proc = popen(["train", "--data", str(data), "--output-dir", str(out), *TRAIN], slow=True)
        _wait_for_checkpoint(proc, out / "config.json")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        ok = last.startswith(("stopped by SIGTERM", "done (")) and "Traceback" not in stderr
        if proc.returncode != 128 + signal.SIGTERM or not ok:
            failures.append(f"at {delay}s: exit {proc.returncode}, last line {last!r}")
            continue
        done = run(["train", "--data", str(data), "--output-dir", str(out), "--resume", "auto",
                    *TRAIN])  # fmt: skip
        assert done.returncode == 0, done.stderr
        _assert_same_weights(reference, out)
    assert failures == [], failures
