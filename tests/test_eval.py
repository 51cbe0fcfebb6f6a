"""Evaluation numbers against an independent float64 numpy computation from saved logits,
the weights file round trip, and the `alexnet eval --json` fields."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import write_packed

from alexnet.cli import main
from alexnet.evaluate import evaluate, per_class_accuracy
from alexnet.train.config import make_config
from alexnet.train.loop import fit as train


def _numpy_reference(logits: np.ndarray, labels: np.ndarray, crops: int, k: int):
    """Softmax per crop, averaged over the image's crops; top-1/top-5 errors, NLL, confusion."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p = p.reshape(len(labels), crops, k).mean(axis=1)
    order = np.argsort(-p, axis=1, kind="stable")
    top1 = np.mean(order[:, 0] != labels)
    top5 = np.mean(~np.any(order[:, : min(5, k)] == labels[:, None], axis=1))
    loss = -np.mean(np.log(p[np.arange(len(labels)), labels]))
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (labels, order[:, 0]), 1)
    return top1, top5, loss, conf


@pytest.mark.parametrize("crops", [1, 10])
def test_evaluate_matches_numpy_from_saved_logits(crops):
    torch.manual_seed(0)
    k, n, d = 7, 53, 12
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, k))
    images = torch.randint(0, 256, (n, 3, 2, 2), dtype=torch.uint8)
    labels = torch.randint(0, k, (n,))
    noise = torch.randn(n * crops, d)  # a fixed "crop" per (image, crop)

    seen = [0]

    def transform(batch_images):  # image-major (B*crops, ...) like EvalTransform
        b = batch_images.shape[0]
        x = batch_images.float().flatten(1).repeat_interleave(crops, 0) / 255
        out = x + noise[seen[0] * crops : (seen[0] + b) * crops]
        seen[0] += b
        return out

    batches = [(images[i : i + 16], labels[i : i + 16]) for i in range(0, n, 16)]
    got = evaluate(model, batches, transform, crops=crops, num_classes=k, confusion=True)
    # saved logits, computed outside evaluate()
    with torch.no_grad():
        x = images.float().flatten(1).repeat_interleave(crops, 0) / 255 + noise
        logits = model(x).double().numpy()
    top1, top5, loss, conf = _numpy_reference(logits, labels.numpy(), crops, k)
    assert got["images"] == n and got["crops"] == crops
    assert got["top1_error"] == pytest.approx(top1, abs=1e-12)
    assert got["top5_error"] == pytest.approx(top5, abs=1e-12)
    assert got["loss"] == pytest.approx(loss, rel=1e-5)
    assert np.array_equal(got["confusion"].numpy(), conf)
    rows = conf.sum(1)
    expected = [conf[i, i] / rows[i] if rows[i] else None for i in range(k)]
    assert per_class_accuracy(got["confusion"]) == pytest.approx(expected)
    assert 0 < top1 < 1  # a non-trivial case


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_packed(root / "data", n_train=96, n_val=37)
    out = root / "run"
    train(
        make_config(
            "fast",
            data=str(data),
            output_dir=str(out),
            epochs=1,
            batch_size=16,
            model="small",
            model_options={"widths": [8, 8, 16]},
            device="cpu",
        )
    )
    return data, out


