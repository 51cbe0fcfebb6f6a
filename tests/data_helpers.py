"""Generators of small datasets in the exact official layouts, for the data tests."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo(seed: int, w: int = 40, h: int = 30) -> np.ndarray:
    """A smooth, colourful (h, w, 3) uint8 image (JPEG-friendly), distinct per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(40, 215, 3)
    gx, gy = rng.uniform(-1.5, 1.5, 3), rng.uniform(-1.5, 1.5, 3)
    img = base + gx * (xx[..., None] - w / 2) + gy * (yy[..., None] - h / 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, quality: int = 95, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
WORDS = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark", "tiger shark"]


def imagefolder(root: Path, per_class: int = 3, val_per_class: int = 2) -> dict:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG; returns {split: [(relpath, label)]}."""
    out: dict = {"train": [], "val": []}
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c, wnid in enumerate(WNIDS[:3]):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                name = f"{wnid}_{i}.JPEG"
                (d / name).write_bytes(
                    jpeg_bytes(photo(100 * c + i + (50 if split == "val" else 0)))
                )
                out[split].append((f"{split}/{wnid}/{name}", c))
    return out


def write_meta_mat(path: Path, order: list[int]) -> dict[int, str]:
    """A devkit meta.mat whose ILSVRC2012_IDs (1-based) follow `order` (a permutation of the
    leaf wnids), plus one non-leaf synset. Returns {ILSVRC2012_ID: wnid}."""
    import scipy.io

    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"),
             ("num_children", "O"), ("children", "O"), ("wordnet_height", "O"),
             ("num_train_images", "O")]  # fmt: skip
    rows = []
    id_to_wnid = {}
    for k, leaf in enumerate(order):
        ident = k + 1
        id_to_wnid[ident] = WNIDS[leaf]
        rows.append((ident, WNIDS[leaf], WORDS[leaf], "gloss", 0, np.zeros(0), 0, 10))
    rows.append((len(order) + 1, "n00000001", "entity", "root", len(order),
                 np.arange(1, len(order) + 1), 5, 0))  # fmt: skip
    synsets = np.array(rows, dtype=dtype)
    scipy.io.savemat(str(path), {"synsets": synsets})
    return id_to_wnid


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def ilsvrc2012(root: Path, per_class: int = 2, n_val: int = 6) -> dict:
    """ILSVRC2012_img_train.tar (per-wnid inner tars), ILSVRC2012_img_val.tar and
    ILSVRC2012_devkit_t12.tar.gz with IDs not in sorted-wnid order.
    Returns {"train": {name: class}, "val": {name: class}} with class = sorted-wnid index."""
    root.mkdir(parents=True, exist_ok=True)
    order = [2, 0, 3, 1]  # ID 1 -> WNIDS[2], ID 2 -> WNIDS[0], ...
    devkit = root / "devkit_tmp"
    (devkit / "data").mkdir(parents=True)
    id_to_wnid = write_meta_mat(devkit / "data" / "meta.mat", order)
    wnid_to_id = {w: i for i, w in id_to_wnid.items()}
    sorted_index = {w: k for k, w in enumerate(sorted(WNIDS))}
    truth: dict = {"train": {}, "val": {}}
    with tarfile.open(root / "ILSVRC2012_img_train.tar", "w") as outer:
        for c, wnid in enumerate(WNIDS):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for i in range(per_class):
                    name = f"{wnid}_{i}.JPEG"
                    _add(inner, name, jpeg_bytes(photo(10 * c + i)))
                    truth["train"][name] = sorted_index[wnid]
            _add(outer, f"{wnid}.tar", buf.getvalue())
    rng = np.random.default_rng(0)
    gt = []
    with tarfile.open(root / "ILSVRC2012_img_val.tar", "w") as tar:
        names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, n_val + 1)]
        for i in rng.permutation(n_val):  # tar order differs from sorted order
            wnid = WNIDS[i % 4]
            _add(tar, names[i], jpeg_bytes(photo(1000 + i)))
            truth["val"][names[i]] = sorted_index[wnid]
        for i in range(n_val):
            gt.append(str(wnid_to_id[WNIDS[i % 4]]))
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(gt) + "\n")
    with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
        tar.add(devkit, arcname="ILSVRC2012_devkit_t12")
    import shutil

    shutil.rmtree(devkit)
    return truth


def kaggle(root: Path, per_class: int = 2, n_val: int = 5) -> dict:
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    wnids = WNIDS[::-1]  # mapping file order need not matter
    (root / "LOC_synset_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text(
        "".join(f"{w} {t}\n" for w, t in zip(wnids, WORDS[::-1], strict=True))
    )
    sorted_index = {w: k for k, w in enumerate(sorted(WNIDS))}
    truth: dict = {"train": {}, "val": {}}
    for c, wnid in enumerate(WNIDS):
        d = data / "train" / wnid
        d.mkdir(parents=True)
        for i in range(per_class):
            (d / f"{wnid}_{i}.JPEG").write_bytes(jpeg_bytes(photo(20 * c + i)))
            truth["train"][f"{wnid}_{i}.JPEG"] = sorted_index[wnid]
    (data / "val").mkdir(parents=True)
    lines = ["ImageId,PredictionString"]
    for i in range(n_val):
        name = f"ILSVRC2012_val_{i + 1:08d}"
        wnid = WNIDS[(3 * i + 1) % 4]
        (data / "val" / f"{name}.JPEG").write_bytes(jpeg_bytes(photo(500 + i)))
        lines.append(f"{name},{wnid} 1 2 30 40 {wnid} 3 4 20 20")
        truth["val"][f"{name}.JPEG"] = sorted_index[wnid]
    (root / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n")
    return truth


def cifar10(root: Path, per_batch: int = 20) -> dict:
    """cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} with random data."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out: dict = {"train": ([], []), "val": ([], [])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        split = "val" if name == "test_batch" else "train"
        out[split][0].append(data)
        out[split][1].extend(labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]  # fmt: skip
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return {s: (np.concatenate(x), np.array(y)) for s, (x, y) in out.items()}


