"""Caffe's bvlc_alexnet -> the paper model: both file layouts, against float64 Caffe layers."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from caffe_helpers import (
    random_blobs,
    reference_forward,
    write_caffemodel,
    write_mean,
)

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.inference import Predictor
from alexnet.weights import caffe, load

DEPLOY = """
name: "AlexNet"
layer { name: "data" type: "Input" top: "data"
        input_param { shape: { dim: 10 dim: 3 dim: 227 dim: 227 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
        lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool1" type: "Pooling" bottom: "norm1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 256 pad: 2 kernel_size: 5 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "norm2" type: "LRN" bottom: "conv2" top: "norm2"
        lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layer { name: "pool2" type: "Pooling" bottom: "norm2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "conv3" type: "Convolution" bottom: "pool2" top: "conv3"
        convolution_param { num_output: 384 pad: 1 kernel_size: 3 } }
layer { name: "conv4" type: "Convolution" bottom: "conv3" top: "conv4"
        convolution_param { num_output: 384 pad: 1 kernel_size: 3 group: 2 } }
layer { name: "conv5" type: "Convolution" bottom: "conv4" top: "conv5"
        convolution_param { num_output: 256 pad: 1 kernel_size: 3 group: 2 } }
layer { name: "pool5" type: "Pooling" bottom: "conv5" top: "pool5"
        pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool5" top: "fc6"
        inner_product_param { num_output: 4096 } }
layer { name: "drop6" type: "Dropout" bottom: "fc6" top: "fc6"
        dropout_param { dropout_ratio: 0.5 } }
layer { name: "fc7" type: "InnerProduct" bottom: "fc6" top: "fc7"
        inner_product_param { num_output: 4096 } }
layer { name: "fc8" type: "InnerProduct" bottom: "fc7" top: "fc8"
        inner_product_param { num_output: 1000 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Random real-shape blobs written in both layouts and converted (mean image from a
    .binaryproto for the `layer` file, per-channel mean for the V1 file)."""
    tmp = tmp_path_factory.mktemp("caffe")
    blobs = random_blobs(seed=0)
    mean = np.random.default_rng(1).uniform(60, 160, (3, 256, 256)).astype(np.float32)
    new = write_caffemodel(tmp / "new.caffemodel", blobs, "layer")
    old = write_caffemodel(tmp / "old.caffemodel", blobs, "layers")
    (tmp / "deploy.prototxt").write_text(DEPLOY)
    out_new, out_old = tmp / "new.safetensors", tmp / "old.safetensors"
    words = tmp / "synset_words.txt"
    words.write_text("".join(f"n{i:08d} class {i}, a thing\n" for i in range(1000)))
    caffe.convert(new, out_new, mean=write_mean(tmp / "mean.binaryproto", mean), classes=words)
    # the V1 file through the command line, with the architecture from deploy.prototxt
    assert main(["convert", "caffe", str(old), "--deploy", str(tmp / "deploy.prototxt"),
                 str(out_old)]) == 0  # fmt: skip
    yield {"blobs": blobs, "mean": mean, "new": out_new, "old": out_old, "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)  # four full-size files: free the disk for the rest


def _ours(path, images_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The converted file through the package's own predict path: (fc7 after ReLU, softmax)."""
    predictor = Predictor(path, crops=1)
    fc7 = predictor.features(images_rgb).double().numpy()
    return fc7, predictor.probabilities(images_rgb).double().numpy()


def _caffe_input(image_rgb: np.ndarray, mean_bgr: np.ndarray) -> np.ndarray:
    """Caffe's own input: centre 227 crop of the 256 image, BGR, 0..255 minus the mean crop."""
    off = (256 - 227) // 2
    crop = image_rgb[off : off + 227, off : off + 227, ::-1].transpose(2, 0, 1).astype(np.float64)
    return crop - mean_bgr[:, off : off + 227, off : off + 227]


def test_227_makes_caffe_ceil_and_floor_pooling_agree():
    # 227 -> conv1 55 -> pool 27 -> pool 13 -> pool5 6: (n - 3) / 2 is an integer every time
    sizes = [55, 27, 13]
    for n in sizes:
        assert math.ceil((n - 3) / 2) == (n - 3) // 2
    # with 224 and no padding conv1 would not tile: the rounding would matter
    assert (224 - 11) % 4 != 0


def test_both_layouts_give_the_same_tensors(converted):
    a = load(converted["new"])[0].state_dict()
    b = load(converted["old"])[0].state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_mapping_bgr_groups_and_fc6(converted):
    model, meta = load(converted["new"])
    w1, _ = converted["blobs"]["conv1"]
    assert torch.equal(model.features.conv1.weight, torch.from_numpy(w1[:, ::-1].copy()))
    w2, _ = converted["blobs"]["conv2"]  # (256, 48, 5, 5), 2 groups = the paper's 2 towers
    assert model.features.conv2.groups == 2
    assert torch.equal(model.features.conv2.weight, torch.from_numpy(w2))
    assert sum(p.numel() for p in model.parameters()) == 60_965_224  # the paper's count
    assert torch.equal(model.classifier.fc6.weight, torch.from_numpy(converted["blobs"]["fc6"][0]))
    opts = meta.model_config["options"]
    assert (opts["input_size"], opts["lrn_k"], opts["lrn_alpha_convention"], opts["lrn_scope"]) == (
        227, 1.0, "per_size", "all")  # fmt: skip
    assert meta.extra["published"]["top1_err"] == 42.9
    assert meta.classes[:2] == ["class 0, a thing", "class 1, a thing"]  # synset_words.txt
    assert load(converted["old"])[1].classes[:2] == ["tench", "goldfish"]  # default


@pytest.mark.parametrize("which", ["new", "old"])
def test_matches_float64_caffe_layers(converted, which):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (2 if which == "new" else 1, 256, 256, 3), dtype=np.uint8)
    if which == "new":
        mean = converted["mean"]
    else:  # per-channel mean (104, 117, 123) BGR
        mean = np.broadcast_to(np.array(caffe.MEAN_BGR)[:, None, None], (3, 256, 256))
    refs = [reference_forward(_caffe_input(im, mean), converted["blobs"]) for im in images]
    fc7, probs = _ours(converted[which], images)
    ref_fc7 = np.stack([r["relu7"] for r in refs])
    ref_probs = np.stack([r["prob"] for r in refs])
    # fc7 activations are O(100): equal to 1e-4 relative to their scale
    scale = np.abs(ref_fc7).max()
    assert np.abs(fc7 - ref_fc7).max() <= 1e-4 * scale, np.abs(fc7 - ref_fc7).max() / scale
    # the probabilities are spread (no saturated softmax hiding differences): equal to 1e-4
    assert 0.01 < ref_probs.max() < 0.5
    np.testing.assert_allclose(probs, ref_probs, atol=1e-4, rtol=0)
    # our top class is Caffe's, or one tied with it within that tolerance (float rounding may
    # order two nearly equal classes either way on another CPU)
    ours = ref_probs[np.arange(len(refs)), probs.argmax(1)]
    assert (ours >= ref_probs.max(1) - 1e-4).all()


def test_lrn_across_the_tower_boundary_matters(converted):
    """Caffe's LRN window crosses the two groups; normalizing per tower would differ."""
    from caffe_helpers import conv, lrn

    w, b = (t.astype(np.float64) for t in converted["blobs"]["conv1"])
    x = np.random.default_rng(3).uniform(-100, 100, (3, 227, 227))
    a = np.maximum(conv(x, w, b, 4, 0, 1), 0)
    whole = lrn(a)
    towers = np.concatenate([lrn(a[:48]), lrn(a[48:])])
    assert np.abs(whole - towers)[46:50].max() > 1e-3 * np.abs(a).max()


def test_refuses_other_nets(tmp_path, converted):
    k2 = tmp_path / "k2.prototxt"  # another k is expressible
    k2.write_text(DEPLOY.replace("beta: 0.75 }", "beta: 0.75 k: 2 }"))
    arch = caffe.read_layers(k2, text=True)
    assert caffe.check_structure(arch, "k2")["lrn_k"] == 2.0
    wide = tmp_path / "wide.prototxt"
    wide.write_text(DEPLOY.replace("local_size: 5", "local_size: 7", 1))
    with pytest.raises(UserError, match="norm1.*local_size=7"):
        caffe.check_structure(caffe.read_layers(wide, text=True), "wide")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\x0a\x05hello\xff\xff")
    with pytest.raises(UserError, match="bad.caffemodel"):
        caffe.convert(bad, tmp_path / "x.safetensors")
    deploy = tmp_path / "caffenet.prototxt"  # CaffeNet: pool before LRN
    deploy.write_text(DEPLOY.replace('bottom: "conv1" top: "norm1"', 'bottom: "pool1" top: "n"'))
    text = deploy.read_text()
    i, j = text.index('layer { name: "norm1"'), text.index('layer { name: "pool1"')
    k = text.index('layer { name: "conv2"')
    deploy.write_text(text[:i] + text[j:k] + text[i:j] + text[k:])
    with pytest.raises(UserError, match="CaffeNet"):
        caffe.convert(converted["tmp"] / "new.caffemodel", tmp_path / "x.safetensors",
                      deploy=deploy)  # fmt: skip


def test_v1_enum_names_parse_from_text(tmp_path):
    text = 'name: "x" layers { name: "conv1" type: CONVOLUTION convolution_param { group: 2 } }'
    (tmp_path / "v1.prototxt").write_text(text)
    (layer,) = caffe.read_layers(tmp_path / "v1.prototxt", text=True)
    assert (layer.name, layer.type, layer.params.group) == ("conv1", "Convolution", 2)


def test_convert_command_errors(tmp_path, capsys):
    missing = tmp_path / "none.caffemodel"
    assert main(["convert", "caffe", str(missing), str(tmp_path / "o.safetensors")]) == 2
    assert f"{missing}: cannot read" in capsys.readouterr().err
    assert main(["convert", "caffe", str(missing), str(tmp_path / "o.pth")]) == 2
    assert "must be a .safetensors file" in capsys.readouterr().err
    words = tmp_path / "words.txt"
    words.write_text("n1 a\nn2 b\n")
    with pytest.raises(UserError, match="2 class lines, the model has 1000"):
        caffe.read_synset_words(words, 1000)
    assert caffe.read_synset_words(words, 2) == ["a", "b"]
