"""Looking inside the network: features at any layer, explore's top-K units, the boxes they see,
and occlusion sensitivity, each against an independent computation (a manual forward through
the layers, a brute-force pass, the receptive-field recursion, a hand-occluded image)."""

from __future__ import annotations

import json
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest
import torch
from data_helpers import cli
from PIL import Image

from alexnet import get_model
from alexnet.cli import main
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.explain import (
    features_at,
    layers,
    occlusion,
    occlusion_grid,
    parse_units,
    pool_features,
)
from alexnet.weights import load
from alexnet.weights import save as save_weights

MEAN, STD = 0.5, 0.25  # data_helpers.small_weights' "channel" normalization


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explain")
    data = dh.synthetic_data(root / "syn", seed=0, count=24)
    weights = dh.small_weights(root / "w.safetensors", data, seed=0)
    return {"root": root, "data": data, "w": weights}


def model_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> the small model's input, written out: (x / 255 - mean) / std."""
    x = torch.from_numpy(np.array(images)).double().permute(0, 3, 1, 2) / 255.0
    return ((x - MEAN) / STD).float()


def manual_conv2(model, x: torch.Tensor) -> torch.Tensor:
    """small's conv2 after its ReLU: the layers called one by one, no hooks, no fusion."""
    f = model.features
    for name in ("conv1", "act1", "pool1", "norm1", "conv2", "act2"):
        x = getattr(f, name)(x)
    return x


# ------------------------------------------------------------------ features at a layer
def test_layer_names_are_summarys(env):
    from alexnet.models.summary import layer_table

    for name, kw in [("paper", {}), ("seed", {}), ("torchvision", {}), ("small", {})]:
        model = get_model(name, **kw)
        assert list(layers(model)) == [r.name for r in layer_table(model)]
    assert list(layers(get_model("paper")))[-4:] == ["pool5", "fc6", "fc7", "fc8"]


