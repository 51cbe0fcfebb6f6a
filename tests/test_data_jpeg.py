"""`prepare --encoding jpeg`: raw output unchanged, JPEG records against a hand decode, stats
from the decoded pixels, resume and reruns byte-identical, damaged records named, --verify."""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest
from PIL import Image

from alexnet import cli
from alexnet.data import ENCODINGS, pack
from alexnet.data.fields import FIELDS, DamagedRecord, decode_pillow
from alexnet.data.loader import decode_torchvision
from alexnet.data.pack import prepare
from alexnet.data.packed import open_dataset, verify
from alexnet.data.sources import ArraySource

# torchvision 0.29 marks its image codecs deprecated (loader.py silences it outside tests)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

# sha256 of every byte-exact file the raw writer produced before JPEG encoding existed (commit
# 857bfe9), for two fixtures; the raw writer must still produce exactly these bytes. stats.npz
# holds float64 statistics whose last bits depend on the CPU's floating-point code paths: it is
# checked against an independent float64 computation instead (`_check_stats`).
GOLDEN = {
    "cifar10": {
        "header.json": "cba747b2a5784770dd211db050208535cb3297b9a66023c6d60b16d75a196b7c",
        "report.json": "6c26ff2eecc672327bb5951e3565890f0c548dbd87ab20c4eab1bc855e4a6901",
        "train_images.npy": "687df29c1abac04690141d20c64b1f50cb99c02d26493fb5a2fdd809b692ce80",
        "train_labels.npy": "d60a6cc32272a0a05316dc4b6d9a04a321facbe3ccffb0a0f797dd0913848917",
        "val_images.npy": "3207fe000826677dbd694e20202c7c44194adb5fafb717808fcc1493c4bfde4c",
        "val_labels.npy": "7b190ef19c670b28f236da535cb034e866f22ebbf67fe9115a562eaa80d6dcaf",
    },
    "arrays": {
        "header.json": "929a0362364746584667030678d98848383b17017ed85a266fc1c1b7c2131a01",
        "report.json": "344130ff40d4f94fd42a3fdf7fc806095cccb6d41d3c619a7457a469f53fb7c8",
        "train_images.npy": "cbe1584447c5b505db4956bdf7cf99cb55a29f632622505a2153edc0a1700cc0",
        "train_labels.npy": "655983eebc4cf7f123a305686d3d1233ed73ed2e34ed056b696bcd716fc82164",
        "val_images.npy": "3e5cb3beae66aedd3120b39e8a8e1ce1952b4b811ddaec5a18b669fda93e8e5d",
        "val_labels.npy": "23161dd6f47ba2bc86aa55c2a83c790460fd8e30478a70d242a8b9879deb919c",
    },
}


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def _arrays_source() -> ArraySource:
    rng = np.random.default_rng(0)  # the fixture of test_data_pack.test_stats_match_numpy
    base = rng.integers(0, 200, (300, 6, 5, 1))
    images = np.clip(base + rng.integers(0, 56, (300, 6, 5, 3)) * [1, 0.5, 0.2], 0, 255)
    images = images.astype(np.uint8)
    labels = rng.integers(0, 3, 300)
    splits = {"train": (images, labels), "val": (images[:7], labels[:7])}
    return ArraySource("arrays", ["a", "b", "c"], splits, {})


def _check_raw(out: Path, golden: dict[str, str]) -> None:
    got = _hashes(out)
    assert {k: got[k] for k in golden} == golden  # every byte-exact file of before
    assert set(got) - set(golden) == {"stats.npz", "train_crc32.npy", "val_crc32.npy"}
    _check_stats(out)
    for split in ("train", "val"):
        ds = open_dataset(out, split)
        crc = np.load(out / f"{split}_crc32.npy")
        want = [zlib.crc32(np.ascontiguousarray(ds.images[i]).tobytes()) for i in range(len(ds))]
        assert crc.dtype == np.uint32 and crc.tolist() == want


