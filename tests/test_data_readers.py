"""Each reader against files generated in the exact official layout."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest
from PIL import Image

from alexnet.data.pack import prepare
from alexnet.data.packed import open_dataset
from alexnet.data.sources import FASHION_MNIST_CLASSES, open_source
from alexnet.errors import UserError

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _pack(src, out, kind="auto", **kw):
    source = open_source(str(src), kind, size=kw.pop("size", 32), **kw)
    return source, prepare(source, out, workers=2, progress=False)


def _expected(arr: np.ndarray, size: int) -> np.ndarray:
    """Independent reference for the paper's preprocessing: PIL resize + centre crop."""
    img = Image.fromarray(arr)
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def test_imagefolder(tmp_path):
    files = dh.imagefolder(tmp_path / "src")
    source, report = _pack(tmp_path / "src", tmp_path / "out", size=24)
    assert source.name == "imagefolder"
    assert report["splits"] == {"train": 9, "val": 6}
    for split in ("train", "val"):
        ds = open_dataset(tmp_path / "out", split)
        assert ds.classes == dh.WNIDS[:3] and ds.image_size == (24, 24)
        for i, (rel, label) in enumerate(files[split]):  # sorted class, then sorted file order
            img, lab = ds[i]
            assert lab == label
            ref = _expected(np.asarray(Image.open(tmp_path / "src" / rel).convert("RGB")), 24)
            assert np.abs(img.astype(int) - ref).max() <= 3  # JPEG draft decoding may differ


def _class_folders(root: Path, counts: dict[str, int]) -> dict[str, list[str]]:
    """root/<class>/<i>.jpg for each class; returns {class: [relative paths]}."""
    files = {}
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        files[name] = []
        for i in range(n):
            (root / name / f"{i:03d}.jpg").write_bytes(dh.jpeg_bytes(dh.photo(7 * c + i)))
            files[name].append(f"{name}/{i:03d}.jpg")
    return files


