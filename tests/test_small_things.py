"""Rounded JSON, help defaults, curves.png labels, the report's table and feature names."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import alexnet.viz as viz
from alexnet import get_model
from alexnet.cli import build_parser
from alexnet.fileio import json_line, rounded
from alexnet.report import FINAL_TEST_NOTE, _results_table


def test_json_floats_are_rounded():
    assert json_line({"e": 0.07230000000000003, "x": [1 / 3, 2], "s": "a"}) == (
        '{"e": 0.0723, "x": [0.333333, 2], "s": "a"}'
    )
    assert rounded(float("nan")) != rounded(float("nan"))  # NaN passes through as NaN
    assert rounded(123456789.0) == 123457000.0


def test_eval_help_states_the_crops_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(r"--crops \{1,2,10\} .*\(default: 1\)", text)


def _metrics(run, records):
    run.mkdir(exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


RECORDS = [
    {"epoch": 1, "complete": True, "lr": 0.01, "train_loss": 1.2, "val_loss": 0.9,
     "val_top1_error": 0.3, "val_top5_error": 0.0, "images_per_sec": 100},
    {"epoch": 2, "complete": False, "lr": 0.01, "train_loss": 1.0, "val_loss": 0.8,
     "val_top1_error": 0.25, "val_top5_error": 0.0, "images_per_sec": 100},
]  # fmt: skip


def test_curves_have_a_loss_label_both_lines_in_the_legend_and_the_note(tmp_path, monkeypatch):
    figs = []
    monkeypatch.setattr(viz, "save_figure", lambda fig, out, dpi: figs.append(fig))
    _metrics(tmp_path / "run", RECORDS)
    viz.training_curves([tmp_path / "run"], tmp_path / "c.png", labels=["r"])
    ax_loss = figs[0].axes[0]
    assert "loss" in ax_loss.get_ylabel()
    legend = [t.get_text() for t in ax_loss.get_legend().get_texts()]
    assert "r training" in legend and "r validation" in legend
    assert any("partial" in t for t in legend)  # epoch 2 stopped by --max-steps
    notes = " ".join(t.get_text() for t in ax_loss.texts)
    assert "label smoothing" in notes and "above the validation loss" in notes


def test_report_table_partial_epoch_top5_and_final_test_split(tmp_path):
    run = tmp_path / "run"
    _metrics(run, RECORDS)
    (run / "eval.json").write_text(json.dumps(
        {"images": 10, "crops": 1, "top1_error": 0.2, "top5_error": 0.0, "loss": 0.7}))  # fmt: skip
    few = "\n".join(_results_table(run, num_classes=4))
    assert "top-5" not in few  # meaningless with <= 5 classes
    assert "| 2 (partial) |" in few and "| 1 |" in few
    assert FINAL_TEST_NOTE in few and "`val` split" in FINAL_TEST_NOTE
    assert "weights-best" in FINAL_TEST_NOTE
    many = "\n".join(_results_table(run, num_classes=10))
    assert many.count("top-5 error") == 2


def test_small_model_feature_is_not_called_fc7(tmp_path, monkeypatch):
    name = get_model("small").penultimate_name  # what `Predictor.feature_layer` gives
    assert "fc7" not in name and get_model("paper").penultimate_name == "fc7"
    figs = []
    monkeypatch.setattr(viz, "save_figure", lambda fig, out, dpi: figs.append(fig))
    img = np.zeros((8, 8, 3), np.uint8)
    viz.neighbors_grid([img], [[img, img]], tmp_path / "n.png", feature=name)
    assert "fc7" not in figs[0]._suptitle.get_text() and name in figs[0]._suptitle.get_text()
