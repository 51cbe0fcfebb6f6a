"""`alexnet features --data FOLDER`: a folder of image files instead of a packed dataset, and
`neighbors` / `serve --index` on its features.

References: the model called directly on images decoded and resized by PIL (shorter side to
32, bilinear, centre crop) and normalized in float64; numpy brute-force distances; the class
folders the test wrote.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest
import torch
from data_helpers import cli
from PIL import Image

from alexnet.cli import main
from alexnet.inference import load_features

SIZES = [(48, 36), (36, 40), (40, 56)]  # shorter side < 64: no JPEG DCT downscale


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("folder")
    data = dh.synthetic_data(root / "syn")
    weights = dh.small_weights(root / "w.safetensors", data)
    photos = root / "photos"
    files = []
    for c, name in enumerate(["zebra", "ant", "moth"]):  # sorted: ant 0, moth 1, zebra 2
        (photos / name).mkdir(parents=True)
        for i, (w, h) in enumerate(SIZES):
            rel = f"{name}/{i}.jpg"
            (photos / rel).write_bytes(dh.jpeg_bytes(dh.photo(10 * c + i, w, h)))
            files.append(rel)
    (photos / "ant" / "x.png").write_bytes(dh.png_bytes(dh.photo(99, 45, 33)))
    files.append("ant/x.png")
    (photos / "moth" / "broken.jpg").write_bytes(dh.jpeg_bytes(dh.photo(7))[:200])
    (photos / "moth" / "notes.txt").write_text("not an image extension: not listed")
    return {"root": root, "weights": weights, "photos": photos, "good": sorted(files)}


def pil_input(path: Path) -> torch.Tensor:
    """PIL: shorter side to 32 (bilinear), centre crop, (x / 255 - 0.5) / 0.25 in float64 ->
    the model input (1, 3, 32, 32)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 32 / min(w, h)
    nw, nh = max(32, round(w * s)), max(32, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - 32) // 2, (nh - 32) // 2
    arr = np.asarray(img.crop((left, top, left + 32, top + 32)), dtype=np.float64) / 255
    return torch.from_numpy((arr - 0.5) / 0.25).permute(2, 0, 1)[None].float()


def reference(weights: Path, path: Path) -> np.ndarray:
    """The model's penultimate layer on `pil_input`."""
    from alexnet.weights import load

    model, _ = load(weights)
    with torch.no_grad():
        return model.forward_penultimate(pil_input(path))[0].numpy()


