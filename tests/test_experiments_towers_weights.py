"""`alexnet reproduce towers --weights FILE`: Fig. 3 (§6.1) checked on given two-tower weights
with a known answer (tower 1's conv1 kernels gray, tower 2's in one colour channel), and
one-tower weights refused in one line."""

from __future__ import annotations

import json

import pytest
import torch

from alexnet.cli import main
from alexnet.models.registry import get_model
from alexnet.weights.meta import Preprocess
from alexnet.weights.safetensors_io import save_safetensors

WIDTHS = [8, 8, 16]  # conv1: 8 kernels, 4 feeding each tower


def _weights(path, towers: int):
    torch.manual_seed(0)
    model = get_model("small", num_classes=10, in_channels=3, input_size=32, towers=towers,
                      widths=WIDTHS)  # fmt: skip
    w = model.state_dict()
    conv1 = next(k for k in w if k.endswith("weight") and w[k].dim() == 4)
    o, _, kh, kw = w[conv1].shape
    gray = torch.randn(o // 2, 1, kh, kw).expand(-1, 3, -1, -1)  # R = G = B: score 0
    red = torch.zeros(o // 2, 3, kh, kw)
    red[:, 0] = torch.randn(o // 2, kh, kw)  # one channel only: score 2/3 exactly
    w[conv1] = torch.cat([gray, red])
    save_safetensors(path, w, model_config=model.config, classes=[f"c{i}" for i in range(10)],
                     preprocess=Preprocess(crop_size=32))  # fmt: skip
    return path


def test_given_two_tower_weights_get_the_known_answer(tmp_path):
    weights = _weights(tmp_path / "two.safetensors", towers=2)
    out = tmp_path / "out"
    assert main(["reproduce", "towers", "--weights", str(weights), "--output-dir", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    rows = {r["variant"]: r for r in result["runs"]}
    # the score of a gray kernel is 0; of a kernel in one channel, (1 - 1/3)^2 + 2 (1/3)^2 = 2/3
    assert rows["tower1"]["colour_specificity"] == pytest.approx(0.0, abs=1e-12)
    assert rows["tower2"]["colour_specificity"] == pytest.approx(2 / 3, rel=1e-9)
    assert rows["towers"]["tower_gap"] == pytest.approx(2 / 3, rel=1e-9)
    assert rows["random-split"]["tower_gap"] < rows["towers"]["tower_gap"]
    (c,) = result["comparisons"]
    assert c["over"] == "conv1 kernels" and c["paired"] is False and c["n"] == 8
    assert c["estimate"] == pytest.approx(2 / 3) and c["reproduced"] is True
    # exact permutation test over the C(8, 4) = 70 splits: only the observed split and its
    # mirror are as extreme, so p = 2 * (1 / 70)
    assert c["p_value"] == pytest.approx(2 / 70)
    assert result["weights"] == str(weights) and "nothing trained" in result["dataset"]
    assert (out / "kernels.png").stat().st_size > 1000


def test_one_tower_weights_are_refused_in_one_line(tmp_path, capsys):
    weights = _weights(tmp_path / "one.safetensors", towers=1)
    out = tmp_path / "out"
    code = main(["reproduce", "towers", "--weights", str(weights), "--output-dir", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "one-tower model (towers=1)" in err and str(weights) in err
    assert not (out / "result.json").exists()
    code = main(["reproduce", "depth", "--weights", str(weights)])
    assert code == 2 and "only for towers" in capsys.readouterr().err
