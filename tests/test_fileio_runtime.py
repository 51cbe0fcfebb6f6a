"""The bottom of the house: atomic writes, safe torch loading, device choice, torchrun env."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from alexnet.errors import UserError
from alexnet.fileio import atomic_write, atomic_write_bytes, atomic_write_text, safe_torch_load
from alexnet.runtime import DistInfo, all_reduce_sum, broadcast_object, dist_info, resolve_device


class Payload:
    """Unpickling this runs os.mkdir(marker): a stand-in for arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_atomic_writes_replace_whole_files_and_leave_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write(path, lambda f: f.write(b"through a writer"))
    assert path.read_bytes() == b"through a writer"

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"through a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_write_keeps_the_umask_permissions(tmp_path):
    mask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "f", "x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_safe_torch_load_reads_tensors(tmp_path):
    path = tmp_path / "ok.pt"
    state = {"w": torch.arange(6.0).view(2, 3), "n": 3, "s": "x"}
    torch.save(state, path)
    got = safe_torch_load(path)
    assert torch.equal(got["w"], state["w"]) and got["n"] == 3 and got["s"] == "x"


@pytest.mark.parametrize("legacy", [False, True])
def test_code_payload_refused_naming_the_global(tmp_path, legacy):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Payload(str(marker))}, path,
               _use_new_zipfile_serialization=not legacy)  # fmt: skip
    with pytest.raises(UserError) as exc:
        safe_torch_load(path)
    message = str(exc.value)
    assert not marker.exists(), "the payload ran"
    assert message.startswith(f"{path}: refused") and "\n" not in message
    mkdir = pickle.whichmodule(os.mkdir, "mkdir") + ".mkdir"  # posix.mkdir on Linux
    assert f"(first: {mkdir})" in message and "nothing in it was run" in message
    assert "PyTorch" not in message  # not torch's long text cut somewhere


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty file"),
        (os.urandom(300).replace(b"\x80", b"\x00").replace(b"PK", b"pk"), "not a torch checkpoint"),
        (b"\x80\x02" + b"\xff" * 50, "damaged or not a torch checkpoint"),
    ],
    ids=["empty", "random", "bad-pickle"],
)
def test_not_torch_files_say_what_they_are(tmp_path, content, words):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(UserError) as exc:
        safe_torch_load(path)
    assert str(exc.value).startswith(f"{path}: ") and words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_truncated_checkpoint_is_named_truncated(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.randn(100, 100)}, path)
    path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(UserError) as exc:
        safe_torch_load(path)
    assert "truncated or damaged torch checkpoint" in str(exc.value)
    with pytest.raises(UserError, match="no such file"):
        safe_torch_load(tmp_path / "missing.pt")


def test_resolve_device_choices_and_one_line_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    with pytest.raises(UserError) as exc:
        resolve_device("gpu7")
    assert str(exc.value).startswith("device gpu7: unknown device") and "\n" not in str(exc.value)
    with pytest.raises(UserError, match="unknown device .use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("meta")  # a torch device, but not one the grammar (values.DEVICE) names
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_dist_info_reads_torchrun_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert dist_info() == DistInfo(0, 1, 0) and dist_info().is_main and not dist_info().enabled
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info()
    assert (info.rank, info.world_size, info.local_rank) == (3, 4, 1)
    assert info.enabled and not info.is_main


def test_collectives_are_identity_in_one_process():
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert broadcast_object({"a": 1}) == {"a": 1}
