"""`alexnet export --torch-export OUT.pt2`: a torch.export program with a dynamic batch, the LRN
and pooling as plain torch ops, that loads where this package cannot be imported. Reference:
the model itself (its C kernels) on the same inputs, within PT2_ATOL + PT2_RTOL * |logit|."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alexnet
from alexnet.cli import main
from alexnet.export import PT2_ATOL, PT2_META, PT2_RTOL, export_program
from alexnet.weights import save

# the paper's two-tower network with its LRN (§3.3), narrow so the test stays small
PAPER = {"widths": [16, 32, 32, 32, 32], "num_classes": 5}
# Caffe's bvlc_alexnet reading of it: 227 px, k=1, alpha / 5, the window across the towers
CAFFE = {
    **PAPER,
    "input_size": 227,
    "lrn_k": 1.0,
    "lrn_alpha_convention": "per_size",
    "lrn_scope": "all",
}


def close(got: torch.Tensor, ref: torch.Tensor) -> bool:
    return got.shape == ref.shape and bool(
        ((got - ref).abs() <= PT2_ATOL + PT2_RTOL * ref.abs()).all()
    )


def weights_file(path: Path, name: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    model = alexnet.get_model(name, **options).eval()
    classes = [f"c{i}" for i in range(model.num_classes)]
    pre = {"crop_size": model.input_size, "normalize": "none"}
    save(path, model.state_dict(), model_config=model.config, classes=classes, preprocess=pre)
    return model


@pytest.mark.parametrize(
    "name, options",
    [
        ("paper", PAPER),
        ("paper", CAFFE),
        ("seed", {"num_classes": 4}),
        ("torchvision", {"num_classes": 4}),
        ("small", {}),
    ],
)
def test_every_model_exports_with_plain_ops_and_a_dynamic_batch(name, options):
    torch.manual_seed(0)
    model = alexnet.get_model(name, **options).eval()
    program = export_program(model)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any(t.startswith("alexnet.") for t in targets)
    run = program.module()
    size = model.input_size
    for batch in (1, 3):
        x = torch.randn(batch, model.in_channels, size, size)
        with torch.no_grad():
            assert close(run(x), model(x))


@pytest.mark.timeout(120)
def test_pt2_loads_without_alexnet_importable(tmp_path, capsys):
    # `small` has the LRN and the C max-pooling too (paper §3.3-3.4), in a 1 MB file
    model = weights_file(tmp_path / "w.safetensors", "small", num_classes=5)
    out = tmp_path / "small.pt2"
    code = main(
        [
            "export",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--torch-export",
            str(out),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)["torch_export"]
    assert code == 0 and result["checked"] and result["lrn"] == "decomposed into torch ops"
    extra = {PT2_META: ""}
    torch.export.load(str(out), extra_files=extra)
    assert json.loads(extra[PT2_META])["classes"] == ["c0", "c1", "c2", "c3", "c4"]

    # -I: no PYTHONPATH, no user site, no cwd on sys.path; -S: no site, so no .pth file runs
    # (the editable install's .pth is how a venv finds alexnet); torch's own folder only
    site = str(Path(torch.__file__).resolve().parents[1])
    script = (
        "import importlib.util, sys; sys.path.append(sys.argv[1]); "
        "assert importlib.util.find_spec('alexnet') is None, 'alexnet importable'; "
        "import torch; m = torch.export.load(sys.argv[2]).module(); "
        "xs = torch.load(sys.argv[3], weights_only=True); "
        "torch.save([m(x) for x in xs], sys.argv[4])"
    )
    xs = [torch.randn(b, 3, 32, 32) for b in (1, 4)]
    torch.save(xs, tmp_path / "xs.pt")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, site, str(out), "xs.pt", "ys.pt"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ys = torch.load(tmp_path / "ys.pt", weights_only=True)
    with torch.no_grad():
        assert all(close(y, model(x)) for x, y in zip(xs, ys, strict=True))


@pytest.mark.slow  # ~12 s each here: 240 MB ONNX files (fc6); small and paper: test_use_retrieval
@pytest.mark.parametrize("name", ["seed", "torchvision"])
def test_onnx_export_checked_in_onnxruntime(tmp_path, name):
    ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    from alexnet.export import export_onnx

    model = weights_file(tmp_path / "w.safetensors", name, num_classes=4)
    result = export_onnx(tmp_path / "w.safetensors", tmp_path / "m.onnx")
    assert result["checked"] is True
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.randn(batch, 3, 224, 224)
        got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        with torch.no_grad():
            assert close(got, model(x))
