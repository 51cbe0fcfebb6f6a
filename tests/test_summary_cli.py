"""`alexnet summary` and the CLI's behaviour on bad arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alexnet.cli import main


def run_json(capsys, *argv) -> dict:
    assert main(["summary", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def paper_macs() -> int:
    """Multiply-adds by hand: out_h * out_w * out_c * k * k * in_c / groups, plus FC in*out."""
    convs = [(55, 96, 11, 3), (27, 256, 5, 48), (13, 384, 3, 256), (13, 384, 3, 192),
             (13, 256, 3, 192)]  # fmt: skip
    return (
        sum(s * s * c * k * k * cin for s, c, k, cin in convs)
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )


def test_summary_json_totals(capsys):
    paper = run_json(capsys, "--model", "paper")
    assert paper["model"] == "paper" and paper["input_size"] == 224
    assert paper["total_params"] == 60_965_224
    assert paper["total_macs"] == paper_macs()
    assert round(paper["total_macs"] / 1e6) == 724  # PAPER.md: about 724 M
    layer = paper["layers"][0]
    assert {"name", "output_shape", "weights", "biases", "params", "macs"} <= layer.keys()
    conv3 = next(r for r in paper["layers"] if r["name"] == "conv3")
    assert conv3["biases"] == 384  # the seed's table says 384 x 2
    assert sum(r["params"] for r in paper["layers"]) == paper["total_params"]
    assert run_json(capsys, "--model", "seed")["total_params"] == 62_378_344
    assert run_json(capsys, "--model", "torchvision")["total_params"] == 61_100_840
    p227 = run_json(capsys, "--model", "paper", "--input-size", "227")
    assert p227["layers"][0]["output_shape"] == [96, 55, 55]


def test_summary_table_text(capsys):
    assert main(["summary", "--model", "paper"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "60,965,224" in out


def test_bad_arguments_are_one_line(capsys):
    assert main(["summary", "--model", "paper", "--input-size", "200"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input_size=200" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["summary", "--model", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "alexnet", "summary", "--model", "seed", "--input-size", "200"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "(N, 3, 224, 224)" in out.stderr


@pytest.mark.parametrize("model, size", [("torchvision", 62), ("seed", 100), ("paper", 100),
                                         ("small", 100)])  # fmt: skip
def test_an_input_size_the_model_cannot_take_is_one_line(model, size, capsys):
    assert main(["summary", "--model", model, "--input-size", str(size)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alexnet summary: error: model "), err
