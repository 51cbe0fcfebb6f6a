"""alexnet predict on real photos, torchvision's .pth path, refused payloads, weights round trips.

References are independent of the code under test: PIL / torchvision transforms for the
preprocessing, the model called directly for the probabilities, torchvision's own model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.models.registry import get_model
from alexnet.weights import load, save
from alexnet.weights.safetensors_io import read_safetensors

skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

CLASSES = ["cat", "coffee", "rocket", "astronaut"]
MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.24, 0.26]


def photos(tmp: Path) -> dict[str, Path]:
    """Real photos: the cat as PNG (exact reference), coffee as JPEG, astronaut as PNG."""
    out = {
        "chelsea": tmp / "chelsea.png",
        "coffee": tmp / "coffee.jpg",
        "astronaut": tmp / "astronaut.png",
    }
    Image.fromarray(skdata.chelsea()).save(out["chelsea"])
    Image.fromarray(skdata.coffee()).save(out["coffee"], quality=92)
    Image.fromarray(skdata.astronaut()).save(out["astronaut"])
    return out


def trained_small(tmp: Path) -> tuple[Path, torch.nn.Module]:
    """A `small` 32 px RGB model after a few SGD steps on the photos, saved with metadata."""
    torch.manual_seed(0)
    model = get_model("small", num_classes=4, in_channels=3, input_size=32)
    imgs = [skdata.chelsea(), skdata.coffee(), skdata.rocket(), skdata.astronaut()]
    x = torch.stack(
        [
            torch.from_numpy(np.array(Image.fromarray(a).resize((32, 32)))).permute(2, 0, 1)
            for a in imgs
        ]
    ).float()
    x = (x / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    y = torch.arange(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    path = tmp / "small.safetensors"
    preprocess = {
        "crop_size": 32,
        "resize": None,
        "out_channels": 3,
        "normalize": "channel",
        "mean": MEAN,
        "std": STD,
    }
    save(
        path,
        model.state_dict(),
        model_config=model.config,
        classes=CLASSES,
        preprocess=preprocess,
        extra={"recipe": "test", "steps": 5},
    )
    return path, model


def reference_probs(model: torch.nn.Module, path: Path, size: int = 32) -> np.ndarray:
    """Shorter side to `size` with PIL bilinear, centre crop, channel normalization, softmax."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float64) / 255
    arr = (arr - np.array(MEAN)) / np.array(STD)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return torch.softmax(model(x).double(), 1)[0].numpy()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_json_on_real_photos(tmp_path, capsys):
    pics = photos(tmp_path)
    weights, model = trained_small(tmp_path)
    code, out, err = run_cli(
        capsys,
        "predict",
        "--weights",
        str(weights),
        str(pics["chelsea"]),
        str(pics["coffee"]),
        "--topk",
        "4",
        "--json",
        "--device",
        "cpu",
    )
    assert code == 0, err
    result = json.loads(out)
    preds = result["predictions"]
    assert [p["image"] for p in preds] == [str(pics["chelsea"]), str(pics["coffee"])]
    for p in preds:
        probs = [t["prob"] for t in p["top"]]
        assert len(probs) == 4 and sorted(probs, reverse=True) == probs
        assert abs(sum(probs) - 1.0) < 1e-5  # all 4 classes: the softmax sums to 1
        assert {t["class"] for t in p["top"]} == set(CLASSES)
        assert all(CLASSES[t["index"]] == t["class"] for t in p["top"])
    # the PNG against an independent preprocessing + the model itself
    ref = reference_probs(model, pics["chelsea"])
    got = {t["index"]: t["prob"] for t in preds[0]["top"]}
    np.testing.assert_allclose([got[i] for i in range(4)], ref, atol=1e-4)
    assert ref[preds[0]["top"][0]["index"]] >= ref.max() - 1e-4  # the top class (or a tie)


