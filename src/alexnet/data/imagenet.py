"""ImageNet-style layouts: ImageFolder trees, plain class folders, the official ILSVRC2012
tars (paper §2, read in place: workers `pread` each JPEG at its indexed offset), the Kaggle
layout. Each reader lists a layout's images as (classes, {split: [Item]}, skipped (path,
reason)); a `sources.FileSource` decodes them. Class index: the wnid's in sorted order."""

from __future__ import annotations

import csv
import io
import os
import tarfile
from pathlib import Path

import numpy as np

from alexnet.errors import UserError

# (display path, label, file, byte offset or -1 for the whole file, length)
Item = tuple[str, int, str, int, int]
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
TARS = (TRAIN_TAR, VAL_TAR)
KAGGLE_FILES = ("LOC_synset_mapping.txt", "LOC_val_solution.csv")
DEVKIT = "ILSVRC2012_devkit_t12"
Listing = tuple[list[str], dict[str, list[Item]], list[tuple[str, str]]]


# ---------------------------------------------------------------- ImageFolder
def _subdirs(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))


def is_imagefolder(root: Path) -> bool:
    return (root / "train").is_dir() and bool(_subdirs(root / "train"))


def _synset_words(path: Path) -> dict[str, str]:
    """`LOC_synset_mapping.txt` / `synset_words.txt`: lines "n01440764 tench, Tinca tinca"."""
    lines = [line.strip().split(maxsplit=1) for line in path.read_text().splitlines()]
    return {parts[0]: parts[-1] for parts in lines if parts}  # a wnid alone names itself


def _folder_items(d: Path, index: dict[str, int], root: Path) -> list[Item]:
    items = []
    for cls in _subdirs(d):
        if cls.name not in index:
            raise UserError(f"{cls}: class folder not in {root / 'train'}")
        for f in _files(cls):
            items.append((str(f.relative_to(root)), index[cls.name], str(f), -1, 0))
    return items


def is_class_folders(root: Path) -> bool:
    """`<class>/*`: no train/ folder, and class folders that hold files."""
    return not (root / "train").is_dir() and any(_files(d) for d in _subdirs(root))


def _class_items(root: Path, train: Path, val: Path | None):
    """(sorted class names, {split: items}) of `train/<class>/*` (and `val/<class>/*`)."""
    names = [p.name for p in _subdirs(train)]
    index = {n: i for i, n in enumerate(names)}
    items = {"train": _folder_items(train, index, root)}
    if val is not None:
        items["val"] = _folder_items(val, index, root)
    return names, items


def class_folders(root: Path) -> Listing:
    """`SRC/<class>/*`: everything in "train" (the source splits val off it)."""
    if not _subdirs(root):
        raise UserError(f"{root}: no class folders (expected {root}/<class>/<image files>)")
    return (*_class_items(root, root, None), [])


def split_off_val(items: list[Item], fraction: float, seed: int) -> dict[str, list[Item]]:
    """A seeded, stratified split: in each class, round(fraction x its images) of them (at
    least one where the class has two or more), drawn at random, go to "val"; both splits keep
    the listing's order."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        by_class.setdefault(item[1], []).append(i)
    val = set()
    for label in sorted(by_class):
        members = by_class[label]
        n_val = round(fraction * len(members))
        n_val = min(max(n_val, 1 if len(members) > 1 else 0), len(members) - 1)
        val.update(members[j] for j in rng.permutation(len(members))[:n_val])
    return {
        "train": [it for i, it in enumerate(items) if i not in val],
        "val": [it for i, it in enumerate(items) if i in val],
    }


def imagefolder(root: Path) -> Listing:
    """`train/<class>/*` and `val/<class>/*` (or only train/); classes: the sorted train folder
    names (with their words from a LOC_synset_mapping.txt or synset_words.txt in SRC)."""
    if not is_imagefolder(root):
        raise UserError(f"{root}: ImageFolder layout needs train/<class>/ folders")
    val = next((root / d for d in ("val", "validation", "valid") if (root / d).is_dir()), None)
    names, items = _class_items(root, root / "train", val)
    files = [root / f for f in ("LOC_synset_mapping.txt", "synset_words.txt")]
    words = next((_synset_words(f) for f in files if f.is_file()), {})
    return [words.get(n, n) for n in names], items, []


# ---------------------------------------------------------------- official ILSVRC2012 tars
def _devkit_files(root: Path) -> tuple[bytes, bytes]:
    """(meta.mat bytes, validation ground truth bytes) from the devkit dir or tar.gz."""
    for d in (root / DEVKIT, root):
        meta, gt = d / "data" / "meta.mat", d / "data" / "ILSVRC2012_validation_ground_truth.txt"
        if meta.is_file() and gt.is_file():
            return meta.read_bytes(), gt.read_bytes()
    tgz = root / f"{DEVKIT}.tar.gz"
    if not tgz.is_file():
        raise UserError(f"{root}: no ILSVRC2012 devkit ({DEVKIT}.tar.gz or {DEVKIT}/data/meta.mat)")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tgz, "r:*") as tar:
            for m in tar:
                base = os.path.basename(m.name)
                if m.isfile() and base in ("meta.mat", "ILSVRC2012_validation_ground_truth.txt"):
                    found[base] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{tgz}: unreadable devkit ({exc})") from None
    if len(found) != 2:
        raise UserError(f"{tgz}: devkit lacks data/meta.mat or the validation ground truth")
    return found["meta.mat"], found["ILSVRC2012_validation_ground_truth.txt"]


def read_meta(meta: bytes, where: str) -> tuple[list[str], list[str], dict[int, int]]:
    """(sorted wnids, their words, ILSVRC2012_ID -> class index) for the leaf synsets
    (num_children == 0) of the devkit's meta.mat."""
    try:
        import scipy.io
    except ImportError:  # pragma: no cover
        raise UserError("reading the ILSVRC2012 devkit needs scipy (pip install scipy)") from None
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        ids = np.atleast_1d(synsets["ILSVRC2012_ID"]).astype(int)
        wnids = [str(w) for w in np.atleast_1d(synsets["WNID"])]
        words = [str(w) for w in np.atleast_1d(synsets["words"])]
        children = np.atleast_1d(synsets["num_children"]).astype(int)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where}: unreadable meta.mat ({exc})") from None
    leaves = sorted((wnids[i], words[i], ids[i]) for i in range(len(ids)) if children[i] == 0)
    return (
        [w for w, _, _ in leaves],
        [t for _, t, _ in leaves],
        {int(i): k for k, (_, _, i) in enumerate(leaves)},
    )


