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


def _fields_by_hand(layers: list[tuple[str, int, int, int]], size: int) -> dict:
    """(receptive field, jump, first centre) by the textbook recursion over (name, k, s, p)."""
    rf, jump, start, out = 1, 1, 0.5, {}
    for name, k, s, p in layers:
        rf, start, jump = rf + (k - 1) * jump, start + ((k - 1) / 2 - p) * jump, jump * s
        out[name] = (rf, jump, start)
    return out


PAPER_GEOMETRY = [
    ("conv1", 11, 4, 2), ("pool1", 3, 2, 0), ("conv2", 5, 1, 2), ("pool2", 3, 2, 0),
    ("conv3", 3, 1, 1), ("conv4", 3, 1, 1), ("conv5", 3, 1, 1), ("pool5", 3, 2, 0),
]  # fmt: skip


def test_receptive_fields_follow_the_layer_arithmetic(capsys):
    """Paper §3.5's geometry by hand: conv1 11/4, pool1 19/8, conv2 51/8, ..., pool5 195/32;
    LRN keeps its conv's field; fc layers see the whole image."""
    rows = {r["name"]: r for r in run_json(capsys, "--model", "paper")["layers"]}
    want = _fields_by_hand(PAPER_GEOMETRY, 224)
    for name, (rf, jump, start) in want.items():
        assert (rows[name]["receptive_field"], rows[name]["jump"]) == (rf, jump), name
        assert rows[name]["start"] == pytest.approx(start), name
    assert [want[n][:2] for n in ("conv1", "pool1", "conv2", "pool5")] == [
        (11, 4), (19, 8), (51, 8), (195, 32)]  # fmt: skip
    assert (rows["norm1"]["receptive_field"], rows["norm2"]["jump"]) == (11, 8)
    assert all(rows[f"fc{i}"]["receptive_field"] == 224 for i in (6, 7, 8))
    at227 = run_json(capsys, "--model", "paper", "--input-size", "227")
    at227 = {r["name"]: r for r in at227["layers"]}
    assert at227["pool5"]["receptive_field"] == 195  # conv1 without padding: the same field
    small = {r["name"]: r for r in run_json(capsys, "--model", "small")["layers"]}
    geometry = [("conv1", 5, 1, 2), ("pool1", 3, 2, 0), ("conv2", 5, 1, 2), ("pool2", 3, 2, 0),
                ("conv3", 5, 1, 2), ("pool3", 3, 2, 0)]  # fmt: skip
    for name, (rf, jump, _) in _fields_by_hand(geometry, 32).items():
        assert (small[name]["receptive_field"], small[name]["jump"]) == (rf, jump), name
    assert "RF" in main_table(capsys)


def main_table(capsys) -> str:
    assert main(["summary", "--model", "paper"]) == 0
    return capsys.readouterr().out.splitlines()[0]


def test_receptive_field_box_at_the_borders():
    """The input pixels an output sees, clipped to the image: conv1's first unit reads pixels
    -2..8 (padding 2), i.e. 0..8 of the image; its last (54) reads 214..224, i.e. 214..223."""
    from alexnet.models.registry import get_model
    from alexnet.models.summary import Field, layer_table

    rows = {r.name: r for r in layer_table(get_model("paper"))}
    conv1 = Field(rows["conv1"].receptive_field, rows["conv1"].jump, rows["conv1"].start)
    assert conv1.box(0, 0, 224) == [0, 0, 9, 9]
    assert conv1.box(54, 54, 224) == [214, 214, 224, 224]
    assert conv1.box(3, 1, 224) == [2, 10, 13, 21]  # x from 1 * 4 - 2, y from 3 * 4 - 2
    pool5 = Field(rows["pool5"].receptive_field, rows["pool5"].jump, rows["pool5"].start)
    for i in range(6):  # centre 31.5 + 32 i, half 97.5: clipped at the borders
        lo, hi = 31.5 + 32 * i - 97.5, 31.5 + 32 * i + 97.5
        assert pool5.box(i, i, 224) == [max(0, round(lo)), max(0, round(lo)),
                                         min(224, round(hi)), min(224, round(hi))]  # fmt: skip
    assert pool5.box(5, 0, 224)[0] == 0 and pool5.box(0, 5, 224)[2] == 224


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


def test_a_mistyped_command_or_choice_names_the_closest(capsys):
    """`alexnet trian`: one line naming the command it most likely meant; nothing close: none."""
    for argv, hint in ((["trian"], "did you mean train?"), (["summary", "--model", "papr"],
                       "did you mean paper?"), (["xyzzy"], None)):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, err
        assert "invalid choice" in err[0]
        assert (hint in err[0]) if hint else "did you mean" not in err[0]