def test_predict_topk_ten_crops_and_text_output(tmp_path, capsys):
    pics = photos(tmp_path)
    weights, _ = trained_small(tmp_path)
    code, out, _ = run_cli(
        capsys, "predict", "--weights", str(weights), str(tmp_path), "--topk", "2", "--crops",
        "10", "--json", "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    preds = json.loads(out)["predictions"]
    assert sorted(p["image"] for p in preds) == sorted(str(p) for p in pics.values())
    for p in preds:
        assert len(p["top"]) == 2 and p["top"][0]["prob"] >= p["top"][1]["prob"] > 0
        assert p["top"][0]["prob"] + p["top"][1]["prob"] <= 1.0 + 1e-6
    code, out, _ = run_cli(capsys, "predict", "--weights", str(weights), str(pics["coffee"]))
    assert code == 0 and str(pics["coffee"]) in out and "%" in out


def test_bad_image_is_named_others_still_predicted(tmp_path, capsys):
    pics = photos(tmp_path)
    weights, _ = trained_small(tmp_path)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture\n")
    code, out, err = run_cli(
        capsys, "predict", "--weights", str(weights), str(pics["chelsea"]), str(bad),
        str(tmp_path / "missing.png"), "--json",
    )  # fmt: skip
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert any(str(bad) in line and "not an image" in line for line in lines)
    assert any("missing.png" in line for line in lines)
    preds = json.loads(out)["predictions"]
    ok = [p for p in preds if "top" in p]
    assert [p["image"] for p in ok] == [str(pics["chelsea"])]
    assert json.loads(out)["failed"] == 2


def test_torchvision_pth_predicts_like_torchvision(tmp_path):
    import torchvision
    from torchvision.models import AlexNet_Weights

    from alexnet.inference import Predictor

    torch.manual_seed(1)
    tv = torchvision.models.alexnet(weights=None).eval()
    with torch.no_grad():  # spread the logits so the probabilities are far from uniform
        tv.classifier[6].weight.mul_(3000.0)
    pth = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(tv.state_dict(), pth)
    pics = photos(tmp_path)
    predictor = Predictor(pth, "cpu")
    assert predictor.classes == AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
    assert predictor.classes[0] == "tench"
    preds = list(predictor.predict_files([str(pics["astronaut"]), str(pics["chelsea"])], topk=5))
    tf = AlexNet_Weights.IMAGENET1K_V1.transforms()  # Resize 256, CenterCrop 224, mean/std
    for pred, name in zip(preds, ["astronaut", "chelsea"]):
        x = tf(Image.open(pics[name]).convert("RGB"))[None]
        with torch.no_grad():
            ref = torch.softmax(tv(x), 1)[0]
        top_p, top_i = ref.topk(5)
        # the five largest probabilities, each at a class where torchvision has it (two classes
        # within rounding of each other may come in either order on another CPU)
        np.testing.assert_allclose(pred.probs, top_p.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.probs, ref[pred.indices].numpy(), atol=1e-5, rtol=0)
        assert len(set(pred.indices)) == 5
        assert top_p[0] > 0.05  # not a uniform output: the comparison means something


class Payload:
    """Unpickling this runs os.mkdir(marker): a stand-in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pth_with_code_payload_is_refused(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    pth = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(1), "x": Payload(str(marker))}, pth)
    pics = photos(tmp_path)
    code, _, err = run_cli(capsys, "predict", "--weights", str(pth), str(pics["chelsea"]))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and str(pth) in err and "refused" in err
    assert not marker.exists()


def test_bad_weights_files(tmp_path, capsys):
    pics = photos(tmp_path)
    img = str(pics["chelsea"])
    code, _, err = run_cli(capsys, "predict", "--weights", str(tmp_path / "nope.safetensors"), img)
    assert code == 2 and "nope.safetensors" in err and "no such" in err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(300))
    code, _, err = run_cli(capsys, "predict", "--weights", str(corrupt), img)
    assert code == 2 and str(corrupt) in err and len(err.strip().splitlines()) == 1
    # a state_dict of another model given as torchvision's .pth
    other = tmp_path / "seedish.pth"
    state = get_model("small", num_classes=3).state_dict()
    torch.save(state, other)
    code, _, err = run_cli(capsys, "predict", "--weights", str(other), img)
    assert code == 2 and str(other) in err and "torchvision" in err
    # alexnet metadata naming a model whose tensors are not in the file
    weights, model = trained_small(tmp_path)
    tensors, meta = read_safetensors(weights)
    wrong = tmp_path / "wrong.safetensors"
    save(
        wrong,
        tensors,
        model_config={"name": "seed", "options": {}},
        classes=meta.classes,
        preprocess=meta.preprocess,
    )
    code, _, err = run_cli(capsys, "predict", "--weights", str(wrong), img)
    assert code == 2 and str(wrong) in err and "do not fit" in err


def test_safetensors_metadata_round_trip(tmp_path):
    weights, model = trained_small(tmp_path)
    loaded, meta = load(weights, "cpu")
    assert meta.model_config == model.config and meta.format == "alexnet"
    assert meta.classes == CLASSES
    assert meta.preprocess.mean == MEAN and meta.preprocess.normalize == "channel"
    assert meta.extra == {"recipe": "test", "steps": 5}
    assert meta.mean_image is None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_two_device_layout_round_trip(tmp_path):
    """paper -> two-device -> paper: bitwise the same tensors; the two-device file predicts
    like the original model."""
    from alexnet.weights import convert_layout

    torch.manual_seed(0)
    model = get_model("paper", num_classes=6).eval()
    mean = torch.rand(256, 256, 3)
    pre = {"crop_size": 224, "resize": None, "out_channels": 3, "normalize": "mean_image"}
    src = tmp_path / "paper.safetensors"
    save(
        src,
        model.state_dict(),
        model_config=model.config,
        classes=list("abcdef"),
        preprocess=pre,
        mean_image=mean,
    )
    two, back = tmp_path / "two.safetensors", tmp_path / "back.safetensors"
    convert_layout(src, two, "two-device")
    t2, m2 = read_safetensors(two)
    assert m2.extra["layout"] == "two-device" and m2.format == "two-device"
    assert any(k.startswith("tower_b.") for k in t2)
    assert not any(k.startswith("features") for k in t2)
    convert_layout(two, back, "paper")
    t0, _ = read_safetensors(src)
    t3, m3 = read_safetensors(back)
    assert set(t0) == set(t3) and all(torch.equal(t0[k], t3[k]) for k in t0)
    assert "layout" not in m3.extra
    loaded, m_two = load(two, "cpu")
    mean_loaded = m_two.mean_image
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert torch.equal(mean_loaded, mean)


def test_layout_conversion_refuses_other_models(tmp_path, capsys):
    weights, _ = trained_small(tmp_path)
    code, _, err = run_cli(
        capsys, "export", "--weights", str(weights), "--two-device", str(tmp_path / "o.st")
    )
    assert code == 2 and str(weights) in err and "two-tower" in err
