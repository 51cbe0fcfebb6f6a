"""ONNX models as --weights (fp32 and int8) and `export --int8`, on a tiny `small` model.

References are independent of the ONNX path: the torch model called directly (fp32), and
`alexnet eval` / `predict` of the .safetensors the file came from. The data are real photos
(scikit-image's samples, crops of them packed as an image folder at 32 px).

Quantization tolerance (stated, not measured on one CPU): int8 logits are within
INT8_TOL * max |fp32 logit| of the fp32 model's on every image, and the top-1 class agrees on
at least 90 % of them (onnxruntime's int8 ranges come from 8-bit activations and 7-bit
weights: a relative error of a few per cent per layer).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.models.registry import get_model
from alexnet.weights import save

pytest.importorskip("onnxruntime", reason="ONNX models need onnxruntime")
pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

INT8_TOL = 0.05  # of the largest |fp32 logit| (measured here: 0.005)
MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.24, 0.26]
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Photos (files), a packed dataset of crops of them, a `small` model trained a few
    steps on it (.safetensors) and its fp32 and int8 ONNX exports."""
    root = tmp_path_factory.mktemp("int8")
    src, rng = root / "src", np.random.default_rng(0)
    files = []
    for name in PHOTOS:
        img = getattr(skdata, name)()
        (src / name).mkdir(parents=True)
        h, w = img.shape[:2]
        for i in range(10):  # crops of 40..90 % of the shorter side
            s = int(min(h, w) * rng.uniform(0.4, 0.9))
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            Image.fromarray(img[y : y + s, x : x + s]).save(src / name / f"{i}.png")
        files.append(root / f"{name}.png")
        Image.fromarray(img).save(files[-1])
    data = root / "data"
    args = ["prepare", src, data, "--size", "32", "--val-fraction", "0.2", "--workers",
            "1", "--no-progress"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    from alexnet.data.packed import open_dataset

    ds = open_dataset(data, "train")
    torch.manual_seed(0)
    model = get_model("small", num_classes=4, in_channels=3, input_size=32)
    x = torch.from_numpy(np.array(ds.images)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    y = torch.tensor(np.array(ds.labels), dtype=torch.int64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(8):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    weights = root / "small.safetensors"
    pre = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "channel",
           "mean": MEAN, "std": STD}  # fmt: skip
    save(weights, model.state_dict(), model_config=model.config, classes=list(ds.classes),
         preprocess=pre)  # fmt: skip
    fp32, int8 = root / "m.onnx", root / "m.int8.onnx"
    assert main(["export", "--weights", str(weights), "--onnx", str(fp32)]) == 0
    args = ["export", "--weights", weights, "--onnx", int8, "--int8", "--calibration-data",
            data, "--calibration-images", "1000"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return {"root": root, "data": data, "weights": weights, "fp32": fp32, "int8": int8,
            "files": files, "model": model}  # fmt: skip


def test_int8_logits_near_fp32_on_photos(setup):
    from alexnet.data.packed import open_dataset
    from alexnet.inference import Predictor, read_image

    model = setup["model"]
    q = Predictor(setup["int8"])
    assert q.meta.extra["int8"] is True and q.classes == list(open_dataset(setup["data"]).classes)
    images = [read_image(str(f), 32) for f in setup["files"]]
    images += list(np.array(open_dataset(setup["data"], "val").images))
    batch = np.stack(images)
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        ref = model(x).numpy()
    got = q.backend(q.inputs(batch)).numpy()
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= INT8_TOL * scale
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert not np.allclose(got, ref, atol=1e-6)  # really quantized, not the fp32 graph
    with torch.no_grad():  # features (fc7 output): the same tolerance against torch's
        ref_f = model.forward_penultimate(x).numpy()
    got_f = q.features(batch).numpy()
    assert got_f.shape == ref_f.shape
    assert np.abs(got_f - ref_f).max() <= INT8_TOL * np.abs(ref_f).max()


def test_fp32_onnx_features_and_metadata(setup):
    from alexnet.export import OnnxModel
    from alexnet.inference import Predictor
    from alexnet.weights import load

    m = OnnxModel(setup["fp32"])
    _, meta = load(setup["weights"])
    assert m.meta.classes == meta.classes and m.meta.preprocess == meta.preprocess
    assert m.meta.model_config == meta.model_config and m.int8 is False
    imgs = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((32, 32))) for f in setup["files"]]
    )
    a, b = Predictor(setup["fp32"]), Predictor(setup["weights"])
    np.testing.assert_allclose(a.features(imgs), b.features(imgs), rtol=1e-4, atol=1e-4)


