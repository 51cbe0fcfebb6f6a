"""Every weights format through every `--weights` command, against its safetensors twin.

Each format under test has a twin: an alexnet `.safetensors` file holding the same tensors and
metadata. A command must run on both and answer on the format exactly what it answers on the
twin (the twin's own answers are checked against independent references in test_use_predict,
test_eval and test_use_retrieval):
- "checkpoint" / "rundir": a short real `alexnet train` run of the `small` model on tiny
  synthetic data: RUN/checkpoint.pt and RUN itself; the twin is RUN/weights.safetensors;
- "torchvision": a `.pth` of `torchvision.models.alexnet(num_classes=4)`'s random state_dict;
- "two-device": a random `paper` model written in the two-device tower layout.
Big twins are written with `safetensors.torch.save_file` from the documented format, not
through `alexnet.weights`.
The big models' (61M parameters) slower commands are marked slow.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from train_helpers import write_packed

from alexnet.cli import main
from alexnet.weights import load
from alexnet.weights.safetensors_io import paper_to_two_device

BIG_CLASSES = ["0", "1", "2", "3"]  # the names torchvision weights of 4 classes get
TV_PREPROCESS = {
    "crop_size": 224,
    "image_size": 256,
    "resize": None,
    "out_channels": 3,
    "normalize": "channel",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "resize_rule": "torchvision",
}


def write_twin(path: Path, tensors: dict, model_config: dict, classes, preprocess, **kw) -> Path:
    """An alexnet safetensors file written by hand from the documented format."""
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if kw.get("mean_image") is not None:
        tensors["preprocess.mean_image"] = kw["mean_image"].float().contiguous()
    meta = {
        "format": "alexnet-weights/1",
        "model": json.dumps(model_config),
        "classes": json.dumps(list(classes)),
        "preprocess": json.dumps(preprocess),
        "extra": json.dumps(kw.get("extra", {})),
    }
    save_file(tensors, str(path), metadata=meta)
    return path


def cli(capsys, *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def queries(data: Path, root: Path) -> list[Path]:
    """Three validation images of `data` as PNG files."""
    images = np.load(data / "val_images.npy")
    paths = []
    for i in range(3):
        paths.append(root / f"q{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    return paths


def small_run(root: Path) -> dict[str, Any]:
    data = write_packed(root / "small-data", n_train=64, n_val=20, size=28)
    run = root / "run"
    code = main(
        ["train", "--data", str(data), "--output-dir", str(run), "--recipe", "fast",
         "--model", "small", "--model-options", '{"widths": [8, 8, 16]}', "--epochs", "1",
         "--batch-size", "16", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    ckpt_path = run / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert {"classes", "preprocess", "mean_image"} <= set(ckpt)  # the engine stores them
    weights = run / "weights.safetensors"
    return {"data": data, "run": run, "twin": weights, "queries": queries(data, root),
            "formats": {"checkpoint": ckpt_path, "rundir": run}}  # fmt: skip


def big_data(root: Path) -> Path:
    data = write_packed(root / "big-data", n_train=6, n_val=4, size=224)
    header = json.loads((data / "header.json").read_text())
    header["classes"] = BIG_CLASSES
    (data / "header.json").write_text(json.dumps(header))
    return data


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("formats")
    small = small_run(root)
    data = big_data(root)
    torch.manual_seed(0)
    tv_state = torchvision.models.alexnet(num_classes=4).state_dict()
    with torch.no_grad():  # spread the logits so that the answers are not all ties
        tv_state["classifier.6.weight"].mul_(300.0)
    pth = root / "alexnet-tv.pth"
    torch.save(tv_state, pth)
    tv_config = {"name": "torchvision", "options": {"num_classes": 4, "dropout": 0.5}}
    tv_twin = write_twin(root / "tv.safetensors", tv_state, tv_config, BIG_CLASSES, TV_PREPROCESS)

    paper_state = {k: v.clone() for k, v in _paper_state().items()}
    mean = torch.from_numpy(np.load(data / "stats.npz")["mean_image"]).float()
    pre = {"crop_size": 224, "image_size": 224, "resize": None, "out_channels": 3,
           "normalize": "mean_image"}  # fmt: skip
    cfg = {"name": "paper", "options": {"num_classes": 4}}
    paper_twin = write_twin(root / "paper.safetensors", paper_state, cfg, BIG_CLASSES, pre,
                            mean_image=mean)  # fmt: skip
    two = write_twin(root / "two.safetensors", paper_to_two_device(paper_state, 4), cfg,
                     BIG_CLASSES, pre, mean_image=mean, extra={"layout": "two-device"})  # fmt: skip
    big = {"data": data, "queries": queries(data, root), "run": None}
    yield {
        "root": root,
        "checkpoint": {**small, "path": small["formats"]["checkpoint"]},
        "rundir": {**small, "path": small["formats"]["rundir"]},
        "torchvision": {**big, "path": pth, "twin": tv_twin, "run": small["run"]},
        "two-device": {**big, "path": two, "twin": paper_twin, "run": small["run"]},
    }
    shutil.rmtree(root, ignore_errors=True)  # five full-size files: free the disk for the rest


def _paper_state() -> dict:
    from alexnet.models.registry import get_model

    torch.manual_seed(1)
    return get_model("paper", num_classes=4).state_dict()


# ------------------------------------------------------------------ answers of each command
def answer(command: str, case: dict, weights: Path, work: Path, capsys) -> Any:
    work.mkdir(parents=True, exist_ok=True)
    data = case["data"]
    if command == "eval":
        code, out, err = cli(capsys, "eval", "--data", data, "--weights", weights, "--json",
                             "--crops", "2", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        return json.loads(out)
    if command == "predict":
        code, out, err = cli(capsys, "predict", "--weights", weights, *case["queries"],
                             "--topk", "3", "--json", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        result = json.loads(out)
        result.pop("weights")
        return result
    if command == "features":
        code, _, err = cli(capsys, "features", "--data", data, "--weights", weights, "--out",
                           work / "f", "--split", "val", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        meta = json.loads((work / "f.json").read_text())
        meta.pop("weights")
        meta.pop("weights_sha256")  # provenance: the bytes of the file given, not its model
        return {"feats": np.load(work / "f.npy"), "meta": meta}
    if command == "neighbors":
        code, out, err = cli(capsys, "neighbors", "--data", data, "--weights", weights,
                             "--split", "val", "--query", "0", "1", str(case["queries"][2]),
                             "--k", "3", "--json", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        return json.loads(out)
    if command == "kernels":
        code, _, err = cli(capsys, "kernels", "--weights", weights, "--out", work / "k.png")
        assert code == 0, err
        return np.asarray(Image.open(work / "k.png"))
    if command == "export":
        pytest.importorskip("onnxruntime", reason="ONNX check needs onnxruntime")
        pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
        return export_answer(weights, work, capsys)
    if command == "report":
        return report_answer(case, weights, work, capsys)
    raise AssertionError(command)


def export_answer(weights: Path, work: Path, capsys) -> np.ndarray:
    import onnxruntime as ort

    code, out, err = cli(capsys, "export", "--weights", weights, "--onnx", work / "m.onnx",
                         "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["onnx"]["checked"] is True
    session = ort.InferenceSession(str(work / "m.onnx"), providers=["CPUExecutionProvider"])
    shape = [int(s) if isinstance(s, int) else 2 for s in session.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return session.run(None, {"images": x})[0]


def report_answer(case: dict, weights: Path, work: Path, capsys) -> dict:
    run = work / "report-of"
    run.mkdir()
    shutil.copy(case["run"] / "metrics.jsonl", run / "metrics.jsonl")
    code, _, err = cli(capsys, "report", run, "--data", case["data"], "--weights", weights,
                       "--queries", "2", "--k", "2", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    md = (run / "report.md").read_text().replace(f"`{Path(weights).name}`", "`WEIGHTS`", 1)
    pictures = {n: np.asarray(Image.open(run / n)) for n in ("kernels.png", "predictions.png")}
    return {"md": md, **pictures}


def assert_same(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, np.ndarray):
        assert got.shape == want.shape, where
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=where)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), where
    else:
        assert got == want, where


SMALL = ["checkpoint", "rundir"]
BIG = ["torchvision", "two-device"]
COMMANDS = ["eval", "predict", "features", "neighbors", "kernels", "export", "report"]
SLOW_BIG = set(COMMANDS) - {"predict"}  # 61M-parameter models: seconds per command
CASES = [
    pytest.param(fmt, cmd, marks=[pytest.mark.slow] if fmt in BIG and cmd in SLOW_BIG else [])
    for fmt in SMALL + BIG
    for cmd in COMMANDS
]


@pytest.mark.parametrize("fmt, command", CASES)
def test_command_answers_like_the_safetensors_twin(setup, fmt, command, capsys, tmp_path):
    case = setup[fmt]
    got = answer(command, case, case["path"], tmp_path / "format", capsys)
    want = answer(command, case, case["twin"], tmp_path / "twin", capsys)
    assert_same(got, want, f"{fmt} {command}")


@pytest.mark.parametrize("fmt", SMALL + BIG)
def test_every_format_loads_to_the_twins_logits(setup, fmt):
    case = setup[fmt]
    model, meta = load(case["path"])
    twin, twin_meta = load(case["twin"])
    assert meta.format == ("checkpoint" if fmt == "rundir" else fmt)
    assert twin_meta.format == "alexnet"
    assert meta.classes == twin_meta.classes and meta.preprocess == twin_meta.preprocess
    assert meta.model_config == twin_meta.model_config
    size, channels = int(model.input_size), int(model.in_channels)
    x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, ref = model(x), twin(x)
    assert logits.std() > 0  # a real comparison, not two constant outputs
    torch.testing.assert_close(logits, ref, rtol=0, atol=0)