def test_plain_class_folders_get_a_seeded_stratified_val_split(tmp_path, capsys):
    """photos/<class>/*.jpg (no train/ or val/): prepare holds out round(f x n) images of each
    class (at least one of a class with two), drawn with --seed; train and val partition the
    files; the split is recorded in report.json and said in one line."""
    from alexnet import cli

    counts = {"cats": 20, "dogs": 10, "owls": 2, "solo": 1}
    files = _class_folders(tmp_path / "photos", counts)
    argv = ["prepare", str(tmp_path / "photos"), str(tmp_path / "a"), "--size", "16",
            "--val-fraction", "0.25", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert "0.25 of each class held out" in capsys.readouterr().out
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["val_split"] == {"val_fraction": 0.25, "seed": 0, "stratified": True}
    source = open_source(str(tmp_path / "photos"), val_fraction=0.25, size=16)
    assert source.name == "folder" and source.classes == list(counts)
    listed = {s: [item[0] for item in source.items[s]] for s in ("train", "val")}
    per_class = {c: sum(p.startswith(c + "/") for p in listed["val"]) for c in counts}
    assert per_class == {"cats": 5, "dogs": 2, "owls": 1, "solo": 0}  # round(0.25 n), >= 1 of 2
    assert sorted(listed["train"] + listed["val"]) == sorted(sum(files.values(), []))
    assert report["splits"] == {"train": 33 - 8, "val": 8}
    val = open_dataset(tmp_path / "a", "val")
    labels = [int(v) for v in val.labels]
    assert labels == [0] * 5 + [1] * 2 + [2]  # the listing's order: class, then file
    again = open_source(str(tmp_path / "photos"), val_fraction=0.25, size=16)
    other = open_source(str(tmp_path / "photos"), val_fraction=0.25, size=16, seed=1)
    assert again.items == source.items and other.items["val"] != source.items["val"]
    default = open_source(str(tmp_path / "photos"), size=16)  # 10 % unless told
    assert len(default.items["val"]) == 2 + 1 + 1 + 0 and default.split["val_fraction"] == 0.1


def test_val_fraction_of_a_folder_with_its_own_val_split_is_refused(tmp_path):
    dh.imagefolder(tmp_path / "src")
    with pytest.raises(UserError, match="has a validation split of its own"):
        open_source(str(tmp_path / "src"), val_fraction=0.2)
    only_train = tmp_path / "src2"  # an ImageFolder with train/ only: split as a plain folder
    only_train.mkdir()
    (tmp_path / "src" / "train").rename(only_train / "train")
    source = open_source(str(only_train), val_fraction=1 / 3)
    assert source.name == "imagefolder" and len(source.items["val"]) == 3  # 1 of each 3


def test_ilsvrc2012_tars_and_devkit(tmp_path):
    truth = dh.ilsvrc2012(tmp_path / "src")
    source, report = _pack(tmp_path / "src", tmp_path / "out")
    assert source.name == "ilsvrc2012"
    order = sorted(range(4), key=lambda i: dh.WNIDS[i])
    assert report["classes"] == [dh.WORDS[i] for i in order]
    assert report["splits"] == {"train": 8, "val": 6}
    assert not list(tmp_path.glob("src/**/*.JPEG"))  # nothing unpacked to disk
    val = open_dataset(tmp_path / "out", "val")
    names = sorted(truth["val"])
    assert val.labels.tolist() == [truth["val"][n] for n in names]
    train = open_dataset(tmp_path / "out", "train")
    assert sorted(train.labels.tolist()) == sorted(truth["train"].values())
    # image content: the first val image is ILSVRC2012_val_00000001 = photo(1000 + 0)
    ref = _expected(
        np.asarray(Image.open(__import__("io").BytesIO(dh.jpeg_bytes(dh.photo(1000))))), 32
    )
    assert np.abs(val[0][0].astype(int) - ref).max() <= 3


def test_ilsvrc2012_meta_ids_not_sorted(tmp_path):
    from alexnet.data.imagenet import read_meta

    id_to_wnid = dh.write_meta_mat(tmp_path / "meta.mat", [3, 1, 0, 2])
    wnids, words, id_to_class = read_meta((tmp_path / "meta.mat").read_bytes(), "meta")
    assert wnids == sorted(dh.WNIDS)
    for ident, wnid in id_to_wnid.items():
        assert wnids[id_to_class[ident]] == wnid
    assert 5 not in id_to_class  # the non-leaf synset


def test_kaggle(tmp_path):
    truth = dh.kaggle(tmp_path / "src")
    source, report = _pack(tmp_path / "src", tmp_path / "out")
    assert source.name == "kaggle"
    assert report["classes"] == [dh.WORDS[dh.WNIDS.index(w)] for w in sorted(dh.WNIDS)]
    val = open_dataset(tmp_path / "out", "val")
    assert val.labels.tolist() == [truth["val"][n] for n in sorted(truth["val"])]
    train = open_dataset(tmp_path / "out", "train")
    assert train.labels.tolist() == [truth["train"][n] for n in sorted(truth["train"])]


def test_cifar10(tmp_path):
    ref = dh.cifar10(tmp_path / "src")
    source, report = _pack(tmp_path / "src", tmp_path / "out")
    assert source.name == "cifar10" and report["classes"][3] == "cat"
    for split in ("train", "val"):
        ds = open_dataset(tmp_path / "out", split)
        data, labels = ref[split]
        assert ds.image_size == (32, 32)
        assert np.array_equal(ds.labels, labels)
        # independent: channel c of pixel (y, x) is data[n, c*1024 + y*32 + x]
        n, y, x = 3, 5, 7
        for c in range(3):
            assert ds.images[n, y, x, c] == data[n, c * 1024 + y * 32 + x]


@pytest.mark.skipif(not FMNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_real(tmp_path):
    source, report = _pack(FMNIST, tmp_path / "out")
    assert report["splits"] == {"train": 60000, "val": 10000}
    assert report["classes"] == FASHION_MNIST_CLASSES == [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]  # fmt: skip
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read()[8:], np.uint8)
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
    val = open_dataset(tmp_path / "out", "val")
    assert np.array_equal(val.labels, labels)
    assert np.array_equal(val.images[:, :, :, 1], images)
    assert np.array_equal(val.images[..., 0], val.images[..., 2])
    assert np.bincount(open_dataset(tmp_path / "out").labels).tolist() == [6000] * 10


def test_synthetic_independent_of_chunking(tmp_path):
    from alexnet.data.sources import SyntheticSource

    src = SyntheticSource(classes=3, count=1100, image_size=8, seed=5)
    whole = src.load("train", 0, 1100)
    parts = [src.load("train", a, min(a + 300, 1100)) for a in range(0, 1100, 300)]
    assert np.array_equal(whole.images, np.concatenate([p.images for p in parts]))
    assert np.array_equal(whole.labels, np.concatenate([p.labels for p in parts]))
    other = SyntheticSource(classes=3, count=1100, image_size=8, seed=6).load("train", 0, 10)
    assert not np.array_equal(other.images, whole.images[:10])
    assert set(whole.labels.tolist()) == {0, 1, 2}


def test_cli_errors_one_line(tmp_path, capsys):
    from alexnet.cli import main

    def err(argv):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "no such file" in err(["prepare", str(tmp_path / "missing"), str(tmp_path / "o")])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    assert "unrecognized dataset layout" in err(
        ["prepare", str(tmp_path / "junk"), str(tmp_path / "o")]
    )
    (tmp_path / "exists").mkdir()
    assert "already exists" in err(["prepare", "synthetic", str(tmp_path / "exists")])
    with pytest.raises(UserError, match="not a packed dataset"):
        open_dataset(tmp_path / "junk")
    # the synthetic path through the CLI writes the report and prints one summary line
    assert main(["prepare", "x", str(tmp_path / "syn"), "--source", "synthetic", "--count", "50",
                 "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "50 train + 10 val" in out[0]
    report = json.loads((tmp_path / "syn" / "report.json").read_text())
    assert set(report) == {"splits", "classes", "skipped", "repaired"}
    assert not os.path.exists(tmp_path / "syn.partial")


def test_the_source_names_the_parser_offers_are_the_readers_registered():
    """`prepare --source` offers `alexnet.data.SOURCE_NAMES` (torch-free, for the parser); the
    readers live in their registries: the two lists must not drift apart."""
    from alexnet.data import SOURCE_NAMES, imagenet, sources

    assert SOURCE_NAMES == ["auto", *imagenet.LAYOUTS, *sources.ARRAYS, "synthetic"]