def _members(tar: tarfile.TarFile):
    """The regular-file members of an open tar, without keeping every header read."""
    while (m := tar.next()) is not None:
        tar.members.clear()
        if m.isfile():
            yield m


def _index_tar(path: Path, display_root: str) -> list[tuple[str, str, int, int]]:
    """(member name, display path, data offset, size) of the regular files in a tar."""
    with tarfile.open(path, "r:") as tar:
        return [(m.name, f"{display_root}/{m.name}", m.offset_data, m.size) for m in _members(tar)]


def _index_train_tar(path: Path, wnid_index: dict[str, int]):
    """Items of ILSVRC2012_img_train.tar (one inner tar per wnid; each JPEG's absolute offset
    in the outer file) and the members that are not a known wnid's tar."""
    skipped: list[tuple[str, str]] = []
    train: list[Item] = []
    file = str(path)  # one string shared by every item
    with tarfile.open(path, "r:") as outer:
        for m in _members(outer):
            wnid = os.path.splitext(os.path.basename(m.name))[0]
            shown = f"{TRAIN_TAR}/{m.name}"
            if not m.name.endswith(".tar") or wnid not in wnid_index:
                skipped.append((shown, "not a per-class tar of a known wnid"))
                continue
            with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                for im in _members(inner):
                    off = m.offset_data + im.offset_data
                    train.append((f"{shown}/{im.name}", wnid_index[wnid], file, off, im.size))
    return train, skipped


def ilsvrc2012(root: Path) -> Listing:
    """ILSVRC2012_img_train.tar (one inner tar per wnid), ILSVRC2012_img_val.tar (flat,
    sorted names = ground-truth line order) and the devkit."""
    for name in TARS:
        if not (root / name).is_file():
            raise UserError(f"{root}: missing {name}")
    meta, gt = _devkit_files(root)
    wnids, words, id_to_class = read_meta(meta, str(root))
    wnid_index = {w: i for i, w in enumerate(wnids)}
    try:
        train, skipped = _index_train_tar(root / TRAIN_TAR, wnid_index)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{root / TRAIN_TAR}: unreadable tar ({exc})") from None
    try:
        labels = [int(t) for t in gt.decode().split()]
        val_members = sorted(_index_tar(root / VAL_TAR, VAL_TAR))
    except (ValueError, tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{root}: unreadable validation tar or ground truth ({exc})") from None
    if len(labels) != len(val_members):
        raise UserError(
            f"{root / VAL_TAR}: {len(val_members)} files but the ground truth lists {len(labels)}"
        )
    val: list[Item] = []
    val_file = str(root / VAL_TAR)  # one string shared by every item
    for (_, shown, off, n), ident in zip(val_members, labels, strict=True):
        if ident not in id_to_class:
            raise UserError(f"{root}: ground truth ILSVRC2012_ID {ident} is not a leaf synset")
        val.append((shown, id_to_class[ident], val_file, off, n))
    return words, {"train": train, "val": val}, skipped


# ---------------------------------------------------------------- Kaggle layout
def kaggle(root: Path) -> Listing:
    """Kaggle's ILSVRC: ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/}, LOC_val_solution.csv
    (first wnid of PredictionString is the label), LOC_synset_mapping.txt (names)."""
    words = _synset_words(root / KAGGLE_FILES[0])
    wnids = sorted(words)
    index = {w: i for i, w in enumerate(wnids)}
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    if not (data / "train").is_dir() or not (data / "val").is_dir():
        raise UserError(f"{root}: Kaggle layout needs ILSVRC/Data/CLS-LOC/train and val")
    train = _folder_items(data / "train", index, root)
    val: list[Item] = []
    skipped: list[tuple[str, str]] = []
    with open(root / KAGGLE_FILES[1], newline="") as f:
        truth = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    for p in _files(data / "val"):
        wnid = truth.get(p.stem)
        shown = str(p.relative_to(root))
        if wnid is None or wnid not in index:
            skipped.append((shown, "no label in LOC_val_solution.csv"))
            continue
        val.append((shown, index[wnid], str(p), -1, 0))
    return [words[w] for w in wnids], {"train": train, "val": val}, skipped


LAYOUTS = {
    "imagefolder": imagefolder,
    "folder": class_folders,
    "ilsvrc2012": ilsvrc2012,
    "kaggle": kaggle,
}
