"""Checkpoints: atomic writes, safe loading (no code runs), clear errors, RNG state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from alexnet.checkpoint import (
    Checkpoint,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from alexnet.errors import UserError
from alexnet.fileio import atomic_write


def _checkpoint(**fields) -> Checkpoint:
    base = {"model_config": {"name": "small", "options": {}}, "data_fingerprint": "abc",
            "config": {}, "model": {}, "optimizer": {}, "schedule": {}}  # fmt: skip
    return Checkpoint(**{**base, **fields})


class _Payload:
    """Unpickling this object calls builtins.open(marker, "w"): code that runs on load."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_with_rng_and_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = _checkpoint(
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        epoch=3,
        history=[{"epoch": 1, "lr": 0.1}],
        rng=capture_rng_state(),
    )
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back.epoch == 3 and back.history == [{"epoch": 1, "lr": 0.1}]
    for k, v in model.state_dict().items():
        assert torch.equal(back.model[k], v)
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(back.optimizer["state"][0]["momentum_buffer"], buf)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # the plain dict on disk
    assert raw["format"] == "alexnet-checkpoint/1" and isinstance(raw["model_config"], str)


def test_rng_states_restore_exactly():
    state = capture_rng_state()
    expected = (torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)])
    torch.rand(3), np.random.rand(7), random.random()  # move every stream on
    restore_rng_state(state)
    got = (torch.rand(5), np.random.rand(5), [random.random() for _ in range(5)])
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_pickled_code_payload_is_refused_and_does_not_run(tmp_path):
    live = tmp_path / "live-marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "alexnet-checkpoint/1", "x": _Payload(str(live))}, evil)
    # the payload is real: an unsafe load runs it
    torch.load(evil, weights_only=False)
    assert live.exists()
    live.unlink()
    with pytest.raises(UserError) as exc:
        load_checkpoint(evil)
    assert not live.exists(), "the payload ran"
    message = str(exc.value)
    assert str(evil) in message and "refused" in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_one_line_error_naming_it(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _checkpoint(model={"w": torch.randn(100, 100)}))
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 50, "empty": b""}[damage]
    )
    with pytest.raises(UserError) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_other_model_or_data_refused_with_difference_named(tmp_path):
    state = _checkpoint(model_config={"name": "small", "options": {"width": 32}})
    check_compatible(
        state,
        "ck",
        model_config={"name": "small", "options": {"width": 32}},
        data="abc",
    )
    with pytest.raises(UserError, match=r"options\.width=32 in the checkpoint, 64 now"):
        check_compatible(
            state,
            "ck",
            model_config={"name": "small", "options": {"width": 64}},
            data="abc",
        )
    with pytest.raises(UserError, match="name='small' in the checkpoint, 'paper' now"):
        check_compatible(
            state,
            "ck",
            model_config={"name": "paper", "options": {"width": 32}},
            data="abc",
        )
    with pytest.raises(UserError, match="other data.*abc.*xyz"):
        check_compatible(
            state,
            "ck",
            model_config={"name": "small", "options": {"width": 32}},
            data="xyz",
        )