@pytest.fixture(scope="module")
def feats(env, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("feats") / "feats"
    code = main(["features", "--data", str(env["photos"]), "--weights", str(env["weights"]),
                 "--out", str(out), "--device", "cpu", "--batch-size", "4"])  # fmt: skip
    assert code == 1  # the broken file
    f, meta = load_features(out)
    return {"out": out, "feats": np.array(f), "meta": meta}


def test_folder_features_equal_the_model_on_pil_images(env, feats):
    meta = feats["meta"]
    assert meta["paths"] == env["good"] and "indices" not in meta and "split" not in meta
    assert feats["feats"].shape == (len(env["good"]), meta["dim"]) and meta["count"] == 10
    ref = np.stack([reference(env["weights"], env["photos"] / p) for p in meta["paths"]])
    np.testing.assert_allclose(feats["feats"], ref, rtol=1e-4, atol=1e-5)
    assert meta["data"] == str(env["photos"].resolve())


def test_same_as_predictor_on_the_files(env, feats):
    from alexnet.inference import Predictor, read_image

    p = Predictor(env["weights"])
    imgs = np.stack([read_image(str(env["photos"] / r), 32) for r in feats["meta"]["paths"]])
    np.testing.assert_allclose(feats["feats"], p.features(imgs).numpy(), rtol=1e-5, atol=1e-6)


def test_labels_are_the_sorted_class_folders(env, feats):
    meta = feats["meta"]
    assert meta["classes"] == ["ant", "moth", "zebra"]
    assert [meta["classes"][i] for i in meta["labels"]] == [p.split("/")[0] for p in meta["paths"]]


def test_broken_file_reported_on_one_line_and_skipped(env, tmp_path, capsys):
    code, out, err = cli(capsys, "features", "--data", env["photos"], "--weights", env["weights"],
                         "--out", tmp_path / "f", "--device", "cpu")  # fmt: skip
    assert code == 1 and "wrote" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken.jpg" in lines[0] and "Traceback" not in err
    assert "moth/broken.jpg" not in load_features(tmp_path / "f")[1]["paths"]


def test_no_labels_without_class_folders_and_limit(env, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    (mixed / "a" / "deep").mkdir(parents=True)
    (mixed / "top.png").write_bytes(dh.png_bytes(dh.photo(1, 40, 40)))
    for i in range(3):
        (mixed / "a" / "deep" / f"{i}.png").write_bytes(dh.png_bytes(dh.photo(2 + i, 40, 40)))
    code, _, err = cli(capsys, "features", "--data", mixed, "--weights", env["weights"],
                       "--out", tmp_path / "m", "--limit", "2", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    meta = load_features(tmp_path / "m")[1]
    assert meta["paths"] == ["a/deep/0.png", "a/deep/1.png"]  # the first 2 in sorted order
    assert "labels" not in meta and "classes" not in meta


def test_split_refused_and_empty_folder(env, tmp_path, capsys):
    code, _, err = cli(capsys, "features", "--data", env["photos"], "--weights", env["weights"],
                       "--out", tmp_path / "f", "--split", "val")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--split" in err
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "features", "--data", tmp_path / "empty", "--weights",
                       env["weights"], "--out", tmp_path / "f")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no image files" in err


def test_layer_and_pool_on_a_folder(env, feats, tmp_path, capsys):
    from alexnet.explain import features_at
    from alexnet.weights import load

    args = ["features", "--data", env["photos"], "--weights", env["weights"], "--device", "cpu"]
    code, _, _ = cli(capsys, *args, "--out", tmp_path / "p3", "--layer", "pool3")
    assert code == 1  # the broken file again
    f, meta = load_features(tmp_path / "p3")
    assert meta["layer"] == "pool3" and meta["pool"] == "none"
    np.testing.assert_array_equal(f, feats["feats"])  # pool3 flattened is `small`'s penultimate
    code, _, _ = cli(capsys, *args, "--out", tmp_path / "c1", "--layer", "conv1", "--pool", "max")
    f, meta = load_features(tmp_path / "c1")
    model, _ = load(env["weights"])
    x = pil_input(env["photos"] / meta["paths"][0])
    ref = features_at(model, x, "conv1").amax(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(f[0], ref, rtol=1e-4, atol=1e-5)


def test_neighbors_on_folder_features(env, feats, capsys, tmp_path):
    query = env["photos"] / "zebra" / "1.jpg"
    grid = tmp_path / "grid.png"
    code, out, err = cli(capsys, "neighbors", "--features", feats["out"], "--query", query,
                         "--k", "3", "--json", "--out", grid, "--device", "cpu")  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    assert res["split"] is None and res["data"] == str(env["photos"].resolve())
    got = res["results"][0]["neighbors"]
    base = feats["feats"].astype(np.float64)
    dist = np.sqrt(((base - reference(env["weights"], query)) ** 2).sum(1))
    order = np.argsort(dist, kind="stable")[:3]
    paths = feats["meta"]["paths"]
    assert got[0]["path"] == "zebra/1.jpg"  # itself, nearest
    assert [n["path"] for n in got] == [paths[i] for i in order]
    np.testing.assert_allclose([n["distance"] for n in got], dist[order], rtol=1e-3, atol=1e-3)
    assert [n["label"] for n in got] == [p.split("/")[0] for p in (n["path"] for n in got)]
    assert Image.open(grid).size[0] > 3 * 100  # drawn, the neighbours read from the folder
    code, out, _ = cli(capsys, "neighbors", "--features", feats["out"], "--query", query, "--k",
                       "2", "--device", "cpu")  # fmt: skip
    assert code == 0 and out.splitlines()[1].split()[::2] == ["zebra/1.jpg", "zebra"]
    code, _, err = cli(capsys, "neighbors", "--features", feats["out"], "--query", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "image folder" in err


def test_serve_index_of_a_folder(env, feats):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from alexnet.serve.answers import Engine
    from alexnet.serve.app import ServeConfig, create_app

    engine = Engine(env["weights"], "cpu", index=feats["out"])
    query = env["photos"] / "ant" / "x.png"
    with TestClient(create_app(engine, ServeConfig())) as c:
        nb = c.post("/v1/neighbors?k=2", content=query.read_bytes(),
                    headers={"Content-Type": "image/png"})  # fmt: skip
        assert nb.status_code == 200, nb.text
        first = nb.json()["results"][0]["neighbors"][0]
        assert first["path"] == "ant/x.png" and first["label"] == "ant"
        thumb = c.get(first["image"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        assert c.get("/v1/files/..%2Fw.safetensors").status_code == 404
        assert c.get("/v1/model").json()["index"] == {"split": None, "count": 10}
    arr = np.asarray(Image.open(io.BytesIO(thumb.content)))
    img = Image.open(query).convert("RGB")  # 45 x 33 -> 44 x 32, crop 32 x 32
    ref = np.asarray(img.resize((44, 32), Image.Resampling.BILINEAR).crop((6, 0, 38, 32)))
    assert arr.shape == (32, 32, 3)
    assert np.abs(arr.astype(int) - ref.astype(int)).max() <= 1
