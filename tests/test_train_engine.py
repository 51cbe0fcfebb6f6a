"""The callable engine (`alexnet.train.fit`) and where a run lives: RunResult, RunDir, the
step log, and the rules of --resume (continue in place, absolute paths, no fallbacks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import REPO, env, run, write_packed

from alexnet.errors import UserError
from alexnet.rundir import RunDir
from alexnet.train import fit, make_config

SMALL = {"hidden": 16, "widths": [4, 4, 8]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("data"), n_train=64, n_val=16)


def _cfg(data, out, **kw):
    values = dict(
        data=str(data),
        output_dir=str(out),
        model="small",
        model_options=SMALL,
        epochs=2,
        batch_size=16,
        lr=0.05,
        seed=1,
        device="cpu",
    )
    values.update(kw)
    return make_config("fast", **values)


def test_fit_returns_the_run_as_written_on_disk(data, tmp_path):
    result = fit(_cfg(data, tmp_path / "run", log_every=3))
    assert result.status == "finished"
    assert result.weights == tmp_path / "run" / "weights.safetensors" and result.weights.is_file()
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert all(0.0 <= r["train_top1_error"] <= 1.0 for r in result.history)
    on_disk = RunDir(tmp_path / "run").result()
    assert on_disk.history == result.history and on_disk.final == result.final
    assert on_disk.status == "finished" and RunDir(tmp_path / "run").is_finished()
    # 4 steps an epoch, 8 in all: records after steps 3 and 6, each the mean of 3 batches
    steps = RunDir(tmp_path / "run").read_steps()
    assert [r["step"] for r in steps] == [3, 6]
    assert [r["window_images"] for r in steps] == [48, 48]
    assert steps[0]["time"] <= steps[1]["time"] <= result.train_seconds + 1e-6


def test_step_log_error_is_the_minibatch_error(data, tmp_path):
    """log_every=1: each record's error is that step's batch error; their mean over an epoch
    equals the epoch record's train_top1_error (all batches have 16 images)."""
    result = fit(_cfg(data, tmp_path / "run", log_every=1, epochs=1))
    steps = RunDir(tmp_path / "run").read_steps()
    assert len(steps) == 4
    assert all(r["train_top1_error"] * 16 == pytest.approx(round(r["train_top1_error"] * 16))
               for r in steps)  # fmt: skip
    mean = sum(r["train_top1_error"] for r in steps) / 4
    assert mean == pytest.approx(result.history[0]["train_top1_error"], abs=1e-12)


def test_callbacks_see_every_step(data, tmp_path):
    seen = []
    fit(_cfg(data, tmp_path / "run", epochs=1), callbacks=[seen.append])
    assert seen == [1, 2, 3, 4]


def test_empty_train_split_is_named(tmp_path):
    empty = write_packed(tmp_path / "empty", n_train=8, n_val=4)
    images = np.load(empty / "train_images.npy")
    np.save(empty / "train_images.npy", images[:0])
    np.save(empty / "train_labels.npy", np.load(empty / "train_labels.npy")[:0])
    header = json.loads((empty / "header.json").read_text())
    header["splits"]["train"]["count"] = 0
    (empty / "header.json").write_text(json.dumps(header))
    with pytest.raises(UserError, match="train split holds no images"):
        fit(_cfg(empty, tmp_path / "run"))


def _cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "alexnet", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


TRAIN = ["--recipe", "fast", "--model", "small", "--epochs", "1", "--batch-size", "16",
         "--model-options", json.dumps(SMALL), "--device", "cpu"]  # fmt: skip