def test_features_at_fc_layers_and_logits():
    torch.manual_seed(0)
    model = get_model("paper", num_classes=5, widths=(8, 16, 16, 16, 16)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(features_at(model, x, "fc7"), model.forward_penultimate(x))
        assert torch.equal(features_at(model, x, "fc8"), model(x))
        manual = model.features.act1(model.features.conv1(x.clone()))
        torch.testing.assert_close(features_at(model, x, "conv1"), manual)
    with pytest.raises(UserError, match="has conv1, norm1, pool1"):
        features_at(model, x, "conv9")


def test_features_layer_fc7_equals_todays_features(tmp_path, capsys):
    data = tmp_path / "big"
    assert main(["prepare", "synthetic", str(data), "--source", "synthetic", "--classes", "2",
                 "--count", "6", "--image-size", "224", "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    torch.manual_seed(0)
    model = get_model("paper", num_classes=2, widths=(8, 16, 16, 16, 16))
    pre = {"crop_size": 224, "resize": None, "out_channels": 3, "normalize": "channel",
           "mean": [MEAN] * 3, "std": [STD] * 3}  # fmt: skip
    w = tmp_path / "paper.safetensors"
    save_weights(w, model.state_dict(), model_config=model.config,
                 classes=open_dataset(data).classes, preprocess=pre)  # fmt: skip
    base = ["features", "--data", data, "--weights", w, "--device", "cpu"]
    assert cli(capsys, *base, "--out", tmp_path / "today")[0] == 0
    assert cli(capsys, *base, "--out", tmp_path / "fc7", "--layer", "fc7")[0] == 0
    today, fc7 = np.load(tmp_path / "today.npy"), np.load(tmp_path / "fc7.npy")
    assert today.shape == (6, 4096) and np.array_equal(today, fc7)
    meta = json.loads((tmp_path / "fc7.json").read_text())
    assert meta["layer"] == "fc7" and meta["pool"] == "none"


@pytest.mark.parametrize("pool", ["max", "avg", "none"])
def test_features_conv_layer_against_a_manual_forward(env, tmp_path, capsys, pool):
    out = tmp_path / "c2"
    code, _, err = cli(capsys, "features", "--data", env["data"], "--weights", env["w"],
                       "--layer", "conv2", "--pool", pool, "--out", out, "--device", "cpu",
                       "--batch-size", "7")  # fmt: skip
    assert code == 0, err
    got = np.load(out.with_suffix(".npy"))
    ds = open_dataset(env["data"])
    model, _ = load(env["w"], "cpu")
    with torch.no_grad():
        maps = manual_conv2(model.eval(), model_input(ds.images[:])).double()
    want = {"max": maps.amax((2, 3)), "avg": maps.mean((2, 3)), "none": maps.flatten(1)}[pool]
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)
    assert json.loads(out.with_suffix(".json").read_text())["pool"] == pool


def test_unknown_layer_is_one_line(env, tmp_path, capsys):
    code, _, err = cli(capsys, "features", "--data", env["data"], "--weights", env["w"],
                       "--layer", "fc7", "--out", tmp_path / "x", "--device", "cpu")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'fc7'" in err and "conv1, pool1, norm1" in err


def test_onnx_weights_are_refused_in_one_line(tmp_path, capsys):
    """--layer, --explain occlusion and explore need the torch model: an .onnx says so."""
    pytest.importorskip("onnxruntime")
    model = get_model("small", num_classes=3, input_size=32).eval()
    w = tmp_path / "w.safetensors"
    pre = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "none"}
    save_weights(w, model.state_dict(), model_config=model.config, classes=list("abc"),
                 preprocess=pre)  # fmt: skip
    onnx = tmp_path / "m.onnx"
    assert cli(capsys, "export", "--weights", w, "--onnx", onnx)[0] == 0
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    code, _, err = cli(capsys, "predict", "--weights", onnx, image, "--explain", "occlusion")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--explain occlusion needs torch weights" in err


# ------------------------------------------------------------------ explore
def test_parse_units():
    assert parse_units("all", 4) == [0, 1, 2, 3]
    assert parse_units("0-3,9", 10) == [0, 1, 2, 3, 9]
    assert parse_units("3,7,9", 10) == [3, 7, 9]
    for bad in ("5-2", "x", "10", "-1"):
        with pytest.raises(UserError):
            parse_units(bad, 10)


def _field(geometry: list[tuple[int, int, int]]) -> tuple[int, int, float]:
    """The textbook recursion (rf, jump, start) over (kernel, stride, padding) layers."""
    rf, jump, start = 1, 1, 0.5
    for k, s, p in geometry:
        rf, start, jump = rf + (k - 1) * jump, start + ((k - 1) / 2 - p) * jump, jump * s
    return rf, jump, start


def _box(rf: int, jump: int, start: float, y: int, x: int, size: int) -> list[int]:
    def span(i: int) -> tuple[int, int]:
        c = start + i * jump
        return max(0, round(c - rf / 2)), min(size, round(c + rf / 2))

    (x0, x1), (y0, y1) = span(x), span(y)
    return [x0, y0, x1, y1]


def test_boxes_at_the_borders_against_the_formula():
    paper = [(11, 4, 2), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1)]
    rf, jump, start = _field(paper)
    assert (rf, jump) == (163, 16)
    field = layers(get_model("paper"))["conv5"].field
    for y, x in [(0, 0), (0, 12), (12, 0), (12, 12), (6, 6)]:
        assert field.box(y, x, 224) == _box(rf, jump, start, y, x, 224)
    assert field.box(0, 0, 224)[:2] == [0, 0] and field.box(12, 12, 224)[2:] == [224, 224]


