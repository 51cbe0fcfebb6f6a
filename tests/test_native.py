"""Building and loading the CPU kernels: cache, fallbacks, and what the user is told."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_lrn import reference_lrn

from alexnet.models import native
from alexnet.models.lrn import LRN

has_compiler = pytest.mark.skipif(native._compiler() is None, reason="no C compiler here")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """The kernels not loaded yet, with an empty cache dir; restored after the test."""
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_TRIED", False)
    monkeypatch.setattr(native, "_LIBRARY", None)
    monkeypatch.setattr(native, "_REASON", "")
    return tmp_path


@has_compiler
def test_kernels_build_into_the_cache_dir(fresh):
    assert native.library() is not None
    assert len(list((fresh / "cache").glob("kernels-*.so"))) == 1
    assert not list((fresh / "cache").glob("*.tmp"))


@has_compiler
def test_unusable_cache_dir_builds_in_a_temporary_dir(fresh, monkeypatch):
    (fresh / "a-file").write_text("not a directory")
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(fresh / "a-file" / "alexnet"))
    (fresh / "tmp").mkdir()
    monkeypatch.setattr(native.tempfile, "tempdir", str(fresh / "tmp"))
    assert native.library() is not None
    assert len(list((fresh / "tmp").glob("alexnet-*/kernels-*.so"))) == 1


def test_without_a_compiler_falls_back_with_one_warning(fresh, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    x = torch.randn(2, 8, 3, 3) * 30
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        out = LRN()(x)
    assert torch.allclose(out.double(), reference_lrn(x), rtol=1e-5, atol=1e-4)
    assert "no C compiler" in native.reason_unavailable()
    assert not (fresh / "cache").exists()


@pytest.mark.skipif(shutil.which("false") is None, reason="needs the `false` command")
def test_a_failing_compiler_falls_back_and_says_why(fresh, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: "false")  # runs, exits 1
    x = torch.randn(2, 8, 3, 3) * 30
    with pytest.warns(RuntimeWarning, match="false failed"):
        out = LRN()(x)
    assert torch.allclose(out.double(), reference_lrn(x), rtol=1e-5, atol=1e-4)
    assert not list(fresh.rglob("*.so")) and not list(fresh.rglob("*.tmp"))


def test_switched_off_by_environment(fresh, monkeypatch):
    monkeypatch.setenv("ALEXNET_NATIVE", "0")
    assert native.library() is None
    assert native.reason_unavailable() == "ALEXNET_NATIVE=0"
    x = torch.randn(2, 8, 3, 3) * 30
    assert torch.allclose(LRN()(x).double(), reference_lrn(x), rtol=1e-5, atol=1e-4)
