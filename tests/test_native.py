"""Building and loading the CPU kernels: cache, fallbacks, and what the user is told."""

from __future__ import annotations

import ctypes
import re
import shutil
from pathlib import Path

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


def test_cache_name_differs_by_cpu_flags_and_target(monkeypatch):
    """A home directory shared by an AVX-512 login node and AVX2 compute nodes: each machine
    (and each ALEXNET_MARCH) gets its own build, never the other's."""
    monkeypatch.delenv("ALEXNET_MARCH", raising=False)
    avx512 = "flags\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl"
    names = {}
    for flags, march in ((avx512, ""), (avx512.replace(" avx512f avx512bw avx512vl", ""), "")):
        monkeypatch.setattr(native, "_cpu_flags", lambda flags=flags: flags)
        monkeypatch.setenv("ALEXNET_MARCH", march)
        names[flags, march] = native.library_name("cc", ["int f(void);"])
    monkeypatch.setattr(native, "_cpu_flags", lambda: avx512)
    monkeypatch.setenv("ALEXNET_MARCH", "x86-64-v3")
    names[avx512, "x86-64-v3"] = native.library_name("cc", ["int f(void);"])
    assert len(set(names.values())) == 3, names
    assert native.library_name("cc", ["int f(void);"]) == names[avx512, "x86-64-v3"]  # stable
    assert native.library_name("cc", ["int g(void);"]) != names[avx512, "x86-64-v3"]  # sources


@has_compiler
def test_named_instruction_set_is_built_for(fresh, monkeypatch):
    """ALEXNET_MARCH=x86-64-v3 builds for AVX2 without AVX-512 (what `make test-portable` runs);
    an instruction set the compiler does not know is an error, not a silent generic build."""
    if native.platform.machine() != "x86_64":
        pytest.skip("x86-64 instruction sets")
    monkeypatch.setenv("ALEXNET_MARCH", "x86-64-v3")
    assert native.library() is not None
    monkeypatch.setattr(native, "_TRIED", False)
    monkeypatch.setattr(native, "_LIBRARY", None)
    monkeypatch.setenv("ALEXNET_MARCH", "no-such-cpu")
    with pytest.warns(RuntimeWarning, match="failed"):
        assert native.library() is None


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


def test_switched_off_runs_caffe_lrn_as_torch_ops(fresh, monkeypatch):
    """ALEXNET_NATIVE=0: Caffe's LRN (k=1, alpha/n) against the formula in float64."""
    monkeypatch.setenv("ALEXNET_NATIVE", "0")
    x = (torch.randn(2, 10, 4, 3) * 100).requires_grad_()
    out = LRN(5, 1e-4, 0.75, 1.0, alpha_convention="per_size")(x)
    assert native.library() is None
    xd = x.detach().double().requires_grad_()
    ref = reference_lrn(xd, 5, alpha=2e-5, beta=0.75, k=1.0)
    assert torch.allclose(out.double(), ref.detach(), rtol=1e-5, atol=1e-4)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g.double())
    assert torch.allclose(x.grad.double(), xd.grad, rtol=1e-4, atol=1e-6)


def test_header_prototypes_parse_to_ctypes():
    text = """/* int alexnet_commented_out(int a); */
    int64_t alexnet_f(const void *x, uint8_t *places, int64_t n,
                      int size, float alpha);
    void alexnet_g(float *out);
    static int helper(int a);"""
    sigs = native.parse_prototypes(text)
    assert list(sigs) == ["alexnet_f", "alexnet_g"]
    restype, params = sigs["alexnet_f"]
    assert restype is ctypes.c_int64 and sigs["alexnet_g"][0] is None
    assert [name for name, _ in params] == ["x", "places", "n", "size", "alpha"]
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    assert [ctype for _, ctype in params] == [ptr, ptr, i64, i32, f32]
    with pytest.raises(ValueError, match="unsupported C type"):
        native.parse_prototypes("int alexnet_h(double x);")


def test_the_header_declares_what_python_calls():
    """Every kernel Python calls is in kernels.h; the three entry points take what we pass."""
    sigs = native.parse_prototypes(native.HEADER.read_text())
    assert {"alexnet_lrn", "alexnet_max_pool", "alexnet_lrn_max_pool"} <= set(sigs)
    source = Path(native.__file__).read_text()
    called = set(re.findall(r'_call\(\s*"(alexnet_\w+)"', source))
    assert called == {"alexnet_lrn", "alexnet_max_pool", "alexnet_lrn_max_pool"}


@has_compiler
def test_a_python_call_that_disagrees_with_the_header_is_caught(monkeypatch):
    assert native.library() is not None
    header = native.HEADER.read_text().replace("int bf16, int threads);", "int threads);", 1)
    monkeypatch.setattr(native, "_SIGNATURES", native.parse_prototypes(header))
    with pytest.raises(TypeError, match="alexnet_lrn: called with .*kernels.h has"):
        LRN(cpu_path="native")(torch.randn(1, 8, 3, 3))


@has_compiler
def test_a_definition_that_disagrees_with_the_header_does_not_build(tmp_path, monkeypatch):
    """The sources include kernels.h, so the compiler compares every definition with it."""
    for path in [*native.SOURCES, *native.HEADERS]:
        shutil.copy(path, tmp_path / path.name)
    header = (tmp_path / "kernels.h").read_text()
    (tmp_path / "kernels.h").write_text(
        header.replace("int bf16, int threads);", "int64_t bf16, int threads);", 1)
    )
    monkeypatch.setattr(native, "SOURCES", [tmp_path / p.name for p in native.SOURCES])
    with pytest.raises(native.CompileError, match="failed"):
        native._build(native._compiler(), tmp_path / "out" / "kernels.so")
    (tmp_path / "kernels.h").write_text(header)  # and the unchanged header builds
    native._build(native._compiler(), tmp_path / "out" / "kernels.so")
    assert (tmp_path / "out" / "kernels.so").exists()
