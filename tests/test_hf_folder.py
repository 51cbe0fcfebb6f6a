"""Hugging Face-style folders: `alexnet export --hf DIR`, `alexnet.from_pretrained(DIR)`,
`--weights DIR`, and ids "user/name" that cannot be downloaded here. References: the model
that wrote the weights, the eval.json numbers written by the test, predict on the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import cli
from PIL import Image

import alexnet
from alexnet.errors import UserError
from alexnet.weights import load, save


@pytest.fixture
def run_dir(tmp_path) -> tuple[Path, torch.nn.Module, torch.Tensor]:
    """A run directory as `alexnet train` leaves it: weights (a `small` model normalised by a
    mean image, paper §2), eval.json and config.json."""
    torch.manual_seed(0)
    model = alexnet.get_model("small", num_classes=3).eval()
    mean = torch.rand(32, 32, 3)
    run = tmp_path / "run"
    run.mkdir()
    save(
        run / "weights.safetensors",
        model.state_dict(),
        model_config=model.config,
        classes=["ant", "bee", "cat"],
        preprocess={"crop_size": 32, "normalize": "mean_image"},
        mean_image=mean,
        extra={"recipe": "cifar", "epoch": 7},
    )
    final = {"images": 120, "crops": 1, "top1_error": 0.3125, "top5_error": 0.0, "loss": 0.9}
    (run / "eval.json").write_text(json.dumps(final))
    (run / "config.json").write_text(json.dumps({"config": {"data": "/data/cifar-packed"}}))
    return run, model, mean


def test_export_hf_then_from_pretrained_is_bitwise(run_dir, tmp_path, capsys):
    run, model, mean = run_dir
    folder = tmp_path / "hf"
    code, out, err = cli(
        capsys, "export", "--weights", run / "weights.safetensors", "--hf", folder, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["hf"]["eval"] == str(run / "eval.json")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "small" and config["num_classes"] == 3
    assert config["label_names"] == ["ant", "bee", "cat"] and config["input_size"] == [3, 32, 32]
    assert config["preprocess"]["normalize"] == "mean_image"
    card = (folder / "README.md").read_text()
    assert "31.25 %" in card and "/data/cifar-packed" in card and "`cifar`" in card
    x = torch.randn(4, 3, 32, 32)
    again = alexnet.from_pretrained(str(folder))
    assert not again.training
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    _, meta = load(folder)
    assert meta.classes == ["ant", "bee", "cat"] and torch.equal(meta.mean_image, mean)


def test_predict_on_the_folder_answers_as_the_file(run_dir, tmp_path, capsys):
    run, _, _ = run_dir
    folder = tmp_path / "hf"
    assert cli(capsys, "export", "--weights", run / "weights.safetensors", "--hf", folder)[0] == 0
    rng = np.random.default_rng(0)
    image = tmp_path / "i.png"
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    answers = []
    for weights in (run / "weights.safetensors", folder):
        code, out, err = cli(capsys, "predict", "--weights", weights, "--json", image)
        assert code == 0, err
        answer = json.loads(out)
        assert answer.pop("weights") == str(weights)
        answers.append(answer)
    assert answers[0] == answers[1] and answers[0]["predictions"][0]["top"]


def test_damaged_folder_is_one_line(run_dir, tmp_path):
    run, _, _ = run_dir
    folder = tmp_path / "hf"
    alexnet.weights.write_folder(folder, *load(run / "weights.safetensors"))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"config.json: not readable JSON") as exc:
        load(folder)
    assert "\n" not in str(exc.value)
    (folder / "config.json").unlink()
    with pytest.raises(UserError, match="a folder with model.safetensors but no config.json"):
        load(folder)


def test_id_without_huggingface_hub_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails: not installed
    with pytest.raises(UserError) as exc:
        alexnet.from_pretrained("someone/alexnet-cifar")
    message = str(exc.value)
    assert "\n" not in message and "pip install 'alexnet[hub]'" in message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "HF_ENDPOINT"])
def test_id_offline_is_one_line(tmp_path, how):
    """With huggingface_hub installed (the `hub` extra): offline mode, and an endpoint whose
    port this test holds without listening (refused at once), each fail in one line."""
    pytest.importorskip("huggingface_hub", reason="the hub extra is not installed")
    import socket

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if how == "HF_HUB_OFFLINE":
            env["HF_HUB_OFFLINE"] = "1"
        else:
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{s.getsockname()[1]}"
        code = "import alexnet; alexnet.from_pretrained('someone/alexnet-cifar')"
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("alexnet.errors.UserError: someone/alexnet-cifar: cannot download")


def test_alexnet_weights_describes_a_folder(run_dir, tmp_path, capsys):
    run, _, _ = run_dir
    folder = tmp_path / "hf"
    alexnet.weights.write_folder(folder, *load(run / "weights.safetensors"))
    code, out, err = cli(capsys, "weights", folder, "--json")
    assert code == 0, err
    (row,) = json.loads(out)["files"]
    assert (row["name"], row["model"], row["classes"]) == (str(folder), "small", "3")
