"""features / neighbors / kernels / plot / report / ONNX, on a tiny synthetic run.

One short real training run (synthetic packed data, `small` model, 1 epoch) is shared by the
module; references are numpy brute force, PIL pixel counts and onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import get_model
from alexnet.cli import main
from alexnet.inference import load_features, nearest


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("use")
    data, run_dir = root / "syn", root / "run"
    args = ["prepare", "synthetic", data, "--source", "synthetic", "--classes", "4",
            "--count", "192", "--image-size", "32", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    args = ["train", "--data", data, "--model", "small", "--recipe", "fast", "--epochs", "2",
            "--batch-size", "64", "--output-dir", run_dir, "--device", "cpu"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return {"root": root, "data": data, "run": run_dir, "weights": run_dir / "weights.safetensors"}


def brute_force(q: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((q[:, None, :].astype(np.float64) - base[None].astype(np.float64)) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("chunk", [7, 100, 10_000])
def test_nearest_matches_numpy_brute_force(chunk):
    rng = np.random.default_rng(chunk)
    base = rng.normal(size=(257, 48)).astype(np.float32) * rng.uniform(0.5, 3, (257, 1))
    q = rng.normal(size=(9, 48)).astype(np.float32)
    q[0] = base[17]  # an exact hit: distance 0 (the clamp keeps it from going negative)
    dist, idx = nearest(q, base, 6, chunk=chunk)
    ref_d, ref_i = brute_force(q, base, 6)
    np.testing.assert_array_equal(idx, ref_i)
    # the expansion loses ~float32 eps * ||x||^2 in the squared distance (cancellation)
    scale = float((base.astype(np.float64) ** 2).sum(1).max())
    np.testing.assert_allclose(dist**2, ref_d**2, rtol=1e-5, atol=8 * 1.2e-7 * scale)
    assert idx[0, 0] == 17 and dist[0, 0] ** 2 <= 8 * 1.2e-7 * scale
    assert nearest(q, base, 1000)[1].shape == (9, 257)  # k capped at N


def test_features_file_and_neighbors_cli(run, capsys):
    feats_out = run["root"] / "feats"
    code, out, err = cli(capsys, "features", "--data", run["data"], "--weights", run["weights"],
                         "--split", "train", "--out", feats_out, "--device", "cpu")  # fmt: skip
    assert code == 0, err
    feats, meta = load_features(feats_out)
    assert feats.dtype == np.float32 and feats.shape[0] == 192 == meta["count"]
    assert meta["indices"] == list(range(192)) and meta["split"] == "train"
    assert meta["dim"] == feats.shape[1] and meta["model"]["name"] == "small"
    # features of the first images, recomputed by hand: the model on normalized centre crops
    from alexnet.data.packed import open_dataset
    from alexnet.weights import load

    ds = open_dataset(run["data"], "train")
    model, wmeta = load(run["weights"])
    pre = wmeta.preprocess
    x = torch.from_numpy(np.array(ds.images[:5])).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre.mean)[:, None, None]) / torch.tensor(pre.std)[:, None, None]
    if pre.out_channels == 1:
        x = x.mean(1, keepdim=True)
    with torch.no_grad():
        ref = model.forward_penultimate(x).numpy()
    np.testing.assert_allclose(feats[:5], ref, rtol=1e-4, atol=1e-4)

    grid = run["root"] / "nb.png"
    code, out, err = cli(capsys, "neighbors", "--features", feats_out, "--query", "0", "5",
                         "--k", "4", "--json", "--out", grid, "--device", "cpu")  # fmt: skip
    assert code == 0, err
    res = json.loads(out)["results"]
    val = open_dataset(run["data"], "val")
    mean, std = torch.tensor(pre.mean)[:, None, None], torch.tensor(pre.std)[:, None, None]
    with torch.no_grad():
        xq = torch.from_numpy(np.array(val.images[[0, 5]])).permute(0, 3, 1, 2).float() / 255
        xq = (xq - mean) / std
        if pre.out_channels == 1:
            xq = xq.mean(1, keepdim=True)
        qf = model.forward_penultimate(xq).numpy()
    ref_d, ref_i = brute_force(qf, feats, 4)
    for r, di, ii in zip(res, ref_d, ref_i):
        assert [n["index"] for n in r["neighbors"]] == ii.tolist()
        got = [n["distance"] for n in r["neighbors"]]
        np.testing.assert_allclose(got, di, rtol=1e-3, atol=1e-3)
        assert all(n["label"] == ds.classes[ds.labels[n["index"]]] for n in r["neighbors"])
    img = Image.open(grid)
    assert img.size == (5 * 110 + 110 // 4, 2 * 110 + 60)
    assert np.asarray(img.convert("L")).std() > 10


def test_neighbors_bad_inputs(run, capsys, tmp_path):
    code, _, err = cli(capsys, "neighbors", "--data", run["data"], "--weights", run["weights"],
                       "--query", "100000", "--device", "cpu")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "100000" in err and "out of range" in err and "0..37" in err  # val: 192 // 5 = 38
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, err = cli(capsys, "neighbors", "--data", run["data"], "--weights", run["weights"],
                         "--query", bad, "1", "--k", "2", "--json", "--device", "cpu")  # fmt: skip
    assert code == 1 and str(bad) in err
    assert [r["query"].split(" ")[0] for r in json.loads(out)["results"]] == ["val:1"]
    code, _, err = cli(capsys, "neighbors", "--features", tmp_path / "none", "--query", "0")
    assert code == 2 and "none" in err


def png_ok(path: Path, size: tuple[int, int]) -> np.ndarray:
    img = Image.open(path)
    assert img.size == size
    arr = np.asarray(img.convert("RGB")).astype(np.float64)
    assert arr.std() > 5 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 20  # not blank
    return arr


@pytest.mark.parametrize(
    "name, options",
    [("paper", {"num_classes": 8}), ("small", {"in_channels": 1, "input_size": 28})],
)
def test_kernel_grid(tmp_path, name, options):
    from alexnet.viz import kernel_grid, tile_kernels

    torch.manual_seed(0)
    model = get_model(name, **options)
    w, h = kernel_grid(model, tmp_path / "k.png", width_px=640)
    png_ok(tmp_path / "k.png", (w, h))
    assert w == 640
    # each kernel min-max normalized on its own: every tile spans exactly [0, 1]
    weight = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach()
    tile = tile_kernels(weight[:3], columns=3, gap=1)
    k = weight.shape[-1]
    for i in range(3):
        part = tile[:, i * (k + 1) : i * (k + 1) + k]
        assert part.min() == 0.0 and part.max() == 1.0
        if weight.shape[1] == 1:  # gray kernels: equal channels
            assert np.array_equal(part[..., 0], part[..., 2])


def test_kernels_and_plot_cli(run, capsys, tmp_path):
    code, out, _ = cli(capsys, "kernels", "--weights", run["weights"], "--out", tmp_path / "k.png")
    assert code == 0 and "k.png" in out
    w, h = Image.open(tmp_path / "k.png").size
    png_ok(tmp_path / "k.png", (800, h))
    # two runs overlaid: the second one a copy with shifted numbers
    other = tmp_path / "other"
    other.mkdir()
    recs = [json.loads(s) for s in (run["run"] / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r["train_loss"] *= 1.5
        r["val_top1_error"] = min(1.0, r["val_top1_error"] + 0.2)
    (other / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    code, _, err = cli(capsys, "plot", run["run"], other, "--out", tmp_path / "c.png")
    assert code == 0, err
    png_ok(tmp_path / "c.png", (1000, 400))
    code, _, err = cli(capsys, "plot", tmp_path / "missing", "--out", tmp_path / "d.png")
    assert code == 2 and "missing" in err and not (tmp_path / "d.png").exists()


def test_report(run, capsys):
    code, out, err = cli(capsys, "report", run["run"], "--data", run["data"], "--device", "cpu")
    assert code == 0, err
    md = (run["run"] / "report.md").read_text()
    for name in ("kernels.png", "curves.png", "neighbours.png", "predictions.png"):
        assert f"]({name})" in md
        png_ok(run["run"] / name, Image.open(run["run"] / name).size)
    epochs = [json.loads(s) for s in (run["run"] / "metrics.jsonl").read_text().splitlines()]
    last = epochs[-1]
    assert f"| {last['epoch']} |" in md and f"{100 * last['val_top1_error']:.2f} %" in md
    assert "eval.json" in md


@pytest.mark.parametrize("name", ["small", "paper"])
def test_onnx_export_matches_pytorch(tmp_path, capsys, name):
    ort = pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    from alexnet.weights import save as save_weights

    torch.manual_seed(0)
    model = get_model(name, num_classes=5).eval()  # small: 3-channel 32 px with LRN
    weights = tmp_path / "w.safetensors"
    pre = {"crop_size": model.input_size, "resize": None, "out_channels": 3, "normalize": "none"}
    save_weights(weights, model.state_dict(), model_config=model.config,
                 classes=list("abcde"), preprocess=pre)  # fmt: skip
    onnx_path = tmp_path / "m.onnx"
    code, out, err = cli(capsys, "export", "--weights", weights, "--onnx", onnx_path, "--json")
    assert code == 0, err
    assert json.loads(out)["onnx"]["checked"] is True
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):  # dynamic batch size
        x = torch.randn(batch, 3, model.input_size, model.input_size) * 2
        got = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        assert got.shape == (batch, 5)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