def test_resume_from_another_directory_uses_absolute_paths(data, tmp_path):
    """config.json stores --data and --output-dir absolute: resuming from elsewhere works."""
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(data, work / "d")
    done = _cli(["train", "--data", "d", "--output-dir", "r", *TRAIN, "--max-steps", "2"], work)
    assert done.returncode == 0, done.stderr
    saved = json.loads((work / "r" / "config.json").read_text())["config"]
    assert os.path.isabs(saved["data"]) and os.path.isabs(saved["output_dir"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _cli(["train", "--resume", str(work / "r"), "--max-steps", "4"], elsewhere)
    assert done.returncode == 0, done.stderr
    assert RunDir(work / "r").read_metrics()[-1]["step"] == 4


def test_resume_refuses_another_output_dir_and_leaves_it_alone(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        done = run(["train", "--data", str(data), "--output-dir", str(out), *TRAIN])
        assert done.returncode == 0, done.stderr
    before = {p.name: p.read_bytes() for p in b.iterdir() if p.is_file()}
    done = run(["train", "--resume", str(a), "--output-dir", str(b)])
    assert done.returncode == 2
    assert "continues that run in place" in done.stderr and len(done.stderr.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in b.iterdir() if p.is_file()} == before


def test_resume_names_what_is_wrong(data, tmp_path):
    # a typo: no fallback to ./config.json
    (tmp_path / "config.json").write_text(json.dumps({"config": {"data": str(data)}}))
    done = _cli(["train", "--resume", "nosuchrun"], tmp_path)
    assert done.returncode == 2 and "nosuchrun: no such run directory" in done.stderr
    (tmp_path / "empty").mkdir()
    done = _cli(["train", "--resume", "empty"], tmp_path)
    assert done.returncode == 2 and "not a run directory" in done.stderr
    # the run's data moved away: say which path was tried and that --data overrides it
    moved = write_packed(tmp_path / "moved", n_train=32, n_val=8)
    out = tmp_path / "r"
    done = run(
        ["train", "--data", str(moved), "--output-dir", str(out), *TRAIN, "--max-steps", "1"]
    )
    assert done.returncode == 0, done.stderr
    moved.rename(tmp_path / "moved-again")
    done = run(["train", "--resume", str(out)])
    assert done.returncode == 2
    assert str(moved) in done.stderr and "--data" in done.stderr
    done = run(["train", "--resume", str(out), "--data", str(tmp_path / "moved-again")])
    assert done.returncode == 0, done.stderr


def test_epoch_line_says_error_in_percent(data, tmp_path):
    done = run(["train", "--data", str(data), "--output-dir", str(tmp_path / "r"), *TRAIN])
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("epoch 1:"))
    assert "val error top-1" in line and "%" in line
    record = RunDir(tmp_path / "r").read_metrics()[0]
    assert f"{100 * record['val_top1_error']:.2f} %" in line


def test_fit_is_importable_without_the_cli():
    code = "import alexnet.train as t; print(t.fit.__module__)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, cwd=REPO
    )
    assert done.stdout.strip() == "alexnet.train.loop", done.stderr
    assert "alexnet.cli" not in done.stderr


def test_train_limit_and_train_eval(data, tmp_path):
    """--train-limit trains on the first N images (N/batch steps an epoch); --train-eval puts
    the final weights' error on the first M of those into eval.json, and it equals `alexnet
    eval` of the weights on a packed split holding just those images."""
    capped = fit(_cfg(data, tmp_path / "capped", epochs=1, train_limit=32, train_eval=100))
    assert capped.final["train"]["images"] == 32  # only images it trained on
    result = fit(_cfg(data, tmp_path / "run", epochs=1, train_limit=32, train_eval=24))
    assert result.history[0]["step"] == 2  # 32 images / batch 16
    train = result.final["train"]
    assert train["images"] == 24 and 0.0 <= train["top1_error"] <= 1.0
    sub = tmp_path / "sub"
    sub.mkdir()
    for name in ("stats.npz", "header.json"):
        (sub / name).write_bytes((data / name).read_bytes())
    for split in ("train", "val"):
        np.save(sub / f"{split}_images.npy", np.load(data / "train_images.npy")[:24])
        np.save(sub / f"{split}_labels.npy", np.load(data / "train_labels.npy")[:24])
    header = json.loads((sub / "header.json").read_text())
    header["splits"] = {"train": {"count": 24}, "val": {"count": 24}}
    (sub / "header.json").write_text(json.dumps(header))
    done = run(["eval", "--data", str(sub), "--weights", str(result.weights), "--crops",
                str(train["crops"]), "--json", "--device", "cpu"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["top1_error"] == pytest.approx(train["top1_error"], abs=1e-9)


def test_channels_last_default_is_per_model_on_the_cpu(data, tmp_path):
    """Channels-last is on by default only where it measured faster (torchvision's model on
    a CPU); --channels-last / --no-channels-last decide; config.json records the choice."""
    from alexnet.train.config import resolve_channels_last

    assert resolve_channels_last(make_config("torchvision"), "cpu") is True
    assert resolve_channels_last(make_config("paper"), "cpu") is False
    assert resolve_channels_last(make_config("torchvision"), "cuda") is False
    assert resolve_channels_last(make_config("torchvision", channels_last=False), "cpu") is False
    assert resolve_channels_last(make_config("paper", channels_last=True), "cpu") is True
    cfg = _cfg(data, tmp_path / "run", epochs=1, max_steps=1)
    fit(cfg)
    assert RunDir(tmp_path / "run").read_config()["config"]["channels_last"] is False