def test_explore_top_k_against_brute_force(env, tmp_path, capsys):
    out = tmp_path / "ex"
    code, stdout, err = cli(capsys, "explore", "--weights", env["w"], "--data", env["data"],
                            "--layer", "conv2", "--units", "0-4,9", "--top", "4", "--split",
                            "train", "--limit", "20", "--batch-size", "6", "--out", out,
                            "--device", "cpu")  # fmt: skip
    assert code == 0, err
    doc = json.loads((out / "units.json").read_text())
    assert (doc["layer"], doc["receptive_field"], doc["jump"]) == ("conv2", 15, 2)
    assert [u["unit"] for u in doc["units"]] == [0, 1, 2, 3, 4, 9]
    assert (out / "units_0-9.png").stat().st_size > 1000

    ds = open_dataset(env["data"])
    model, _ = load(env["w"], "cpu")
    with torch.no_grad():
        maps = manual_conv2(model.eval(), model_input(ds.images[:20])).double().numpy()
    small = [(5, 1, 2), (3, 2, 0), (5, 1, 2)]  # conv1, pool1 (LRN keeps the field), conv2
    rf, jump, start = _field(small)
    for unit in doc["units"]:
        u = unit["unit"]
        per_image = []  # (activation, image, y, x) of each image's first strongest position
        for i in range(20):
            m = maps[i, u]
            y, x = np.unravel_index(int(np.argmax(m)), m.shape)
            per_image.append((m[y, x], i, int(y), int(x)))
        per_image.sort(key=lambda t: (-t[0], t[1]))
        top = unit["top"]
        assert len(top) == 4
        for got, (a, i, y, x) in zip(top, per_image[:4]):
            assert (got["index"], got["y"], got["x"]) == (i, y, x)
            assert got["activation"] == pytest.approx(a, rel=1e-5, abs=1e-6)
            assert got["box"] == _box(rf, jump, start, y, x, 32)


def test_explore_bad_units_is_one_line(env, tmp_path, capsys):
    code, _, err = cli(capsys, "explore", "--weights", env["w"], "--data", env["data"],
                       "--layer", "conv1", "--units", "40", "--out", tmp_path / "x",
                       "--device", "cpu")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--units 40" in err


# ------------------------------------------------------------------ occlusion
def test_predict_explain_occlusion_cells_by_hand(env, tmp_path, capsys):
    from PIL import Image

    image = open_dataset(env["data"], "val").images[1]
    path = tmp_path / "one.png"
    Image.fromarray(np.array(image)).save(path)
    code, out, err = cli(capsys, "predict", "--weights", env["w"], path, "--explain",
                         "occlusion", "--patch", "6", "--stride", "5", "--json", "--device",
                         "cpu", "--batch-size", "4", "--out", tmp_path / "maps")  # fmt: skip
    assert code == 0, err
    pred = json.loads(out)["predictions"][0]
    occ = pred["occlusion"]
    assert (occ["class"], occ["patch"], occ["stride"]) == (pred["top"][0]["class"], 6, 5)
    n = (32 - 6) // 5 + 1
    assert np.array(occ["drop"]).shape == (n, n)
    assert (tmp_path / "maps" / "one.png").stat().st_size > 1000

    model, _ = load(env["w"], "cpu")
    c = occ["index"]
    x = model_input(image[None]).double()
    model = model.double().eval()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[0, c].item()
        for i, j in [(0, 0), (2, 3), (n - 1, n - 1)]:
            hidden = x.clone()
            hidden[..., 5 * i : 5 * i + 6, 5 * j : 5 * j + 6] = 0.0  # the normalized mean
            want = p - torch.softmax(model(hidden), 1)[0, c].item()
            assert occ["drop"][i][j] == pytest.approx(want, abs=2e-6)


def test_occlusion_does_not_depend_on_the_batching():
    torch.manual_seed(1)
    model = get_model("small", num_classes=3).eval()
    x = torch.randn(1, 3, 32, 32)
    one = occlusion(model, x, 2, 8, 4, batch_size=64)
    few = occlusion(model, x, 2, 8, 4, batch_size=5)
    assert one["drop"].shape == (7, 7)
    np.testing.assert_allclose(one["drop"], few["drop"], atol=1e-6)


def test_occlusion_flags_without_explain_is_one_line(env, capsys):
    code, _, err = cli(capsys, "predict", "--weights", env["w"], "x.png", "--patch", "4")
    assert code == 2 and "--explain occlusion" in err and len(err.strip().splitlines()) == 1