def test_eval_of_onnx_equals_eval_of_weights(setup, capsys):
    res = {}
    for key in ("weights", "fp32", "int8"):
        code, out, err = cli(capsys, "eval", "--data", setup["data"], "--weights", setup[key],
                             "--split", "train", "--json", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        res[key] = json.loads(out)
    ref = res["weights"]
    assert res["fp32"]["images"] == ref["images"] == 32
    assert res["fp32"]["top1_error"] == pytest.approx(ref["top1_error"], abs=1e-6)
    assert res["fp32"]["loss"] == pytest.approx(ref["loss"], rel=1e-4, abs=1e-5)
    # int8: at most 3 of the 32 images change their top-1 class; the loss within 0.1
    assert abs(res["int8"]["top1_error"] - ref["top1_error"]) <= 3 / 32 + 1e-6
    assert res["int8"]["loss"] == pytest.approx(ref["loss"], abs=0.1)


def test_predict_json_same_classes(setup, capsys):
    out = {}
    for key in ("weights", "fp32"):
        code, text, err = cli(capsys, "predict", "--weights", setup[key], *setup["files"],
                              "--json", "--topk", "4", "--device", "cpu")  # fmt: skip
        assert code == 0, err
        out[key] = json.loads(text)["predictions"]
    for a, b in zip(out["weights"], out["fp32"], strict=True):
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([t["prob"] for t in a["top"]], [t["prob"] for t in b["top"]],
                                   atol=1e-4)  # fmt: skip


def one_line(code: int, err: str, *words: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and all(w in err for w in words), err


def test_bad_onnx_files_are_one_line(setup, capsys, tmp_path):
    import onnx
    from onnx import helper as h

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    code, _, err = cli(capsys, "predict", "--weights", bad, setup["files"][0])
    one_line(code, err, str(bad), "not a readable ONNX model")
    graph = h.make_graph(
        [h.make_node("Relu", ["images"], ["logits"])],
        "g",
        [h.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 4])],
        [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 4])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(h.make_model(graph), str(foreign))
    code, _, err = cli(capsys, "eval", "--data", setup["data"], "--weights", foreign)
    one_line(code, err, str(foreign), "without alexnet's metadata")
    code, _, err = cli(capsys, "features", "--data", setup["data"], "--weights", foreign,
                       "--out", tmp_path / "f")  # fmt: skip
    one_line(code, err, str(foreign))
    code, _, err = cli(capsys, "eval", "--data", setup["data"], "--weights", setup["fp32"],
                       "--device", "cuda")  # fmt: skip
    one_line(code, err, "--device cuda", "ONNX")


def test_export_int8_needs_calibration_data(setup, capsys, tmp_path):
    out = tmp_path / "x.onnx"
    code, _, err = cli(capsys, "export", "--weights", setup["weights"], "--onnx", out, "--int8")
    one_line(code, err, "--calibration-data")
    assert not out.exists()


def test_serve_engine_on_int8(setup):
    from alexnet.serve.answers import ApiError, Engine

    q, ref = Engine(setup["int8"], "cpu"), Engine(setup["weights"], "cpu")
    assert q.feature_dim == ref.feature_dim and q.info()["classes"] == ref.info()["classes"]
    imgs = np.stack([q.decode(Path(f).read_bytes(), f.name) for f in setup["files"]])
    got = torch.stack(q.run_batch("predict", imgs))
    want = torch.stack(ref.run_batch("predict", imgs))
    assert (got - want).abs().max() <= 0.05 and (got.argmax(1) == want.argmax(1)).all()
    with pytest.raises(ApiError) as info:
        q.kernels_png()
    assert info.value.status == 501 and "ONNX" in info.value.message


def test_mean_image_travels_in_the_file(tmp_path):
    from alexnet.export import OnnxModel, export_onnx

    torch.manual_seed(1)
    model = get_model("small", num_classes=3, in_channels=3, input_size=32)
    mean = torch.rand(32, 32, 3) * 255
    weights = tmp_path / "w.safetensors"
    pre = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "mean_image"}
    save(weights, model.state_dict(), model_config=model.config, classes=["a", "b", "c"],
         preprocess=pre, mean_image=mean)  # fmt: skip
    export_onnx(weights, tmp_path / "m.onnx")
    meta = OnnxModel(tmp_path / "m.onnx").meta
    assert meta.classes == ["a", "b", "c"] and meta.preprocess.normalize == "mean_image"
    assert torch.equal(meta.mean_image, mean.float())


@pytest.mark.parametrize("beta, groups", [(0.75, 2), (0.75, 1), (0.5, 2)])
def test_export_lrn_matches_float64_formula(beta, groups):
    from alexnet.export import _FastLRN

    torch.manual_seed(0)
    x = torch.randn(2, 12, 5, 5) * 4
    got = _FastLRN(5, 1e-2, beta, 2.0, groups)(x)
    ref = torch.cat(  # paper §3.3, each tower on its own: alpha times the window's sum
        [
            p / (2.0 + 1e-2 * torch.stack([
                (p[:, max(0, c - 2) : c + 3] ** 2).sum(1) for c in range(p.shape[1])
            ], 1)) ** beta
            for p in x.double().chunk(groups, 1)
        ],
        1,
    )  # fmt: skip
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_bench_profile_groups_every_node(setup, tmp_path):
    """benchmarks/bench_int8.py's per-op summary: the groups add up to onnxruntime's own
    per-node total, and the int8 file's first convolution is found."""
    import importlib.util
    import shutil

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_int8.py"
    spec = importlib.util.spec_from_file_location("bench_int8", bench)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "m.onnx"
    shutil.copy(setup["int8"], path)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    prof = mod.profile(path, x, runs=1)
    assert prof["ms"]["conv1"] > 0 and prof["ms"]["lrn"] > 0  # `small` has an LRN ("norm")
    assert sum(prof["ms"].values()) == pytest.approx(prof["total_ms"], abs=0.5)
    assert set(mod.cpu_info()) >= {"name", "avx2", "avx512", "vnni"}