def test_raw_output_is_unchanged(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the header records the SRC path: keep it relative
    dh.cifar10(Path("cifar"), per_batch=20)
    assert cli.main(["prepare", "cifar", "c_out", "--no-progress"]) == 0  # raw: the default
    _check_raw(tmp_path / "c_out", GOLDEN["cifar10"])
    prepare(_arrays_source(), "a_out", chunk_size=64, progress=False)  # several chunks
    _check_raw(tmp_path / "a_out", GOLDEN["arrays"])
    assert "JPEG" not in capsys.readouterr().out


def _check_stats(out: Path) -> None:
    """stats.npz holds what it held before (the same six arrays), each equal within float64
    rounding to a direct numpy computation over the stored training images (paper §2, §4.1)."""
    stats = np.load(out / "stats.npz")
    want = {"mean_image", "channel_mean", "channel_std", "rgb_cov", "eigval", "eigvec"}
    assert set(stats.files) == want and all(stats[k].dtype == np.float64 for k in want)
    x = np.load(out / "train_images.npy").astype(np.float64) / 255
    pix = x.reshape(-1, 3)
    cov = np.cov(pix.T, bias=True)
    np.testing.assert_allclose(stats["mean_image"], x.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["channel_mean"], pix.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["channel_std"], pix.std(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["rgb_cov"], cov, rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["eigval"], np.linalg.eigvalsh(cov)[::-1], rtol=1e-9)
    for i in range(3):  # unit eigenvectors as columns, largest |component| positive
        v = stats["eigvec"][:, i]
        np.testing.assert_allclose(cov @ v, stats["eigval"][i] * v, rtol=0, atol=1e-12)
        assert abs(np.linalg.norm(v) - 1) < 1e-12 and v[np.argmax(np.abs(v))] > 0


def _hand_decode(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    return np.asarray(img.convert("RGB"))


def test_the_command_line_offers_every_field():
    assert tuple(FIELDS) == ENCODINGS  # the data package names them without importing numpy


def test_jpeg_records_decode_by_hand_to_the_dataset(tmp_path):
    src = dh.photo_source(n=30, n_val=6, size=32, gray_every=5)
    prepare(src, tmp_path / "j", encoding="jpeg", quality=90, progress=False, workers=1)
    header = json.loads((tmp_path / "j" / "header.json").read_text())
    assert (header["version"], header["encoding"], header["quality"]) == (2, "jpeg", 90)
    for split, (want_images, want_labels) in src.arrays.items():
        ds = open_dataset(tmp_path / "j", split)
        assert ds.encoding == "jpeg" and len(ds) == len(want_labels)
        data = (tmp_path / "j" / f"{split}_images.jpeg").read_bytes()
        off = np.load(tmp_path / "j" / f"{split}_offsets.npy")
        crc = np.load(tmp_path / "j" / f"{split}_crc32.npy")
        assert off[0] == 0 and off[-1] == len(data) and len(off) == len(ds) + 1
        decoded = []
        for i in range(len(ds)):
            rec = data[off[i] : off[i + 1]]
            assert rec[:2] == b"\xff\xd8" and zlib.crc32(rec) == crc[i]
            image, label = ds[i]
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
            assert np.array_equal(image, _hand_decode(rec)) and label == want_labels[i]
            gray = Image.open(io.BytesIO(rec)).mode == "L"
            assert gray == (i % 5 == 0)  # equal channels are stored as a one-channel JPEG
            decoded.append(image)
        err = np.stack(decoded).astype(np.float64) - want_images
        assert 10 * np.log10(255**2 / np.mean(err**2)) >= 35  # the PSNR goal, vs raw pixels
        assert np.array_equal(np.asarray(ds.images), np.stack(decoded))
        assert np.array_equal(ds.images[2:5], np.stack(decoded[2:5]))
        assert np.array_equal(ds.images[[4, 1]], np.stack([decoded[4], decoded[1]]))


def test_both_cpu_decoders_give_the_same_pixels(tmp_path):
    prepare(dh.photo_source(n=12, size=40, gray_every=4), tmp_path / "j", encoding="jpeg",
            progress=False, workers=1)  # fmt: skip
    images = open_dataset(tmp_path / "j").images
    a, b = np.empty((40, 40, 3), np.uint8), np.empty((40, 40, 3), np.uint8)
    for i in range(len(images)):
        decode_pillow(images.record(i), a)
        decode_torchvision(images.record(i), b)
        assert np.array_equal(a, b), i


def test_stats_are_those_of_the_decoded_pixels(tmp_path):
    src = dh.photo_source(n=50, size=16)
    prepare(src, tmp_path / "j", encoding="jpeg", quality=50, progress=False, workers=1)
    ds = open_dataset(tmp_path / "j")
    data = (tmp_path / "j" / "train_images.jpeg").read_bytes()
    off = np.load(tmp_path / "j" / "train_offsets.npy")
    x = np.stack([_hand_decode(data[off[i] : off[i + 1]]) for i in range(len(ds))]) / 255.0
    pix = x.reshape(-1, 3)
    st = ds.stats
    np.testing.assert_allclose(st.mean_image, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(st.rgb_cov, np.cov(pix.T, bias=True), atol=1e-12)
    raw = src.arrays["train"][0] / 255.0
    assert np.abs(st.mean_image - raw.mean(0)).max() > 1e-4  # q50 moved them: not the raw ones


def _interrupt_after(monkeypatch, chunks: int) -> None:
    """Stop prepare (as Ctrl-C would) once `chunks` chunks have been saved."""
    real, saved = pack._save_state, []

    def save(*args, **kw):
        real(*args, **kw)
        saved.append(1)
        if len(saved) == chunks + 1:  # the first save is the empty start state
            raise KeyboardInterrupt

    monkeypatch.setattr(pack, "_save_state", save)


def test_jpeg_resume_rerun_and_fingerprint(tmp_path, monkeypatch):
    def run(out, **kw):
        return prepare(dh.photo_source(n=70), tmp_path / out, chunk_size=16, progress=False,
                       workers=1, encoding="jpeg", **kw)  # fmt: skip

    run("ref")
    run("again")
    assert _snapshot(tmp_path / "ref") == _snapshot(tmp_path / "again")  # byte-identical rerun
    with monkeypatch.context() as m:
        _interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            run("out")
    partial = tmp_path / "out.partial"
    assert not (tmp_path / "out").exists() and partial.is_dir()  # atomic: nothing under OUT
    with open(partial / "train_images.jpeg", "ab") as f:
        f.write(b"half of a chunk whose state was never saved")
    run("out")
    assert not partial.exists()
    assert _snapshot(tmp_path / "ref") == _snapshot(tmp_path / "out")
    fps = {open_dataset(tmp_path / "ref").fingerprint}
    run("q95", quality=95)
    prepare(dh.photo_source(n=70), tmp_path / "raw", progress=False)
    prepare(dh.photo_source(n=70, seed=1), tmp_path / "other", encoding="jpeg", progress=False)
    fps |= {open_dataset(tmp_path / d).fingerprint for d in ("q95", "raw", "other")}
    assert len(fps) == 4


def test_a_damaged_record_is_named_when_read_and_by_verify(tmp_path, capsys):
    out = tmp_path / "j"
    assert cli.main(["prepare", "s", str(out), "--source", "synthetic", "--count", "40",
                     "--encoding", "jpeg", "--quality", "95", "--no-progress"]) == 0  # fmt: skip
    assert "(JPEG q95)" in capsys.readouterr().out
    assert cli.main(["prepare", "--verify", str(out)]) == 0
    assert "0 damaged, fingerprint matches" in capsys.readouterr().out
    off = np.load(out / "train_offsets.npy")
    dh.flip_bit(out / "train_images.jpeg", int(off[17]) + 300)  # inside record 17's data
    ds = open_dataset(out)
    ds[16], ds[18]  # its neighbours are intact
    with pytest.raises(DamagedRecord) as info:
        ds[17]
    msg = str(info.value)
    assert f"{out}: train record 17 is damaged" in msg and f"prepare --verify {out}" in msg
    assert "\n" not in msg and (info.value.split, info.value.index) == ("train", 17)
    assert cli.main(["prepare", "--verify", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{out}: train record 17: its bytes do not match their CRC32"
    assert "1 damaged" in err[1]
    v = verify(out)
    assert [(split, i) for split, i, _ in v.damaged] == [("train", 17)] and not v.ok


def test_verify_raw_names_the_record_and_catches_a_changed_label(tmp_path):
    out = tmp_path / "r"
    prepare(dh.photo_source(n=20), out, progress=False)
    assert verify(out).ok
    n_img = 32 * 32 * 3
    dh.flip_bit(out / "val_images.npy", 128 + 3 * n_img + 7)  # .npy header, then image 3
    assert [(split, i) for split, i, _ in verify(out).damaged] == [("val", 3)]
    j = tmp_path / "j"
    prepare(dh.photo_source(n=20), j, encoding="jpeg", progress=False)
    labels = np.load(j / "train_labels.npy")
    labels[4] = (labels[4] + 1) % 3  # still a valid class: only the fingerprint can tell
    np.save(j / "train_labels.npy", labels)
    v = verify(j)
    assert v.damaged == [] and v.fingerprint_ok is False and not v.ok


def test_head_is_a_view_of_the_first_images(tmp_path):
    prepare(dh.photo_source(n=20), tmp_path / "j", encoding="jpeg", progress=False)
    ds = open_dataset(tmp_path / "j")
    head = ds.head(5)
    assert len(head) == 5 and head.images.shape == (5, 32, 32, 3) and len(ds) == 20
    assert (head.classes, head.fingerprint, head.encoding) == (ds.classes, ds.fingerprint, "jpeg")
    assert np.array_equal(head.stats.mean_image, ds.stats.mean_image)
    assert np.array_equal(np.asarray(head.images), np.asarray(ds.images)[:5])
    assert head.labels.tolist() == ds.labels[:5].tolist()
    assert len(ds.head(100)) == 20


def test_jpeg_from_image_files_reports_bad_files_as_raw_does(tmp_path, capsys):
    truth = dh.imagefolder(tmp_path / "src", per_class=2, val_per_class=1)
    bad = tmp_path / "src" / truth["train"][1][0]
    bad.write_bytes(b"")  # a zero-byte file: skipped and listed
    for enc in ("raw", "jpeg"):
        args = ["prepare", str(tmp_path / "src"), str(tmp_path / enc), "--size", "16",
                "--encoding", enc, "--workers", "2", "--no-progress"]  # fmt: skip
        assert cli.main(args) == 0
    assert cli.main(["prepare", str(tmp_path / "src"), str(tmp_path / "x"), "--quality", "80"]) == 2
    assert "--quality sets the JPEG quality" in capsys.readouterr().err
    reports = [json.loads((tmp_path / e / "report.json").read_text()) for e in ("raw", "jpeg")]
    assert reports[0] == reports[1] and reports[1]["splits"] == {"train": 5, "val": 3}
    assert reports[1]["skipped"] == [
        {"path": truth["train"][1][0], "reason": "empty file (0 bytes)"}
    ]
    raw, jp = open_dataset(tmp_path / "raw"), open_dataset(tmp_path / "jpeg")
    assert jp.labels.tolist() == raw.labels.tolist()
    err = np.asarray(jp.images).astype(float) - np.asarray(raw.images)
    assert 10 * np.log10(255**2 / np.mean(err**2)) >= 35
