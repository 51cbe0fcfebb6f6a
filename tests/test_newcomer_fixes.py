"""What a newcomer met first: `alexnet weights` reads every FILE by its content and goes on past
a bad one; `export --two-device` takes a run; a missing optional extra is one line; no top-5
error with 5 classes or fewer; the served feature layer has the model's own name; a
`Predictor` on a missing device is one UserError; the README's model snippet runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import get_model
from alexnet.checkpoint import Checkpoint, save_checkpoint
from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.evaluate import evaluate
from alexnet.inference import Predictor
from alexnet.models.summary import layer_table
from alexnet.weights import load, save
from alexnet.weights.safetensors_io import read_safetensors

ROOT = Path(__file__).resolve().parents[1]
FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]  # fmt: skip
GREY_28 = {"crop_size": 28, "resize": None, "out_channels": 1, "normalize": "none"}


def _small(tmp_path: Path, **options) -> tuple[torch.nn.Module, Path]:
    """A `small` model for 28 px grey images and its weights file."""
    torch.manual_seed(0)
    model = get_model("small", num_classes=10, in_channels=1, input_size=28, **options).eval()
    path = tmp_path / "small.safetensors"
    save(path, model.state_dict(), model_config=model.config, classes=FASHION, preprocess=GREY_28)
    return model, path


def _checkpoint(run: Path, model: torch.nn.Module, classes: list[str], pre: dict) -> Path:
    """RUN/checkpoint.pt of `model` as a training run writes it (epoch 3)."""
    run.mkdir()
    ckpt = Checkpoint(model_config=model.config, model=model.state_dict(), classes=classes,
                      preprocess=pre, epoch=3)  # fmt: skip
    save_checkpoint(run / "checkpoint.pt", ckpt)
    return run / "checkpoint.pt"


def test_weights_reads_each_file_by_its_content_and_goes_on_past_bad_ones(tmp_path, capsys):
    model, weights = _small(tmp_path)
    ckpt = _checkpoint(tmp_path / "run", model, FASHION, GREY_28)
    dict_pt = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(2)}, dict_pt)
    # a torchvision-format state_dict under the catalog's file name, but not its content
    named = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"classifier.6.weight": torch.zeros(3, 8)}, named)
    jpeg, npy = tmp_path / "photo.jpg", tmp_path / "feats.npy"
    Image.new("RGB", (8, 8)).save(jpeg)
    np.save(npy, np.zeros(3))
    args = [weights, ckpt, ckpt.parent, dict_pt, named, jpeg, npy]
    assert main(["weights", "--json", *map(str, args)]) == 2
    said = capsys.readouterr()
    rows = {r["name"]: r for r in json.loads(said.out)["files"]}
    assert list(rows) == [str(p) for p in (weights, ckpt, ckpt.parent, named)]
    assert (rows[str(weights)]["model"], rows[str(weights)]["classes"]) == ("small", "10")
    for run in (ckpt, ckpt.parent):
        row = rows[str(run)]
        assert (row["format"], row["model"], row["classes"], row["input_size"]) == (
            "checkpoint", "small", "10", 28)  # fmt: skip
        assert "epoch 3" in row["source"]
    tv = rows[str(named)]
    assert (tv["model"], tv["classes"], tv["top1_err"], tv["top5_err"]) == (
        "torchvision", "3", None, None)  # fmt: skip
    lines = said.err.strip().splitlines()
    assert len(lines) == 3  # one line per unreadable file
    for path, what in ((dict_pt, "not torchvision AlexNet weights"), (jpeg, "a JPEG image, "
                       "not weights"), (npy, "a NumPy array file, not weights")):  # fmt: skip
        (line,) = [x for x in lines if f" {path}: " in x]
        assert what in line
    # the table goes on past a bad file too
    assert main(["weights", str(jpeg), str(weights)]) == 2
    said = capsys.readouterr()
    assert str(weights) in said.out and "a JPEG image" in said.err


def test_export_two_device_takes_a_run_directory_and_a_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    model = get_model("paper", num_classes=4, widths=(16, 32, 32, 32, 32)).eval()
    pre = {"crop_size": 224, "resize": None, "out_channels": 3, "normalize": "none"}
    ckpt = _checkpoint(tmp_path / "run", model, list("abcd"), pre)
    two, paper = tmp_path / "two.safetensors", tmp_path / "paper.safetensors"
    assert main(["export", "--weights", str(ckpt.parent), "--two-device", str(two)]) == 0
    assert main(["export", "--weights", str(ckpt), "--paper", str(paper)]) == 0
    capsys.readouterr()
    tensors, meta = read_safetensors(two)
    assert meta.format == "two-device" and any(k.startswith("tower_b.") for k in tensors)
    back, _ = read_safetensors(paper)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    loaded, _ = load(two)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_export_onnx_without_onnx_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    _, weights = _small(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    out = tmp_path / "m.onnx"
    assert main(["export", "--weights", str(weights), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "onnx" in err and "pip install 'alexnet[export]'" in err
    assert not out.exists()


def test_serve_without_python_multipart_is_one_line_before_loading(tmp_path):
    """Without python-multipart an upload would be a 500; the command refuses at once, even
    before reading --weights (here a file that does not exist)."""
    code = (
        "import sys\n"
        "sys.modules['python_multipart'] = sys.modules['multipart'] = None\n"
        "from alexnet.cli import main\n"
        f"sys.exit(main(['serve', '--weights', {str(tmp_path / 'none.safetensors')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "\n" not in err and "python-multipart" in err and "alexnet[serve]" in err


@pytest.mark.parametrize("k", [2, 5, 6])
def test_top5_error_only_with_more_than_five_classes(k):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, k)
    x, labels = torch.randn(40, 4), torch.randint(0, k, (40,))
    got = evaluate(model, [(x, labels)], lambda t: t, crops=1, num_classes=k)
    if k <= 5:
        assert got["top5_error"] is None
        return
    with torch.no_grad():
        top = model(x).topk(5, dim=1).indices
    missed = ~(top == labels[:, None]).any(dim=1)
    assert got["top5_error"] == pytest.approx(missed.double().mean().item(), abs=1e-12)


@pytest.mark.parametrize("hidden", [0, 64])
def test_served_feature_layer_is_named_as_the_summary_names_it(tmp_path, hidden):
    from alexnet.serve.answers import Engine

    model, weights = _small(tmp_path, hidden=hidden)
    info = Engine(weights).info()
    layer = info["feature_layer"]
    names = [row.name for row in layer_table(model)]
    assert layer.split()[0] in names and "fc7" not in layer
    assert layer.split()[0] == ("fc4" if hidden else names[-2])  # the layer before the last
    feats = Predictor(weights).features(np.zeros((1, 28, 28, 3), np.uint8))
    assert feats.shape[1] == info["feature_dim"] == (hidden or model.penultimate_dim)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_predictor_on_a_missing_device_is_one_user_error(tmp_path):
    _, weights = _small(tmp_path)
    with pytest.raises(UserError, match="^device cuda: CUDA is not available"):
        Predictor(weights, device="cuda")


def test_readme_model_snippet_runs_as_written():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    models = text.split("## In Python", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", models, re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    n = scope["images"].shape[0]
    assert scope["logits"].shape == (n, 1000) and scope["fc7"].shape == (n, 4096)