def test_eval_cli_json_fields(trained, capsys, tmp_path):
    data, out = trained
    png = tmp_path / "confusion.png"
    rc = main(
        [
            "eval",
            "--data",
            str(data),
            "--weights",
            str(out / "weights.safetensors"),
            "--crops",
            "10",
            "--json",
            "--per-class",
            "--confusion",
            str(png),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    said = capsys.readouterr()
    result = json.loads(said.out)
    assert {"images", "crops", "top1_error", "top5_error", "loss"} <= result.keys()
    # 28 px images cropped to 28: the corners are the centre, so 10 crops are the centre and
    # its mirror five times; evaluated (and said) as 2
    assert result["images"] == 37 and result["crops"] == 2
    assert "repeats the centre crop" in said.err and len(said.err.strip().splitlines()) == 1
    assert main(["eval", "--data", str(data), "--weights", str(out / "weights.safetensors"),
                 "--crops", "2", "--json", "--device", "cpu"]) == 0  # fmt: skip
    two = json.loads(capsys.readouterr().out)
    assert {k: two[k] for k in ("top1_error", "loss")} == {
        k: result[k] for k in ("top1_error", "loss")
    }
    assert 0.0 <= result["top1_error"] <= 1.0
    assert result["top5_error"] is None  # 4 classes: every label is among the top 5
    assert set(result["per_class_accuracy"]) == {f"class{i}" for i in range(4)}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _reference_logits(data, weights) -> tuple[np.ndarray, np.ndarray]:
    """Centre crop and its mirror of every val image, preprocessed by hand in float64 from the
    file's documented metadata, through a model built by hand: logits (N*2, K), labels (N,)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from alexnet.models.registry import get_model

    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    pre, cfg = json.loads(meta["preprocess"]), json.loads(meta["model"])
    assert pre["normalize"] == "channel" and pre["resize"] is None and pre["out_channels"] == 3
    tensors = load_file(str(weights))
    tensors.pop("preprocess.mean_image", None)
    model = get_model(cfg["name"], **cfg["options"]).eval()
    model.load_state_dict(tensors)
    images = np.load(data / "val_images.npy").astype(np.float64) / 255
    labels = np.load(data / "val_labels.npy")
    s, h = pre["crop_size"], images.shape[1]
    o = int(round((h - s) / 2))
    x = (images[:, o : o + s, o : o + s] - np.array(pre["mean"])) / np.array(pre["std"])
    x = np.stack([x, x[:, :, ::-1]], axis=1).reshape(-1, s, s, 3)  # image-major: centre, mirror
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).float())
    return logits.numpy(), labels


def test_eval_cli_matches_an_independent_float64_reference(trained, capsys):
    data, out = trained
    weights = out / "weights.safetensors"
    rc = main(["eval", "--data", str(data), "--weights", str(weights), "--crops", "2", "--json",
               "--device", "cpu"])  # fmt: skip
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    logits, labels = _reference_logits(data, weights)
    top1, top5, loss, _ = _numpy_reference(logits, labels, 2, logits.shape[1])
    assert result["images"] == len(labels) == 37 and result["crops"] == 2
    assert result["top1_error"] == pytest.approx(top1, rel=1e-5)  # JSON: 6 significant digits
    assert top5 == 0 and result["top5_error"] is None  # 4 classes: no top-5 error to report
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert 0 < result["loss"] and 0 <= top1 <= 1


def test_weights_file_rebuilds_the_model(trained):
    from safetensors.torch import load_file

    from alexnet.weights import load

    _, out = trained
    model, meta = load(out / "weights.safetensors")
    tensors = load_file(out / "weights.safetensors")  # read independently of alexnet.weights
    assert meta.model_name == "small" and meta.classes[0] == "class0"
    assert meta.preprocess.normalize == "channel" and meta.mean_image.shape == (28, 28, 3)
    assert meta.preprocess.image_size == 28  # the packed images' side, for predict
    assert torch.equal(meta.mean_image, tensors.pop("preprocess.mean_image"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, tensors[k])


def test_bad_weights_file_is_one_line_error(trained, tmp_path, capsys):
    data, _ = trained
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    rc = main(["eval", "--data", str(data), "--weights", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and str(bad) in err and "\n" not in err


def test_two_crops_are_the_centre_crop_and_its_mirror():
    from alexnet.evaluate import make_eval_transform

    images = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    pre = {"crop_size": 8, "resize": None, "out_channels": 3, "normalize": "none"}
    x = make_eval_transform(pre, None, 2)(images).view(3, 2, 3, 8, 8)
    centre = images[:, :, 1:9, 1:9].float() / 255
    torch.testing.assert_close(x[:, 0], centre)
    torch.testing.assert_close(x[:, 1], centre.flip(-1))


def test_ten_crops_stay_ten_where_the_corners_differ():
    """distinct_crops: 10 crops of a 256 px image for a 224 crop are ten different crops;
    of a 28 px image for a 28 crop (or resized to the crop's side) two."""
    from alexnet.evaluate import distinct_crops

    imagenet = {"crop_size": 224, "resize": None, "out_channels": 3, "normalize": "none"}
    assert distinct_crops(imagenet, (256, 256), 10) == 10
    assert distinct_crops(imagenet, (224, 224), 10) == 2
    assert distinct_crops(imagenet, (256, 256), 1) == 1
    fmnist = {"crop_size": 28, "resize": None, "out_channels": 3, "normalize": "none"}
    assert distinct_crops(fmnist, (28, 28), 10) == 2
    upscaled = {**fmnist, "crop_size": 224, "resize": 256}
    assert distinct_crops(upscaled, (28, 28), 10) == 10  # resized to 256, then cropped


def test_eval_json_of_a_run_is_rounded(trained):
    """RUN/eval.json shows what was measured (6 significant digits), not float noise such
    as 0.33399999999999996."""
    _, out = trained
    final = json.loads((out / "eval.json").read_text())
    floats = [v for v in final.values() if isinstance(v, float)]
    assert floats and all(float(f"{v:.6g}") == v for v in floats)