def test_pool_without_layer_is_one_line(env, tmp_path, capsys):
    code, _, err = cli(capsys, "features", "--data", env["data"], "--weights", env["w"],
                       "--pool", "max", "--out", tmp_path / "x", "--device", "cpu")  # fmt: skip
    assert code == 2 and "--pool goes with --layer" in err and len(err.strip().splitlines()) == 1


def test_strongest_units_against_brute_force(env):
    from alexnet.explain import strongest_units

    image = open_dataset(env["data"], "val").images[2]
    model, _ = load(env["w"], "cpu")
    model.eval()
    x = model_input(image[None])
    found = strongest_units(model, x, layers(model)["conv2"], 5)
    with torch.no_grad():
        maps = manual_conv2(model, x)[0].double().numpy()
    best = sorted(((m.max(), u) for u, m in enumerate(maps)), key=lambda t: (-t[0], t[1]))[:5]
    rf, jump, start = _field([(5, 1, 2), (3, 2, 0), (5, 1, 2)])
    assert [f["unit"] for f in found] == [u for _, u in best]
    for f, (value, u) in zip(found, best):
        y, x_ = np.unravel_index(int(np.argmax(maps[u])), maps[u].shape)
        assert (f["y"], f["x"]) == (y, x_) and f["activation"] == pytest.approx(value, rel=1e-5)
        assert f["box"] == _box(rf, jump, start, int(y), int(x_), 32)


# ------------------------------------------------------------------ on the serve page's API
@pytest.mark.timeout(180)
def test_serve_occlusion_and_units_answers(env, tmp_path):
    httpx = pytest.importorskip("httpx")
    from PIL import Image
    from test_serve import Server

    image = open_dataset(env["data"], "val").images[0]
    path = tmp_path / "v0.png"
    Image.fromarray(np.array(image)).save(path)
    body, png = path.read_bytes(), {"Content-Type": "image/png"}
    with Server(tmp_path / "server.log", "--weights", str(env["w"])) as s:
        with httpx.Client(base_url=s.url, timeout=60, trust_env=False) as c:
            info = c.get("/v1/model").json()
            occ = c.post("/v1/occlusion?patch=6&stride=5", content=body, headers=png)
            units = c.post("/v1/units?layer=conv2&k=3", content=body, headers=png)
            unknown = c.post("/v1/units?layer=fc7", content=body, headers=png)
            too_big = c.post("/v1/occlusion?patch=40", content=body, headers=png)
        assert s.stop() == 0
    assert info["layers"] == [
        "conv1",
        "pool1",
        "norm1",
        "conv2",
        "pool2",
        "norm2",
        "conv3",
        "pool3",
    ]
    assert occ.status_code == 200 and units.status_code == 200
    model, _ = load(env["w"], "cpu")
    x = model_input(image[None])
    want = occlusion(model.eval(), x, occ.json()["index"], 6, 5)["drop"]
    np.testing.assert_allclose(occ.json()["drop"], want, atol=1e-6)
    with torch.no_grad():
        peaks = manual_conv2(model, x)[0].amax((1, 2)).numpy()
    want_units = [int(u) for u in np.argsort(-peaks, kind="stable")[:3]]
    assert [u["unit"] for u in units.json()["units"]] == want_units
    assert unknown.status_code == 404 and "conv1, pool1" in unknown.json()["error"]
    assert too_big.status_code == 422 and "patch 40" in too_big.json()["error"]


def test_pooling_and_occlusion_refuse_bad_values_from_python_too():
    """Library callers get the same one-line errors as the CLI and the server (no silent mean,
    no ZeroDivisionError)."""
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert torch.equal(pool_features(maps, "max"), maps.amax(dim=(2, 3)))
    with pytest.raises(UserError, match="'sum': choose from max, avg, none"):
        pool_features(maps, "sum")
    assert occlusion_grid(224, 32, 16) == (32, 16, (224 - 32) // 16 + 1)
    with pytest.raises(UserError, match="must be at least 1"):
        occlusion_grid(224, 32, 0)
    for patch in (0, 225):
        with pytest.raises(UserError, match="must be 1 to the input size 224"):
            occlusion_grid(224, patch, None)
