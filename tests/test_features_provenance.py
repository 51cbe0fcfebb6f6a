"""features / neighbors: weights that cannot take the data's images, and features files used
with other weights or data, are one-line errors instead of tracebacks or wrong distances."""

from __future__ import annotations

import json
from pathlib import Path

import data_helpers as dh
import pytest
from data_helpers import cli

from alexnet.cli import main


def one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prov")
    data = dh.synthetic_data(root / "syn", seed=0)
    other = dh.synthetic_data(root / "other", seed=1)
    w = dh.small_weights(root / "w.safetensors", data, seed=0)
    w2 = dh.small_weights(root / "w2.safetensors", data, seed=1)  # same width, other values
    big = dh.small_weights(root / "big.safetensors", data, crop=224)
    feats = root / "feats"
    assert main(["features", "--data", str(data), "--weights", str(w), "--out", str(feats),
                 "--device", "cpu"]) == 0  # fmt: skip
    return {"data": data, "other": other, "w": w, "w2": w2, "big": big, "feats": feats}


def test_features_records_its_weights_and_data(env):
    from alexnet.inference import file_digest

    meta = json.loads(env["feats"].with_suffix(".json").read_text())
    assert meta["weights_sha256"] == file_digest(env["w"])
    header = json.loads((env["data"] / "header.json").read_text())
    assert meta["data_fingerprint"] == header["fingerprint"]


@pytest.mark.parametrize("command", ["features", "neighbors"])
def test_weights_needing_224_px_on_32_px_data(env, tmp_path, capsys, command):
    extra = ["--out", tmp_path / "f"] if command == "features" else ["--query", "0"]
    code, _, err = cli(capsys, command, "--data", env["data"], "--weights", env["big"],
                       "--device", "cpu", *extra)  # fmt: skip
    line = one_line(code, err)
    assert "224x224" in line and "32x32" in line and "--resize" in line


def test_neighbors_refuses_other_weights_of_the_same_width(env, capsys):
    code, _, err = cli(capsys, "neighbors", "--features", env["feats"], "--weights", env["w2"],
                       "--query", "0", "--device", "cpu")  # fmt: skip
    assert "other weights" in one_line(code, err)


def test_neighbors_refuses_other_data(env, capsys):
    code, _, err = cli(capsys, "neighbors", "--features", env["feats"], "--data", env["other"],
                       "--query", "0", "--device", "cpu")  # fmt: skip
    assert "another dataset" in one_line(code, err)


def test_neighbors_with_its_own_weights_and_data_works(env, capsys):
    code, out, err = cli(capsys, "neighbors", "--features", env["feats"], "--query", "0",
                         "--k", "3", "--json", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["results"][0]["neighbors"]) == 3


def test_features_progress_never_goes_to_a_redirected_stdout(env, tmp_path, capsys):
    code, out, err = cli(capsys, "features", "--data", env["data"], "--weights", env["w"],
                         "--out", tmp_path / "f", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert "\r" not in out and out.count("\n") == 1 and out.startswith("wrote ")