# A `prepare` slowed down after each saved chunk (monkeypatched in the child process only), so
# that Ctrl-C lands in the middle of the work.
SLOW_PREPARE = """
import sys, time
import alexnet.data.pack as pack
from alexnet.cli import main
save = pack._save_state
def slow(*a, **k):
    save(*a, **k)
    time.sleep(0.5)
pack._save_state = slow
sys.exit(main(sys.argv[1:]))
"""


def small_weights(path: Path, data: Path, seed: int = 0, crop: int = 32) -> Path:
    """Untrained `small` weights (32 px RGB) for the packed dataset `data`, saved with metadata;
    `crop` is the crop size the metadata claims (to test the checks made before the model)."""
    import torch

    from alexnet import get_model
    from alexnet.data.packed import open_dataset
    from alexnet.weights import save as save_weights

    torch.manual_seed(seed)
    classes = open_dataset(data).classes
    model = get_model("small", num_classes=len(classes), in_channels=3, input_size=32)
    preprocess = {"crop_size": crop, "resize": None, "out_channels": 3, "normalize": "channel",
                  "mean": [0.5] * 3, "std": [0.25] * 3}  # fmt: skip
    save_weights(path, model.state_dict(), model_config=model.config, classes=classes,
                 preprocess=preprocess)  # fmt: skip
    return path


def synthetic_data(path: Path, seed: int = 0, count: int = 40) -> Path:
    """A packed synthetic dataset: 4 classes of 32 px images."""
    from alexnet.cli import main

    args = ["prepare", "synthetic", path, "--source", "synthetic", "--classes", "4",
            "--count", count, "--image-size", "32", "--seed", seed, "--workers", "1",
            "--no-progress"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return path


def photo_arrays(n: int, size: int = 32, seed: int = 0, gray_every: int = 0):
    """(n, size, size, 3) uint8 smooth photos (JPEG-friendly) and labels (n,) in 0..2; with
    `gray_every` > 0 every gray_every-th image has three equal channels."""
    imgs = np.stack([photo(seed * 100_003 + i, size, size) for i in range(n)])
    if gray_every:
        imgs[::gray_every] = imgs[::gray_every, :, :, :1]
    return imgs, np.arange(n, dtype=np.int64) % 3


def photo_source(n: int = 40, n_val: int = 8, size: int = 32, seed: int = 0, gray_every: int = 0):
    """An ArraySource of `photo_arrays` (train n, val n_val), 3 classes."""
    from alexnet.data.sources import ArraySource

    train = photo_arrays(n, size, seed, gray_every)
    val = photo_arrays(n_val, size, seed + 1, gray_every)
    return ArraySource("photos", ["a", "b", "c"], {"train": train, "val": val}, {"seed": seed})


def flip_bit(path: Path, offset: int, bit: int = 4) -> None:
    """Flip one bit of a file in place (a damaged disk block)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def cli(capsys, *argv) -> tuple[int, str, str]:
    """`alexnet ARGV` in this process: (exit status, stdout, stderr)."""
    from alexnet.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err
