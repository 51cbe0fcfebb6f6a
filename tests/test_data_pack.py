"""`prepare`: statistics against numpy, atomicity, and interrupt-and-rerun equality."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest

from alexnet.data.pack import PROGRESS, prepare
from alexnet.data.packed import open_dataset
from alexnet.data.sources import ArraySource, SyntheticSource, open_source
from alexnet.errors import UserError


def test_stats_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    # correlated colours so the covariance has distinct eigenvalues
    base = rng.integers(0, 200, (300, 6, 5, 1))
    images = np.clip(base + rng.integers(0, 56, (300, 6, 5, 3)) * [1, 0.5, 0.2], 0, 255)
    images = images.astype(np.uint8)
    labels = rng.integers(0, 3, 300)
    val = (images[:7], labels[:7])
    src = ArraySource("arrays", ["a", "b", "c"], {"train": (images, labels), "val": val}, {})
    prepare(src, tmp_path / "out", chunk_size=64, progress=False)  # several chunks
    ds = open_dataset(tmp_path / "out")
    s = ds.stats
    x = images.astype(np.float64) / 255
    pix = x.reshape(-1, 3)
    np.testing.assert_allclose(s.mean_image, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(s.channel_mean, pix.mean(0), atol=1e-12)
    np.testing.assert_allclose(s.channel_std, pix.std(0), atol=1e-12)
    np.testing.assert_allclose(s.rgb_cov, np.cov(pix.T, bias=True), atol=1e-12)
    ref_val = np.linalg.eigvalsh(np.cov(pix.T, bias=True))[::-1]
    np.testing.assert_allclose(s.eigval, ref_val, rtol=1e-9)
    assert np.all(np.diff(s.eigval) <= 0)
    for i in range(3):  # columns are the eigenvectors
        v = s.eigvec[:, i]
        np.testing.assert_allclose(s.rgb_cov @ v, s.eigval[i] * v, atol=1e-12)
        assert abs(np.linalg.norm(v) - 1) < 1e-12
    assert s.mean_image.dtype == np.float64
    assert np.array_equal(ds.images, images) and np.array_equal(ds.labels, labels)
    assert np.array_equal(open_dataset(tmp_path / "out", "val").images, images[:7])
    assert ds.images.flags.writeable is False


def test_fingerprint_changes_with_content(tmp_path):
    a = prepare(SyntheticSource(count=40, image_size=8, seed=1), tmp_path / "a", progress=False)
    prepare(SyntheticSource(count=40, image_size=8, seed=1), tmp_path / "b", progress=False)
    prepare(SyntheticSource(count=40, image_size=8, seed=2), tmp_path / "c", progress=False)
    assert a["splits"] == {"train": 40, "val": 8}
    fa, fb, fc = (open_dataset(tmp_path / n).fingerprint for n in "abc")
    assert fa == fb != fc


def test_existing_out_and_overwrite(tmp_path):
    src = SyntheticSource(count=20, image_size=8)
    prepare(src, tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="already exists"):
        prepare(src, tmp_path / "o", progress=False)
    prepare(SyntheticSource(count=30, image_size=8), tmp_path / "o", overwrite=True, progress=False)
    assert len(open_dataset(tmp_path / "o")) == 30


def _progress_chunks(partial: Path) -> int:
    try:
        with np.load(partial / PROGRESS) as z:
            state = json.loads(str(z["state"]))
        return state["splits"]["train"]["chunk"]
    except Exception:
        return 0


def test_interrupt_and_rerun_equals_uninterrupted(tmp_path):
    src = tmp_path / "src"
    for c in range(2):
        d = src / "train" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(75):  # 150 train images = 3 chunks of 64
            (d / f"{i:03d}.JPEG").write_bytes(dh.jpeg_bytes(dh.photo(c * 100 + i, 24, 20)))
        (src / "val" / f"class{c}").mkdir(parents=True)
        (src / "val" / f"class{c}" / "v.JPEG").write_bytes(dh.jpeg_bytes(dh.photo(c, 24, 20)))
    (src / "train" / "class0" / "000.JPEG").write_bytes(b"")  # a report entry before the kill
    out = tmp_path / "out"
    args = ["prepare", str(src), str(out), "--size", "16", "--workers", "2", "--no-progress"]
    cmd = [sys.executable, "-m", "alexnet", *args]
    slow = [sys.executable, "-c", dh.SLOW_PREPARE, *args]  # 0.5 s after each saved chunk
    proc = subprocess.Popen(slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "out.partial"
    deadline = time.time() + 60
    while _progress_chunks(partial) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= _progress_chunks(partial) < 3, "killed too late to test resuming"
    assert not out.exists()  # atomic: no half-written dataset under the final name
    with pytest.raises(UserError):
        open_dataset(partial)
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    ref = tmp_path / "ref"
    prepare(open_source(str(src), size=16), ref, workers=1, progress=False)
    names = sorted(p.name for p in ref.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    for name in names:
        assert (ref / name).read_bytes() == (out / name).read_bytes(), name
    assert open_dataset(out).labels.tolist() == [0] * 74 + [1] * 75
