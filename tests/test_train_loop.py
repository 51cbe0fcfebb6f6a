"""The training loop in-process: outputs, NaN guard, bad input, resume refusals."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from train_helpers import metrics, write_packed

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.train.config import make_config
from alexnet.train.loop import fit as train

SMALL = {"widths": [8, 8, 16]}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("data"), n_train=128, n_val=40)


def _cfg(data, out, **kw):
    base = dict(
        data=str(data),
        output_dir=str(out),
        epochs=1,
        batch_size=16,
        lr=0.05,
        model="small",
        model_options=SMALL,
        device="cpu",
    )
    base.update(kw)
    return make_config("fast", **base)


def test_run_dir_outputs_and_metrics_fields(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out, epochs=2))
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "weights.safetensors",
        "weights-best.safetensors",
        "eval.json",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for key in (
            "epoch",
            "lr",
            "train_loss",
            "val_top1_error",
            "val_top5_error",
            "images_per_sec",
            "nan_skipped",
            "time",
        ):
            assert key in r
        assert r["val_images"] == 40 and 0 <= r["val_top1_error"] <= 1
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["versions"]["torch"] == torch.__version__
    assert cfg["config"]["recipe"] == "fast" and cfg["model"]["name"] == "small"
    assert cfg["model"]["options"]["num_classes"] == 4  # from the data


def _nan_at(monkeypatch, steps: set[int]):
    real = F.cross_entropy
    calls = {"n": 0}

    def patched(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] in steps else loss

    monkeypatch.setattr(F, "cross_entropy", patched)
    return calls


def test_nan_stops_naming_the_step_and_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _nan_at(monkeypatch, {6})  # the 6th step (epoch 1, step index 5)
    with pytest.raises(UserError, match=r"non-finite loss at epoch 1 step 5 \(global step 5\)"):
        train(_cfg(data, out, checkpoint_every=2))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["global_step"] == 4  # the last good one, untouched by the bad step
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (out / "weights.safetensors").exists()


def test_nan_skip_counts_skipped_steps(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _nan_at(monkeypatch, {2, 5})
    train(_cfg(data, out, on_nan="skip", epochs=1))
    (row,) = metrics(out)
    assert row["nan_skipped"] == 2
    assert torch.isfinite(torch.tensor(row["train_loss"]))


def test_not_a_packed_dataset_is_one_line_error(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path), "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "alexnet prepare" in err and "\n" not in err and str(tmp_path) in err


def test_unwritable_run_dir_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the run directory"):
        train(_cfg(data, blocker / "run"))


def test_resume_with_other_model_or_data_is_refused(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out))
    rc_model = main(["train", "--resume", str(out), "--model-options", '{"widths": [8, 8, 8]}'])
    assert rc_model == 2
    other = write_packed(tmp_path / "other", n_train=128, n_val=40, seed=9)
    with pytest.raises(UserError, match="other data"):
        train(_cfg(other, out, resume=str(out)))
    with pytest.raises(UserError, match=r"widths=\[8, 8, 16\] in the checkpoint"):
        train(_cfg(data, out, resume=str(out), model_options={"widths": [8, 8, 8]}))


def test_existing_run_is_not_overwritten(data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out))
    with pytest.raises(UserError, match="continue it with resume"):
        train(_cfg(data, out))


@pytest.mark.slow
def test_model_parallel_paper_trains_and_saves_paper_layout(data, tmp_path):
    """--model-parallel cpu,cpu: the two-tower split trains; its weights load as `paper`."""
    from alexnet.weights import load

    out = tmp_path / "run"
    cfg = make_config(
        "paper",
        data=str(data),
        output_dir=str(out),
        model="paper",
        batch_size=4,
        max_steps=2,
        model_parallel="cpu,cpu",
        test_crops=1,
        normalize="channel",
    )
    result = train(cfg)
    assert result.status == "max_steps"
    model, meta = load(out / "weights.safetensors")
    assert meta.model_name == "paper" and model.num_classes == 4


@pytest.mark.parametrize(
    "options, why",
    [({"towers": 1}, "two-tower model"), ({"widths": [48, 128, 192, 192, 256]}, "paper's widths")],
)
def test_model_parallel_refuses_options_that_do_not_split(data, tmp_path, capsys, options, why):
    """The two-device split (§3.2) needs the paper's two towers: else one line, exit 2."""
    argv = [
        "train",
        "--data",
        str(data),
        "--output-dir",
        str(tmp_path / "run"),
        "--model",
        "paper",
        "--model-parallel",
        "cpu,cpu",
        "--model-options",
        json.dumps(options),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("alexnet train: error: --model-parallel")
    assert why in err


def test_flags_override_recipe_values():
    from alexnet.cli import build_parser
    from alexnet.commands.train import config_of

    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "D",
            "--output-dir",
            "R",
            "--recipe",
            "torchvision",
            "--lr",
            "0.2",
            "--no-flip",
            "--epochs",
            "7",
            "--weight-decay",
            "0",
            "--amp",
        ]
    )
    cfg = config_of(args)
    assert (cfg.lr, cfg.flip, cfg.epochs, cfg.weight_decay, cfg.amp) == (0.2, False, 7, 0.0, True)
    assert (cfg.schedule, cfg.batch_size, cfg.model) == ("step", 32, "torchvision")  # recipe's
    paper = config_of(build_parser().parse_args(["train", "--data", "D", "--output-dir", "R"]))
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size, paper.epochs) == (
        0.01,
        0.9,
        5e-4,
        128,
        90,
    )
    assert (paper.schedule, paper.max_reductions, paper.test_crops) == ("plateau", 3, 10)
