"""Output paths are checked before any work, OSErrors become one line, nothing half-written
is left, and commands report the file they really wrote."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from data_helpers import cli

from alexnet import get_model
from alexnet.cli import main
from alexnet.commands.outputs import creatable_dir, output_file
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.weights import save as save_weights


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    """Synthetic packed data (4 classes, 32 px) and untrained `small` weights for it."""
    root = tmp_path_factory.mktemp("outputs")
    data = root / "syn"
    args = ["prepare", "synthetic", data, "--source", "synthetic", "--classes", "4",
            "--count", "40", "--image-size", "32", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    torch.manual_seed(0)
    model = get_model("small", num_classes=4, in_channels=3, input_size=32)
    weights = root / "w.safetensors"
    preprocess = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "channel",
                  "mean": [0.5] * 3, "std": [0.25] * 3}  # fmt: skip
    save_weights(weights, model.state_dict(), model_config=model.config,
                 classes=open_dataset(data).classes, preprocess=preprocess)  # fmt: skip
    return {"root": root, "data": data, "weights": weights}


def _never(*args, **kwargs):
    raise AssertionError("the work started before the output path was checked")


# each command with an output in a directory that does not exist; the work is booby-trapped
CASES = [
    ("eval", ["--data", "D", "--weights", "W", "--confusion", "nodir/c.png"], "alexnet.evaluate",
     "evaluate"),
    ("features", ["--data", "D", "--weights", "W", "--out", "nodir/f"], "alexnet.inference",
     "split_features"),
    ("neighbors", ["--data", "D", "--weights", "W", "--query", "0", "--out", "nodir/g.png"],
     "alexnet.inference", "nearest"),
    ("kernels", ["--weights", "W", "--out", "nodir/k.png"], "alexnet.viz", "kernel_grid"),
    ("plot", ["RUN", "--out", "nodir/p.png"], "alexnet.viz", "training_curves"),
    ("export", ["--weights", "W", "--onnx", "nodir/m.onnx"], "alexnet.export", "export_onnx"),
    ("report", ["nodir", "--data", "D"], "alexnet.report", "write_report"),
]  # fmt: skip


@pytest.mark.parametrize("name,argv,module,func", CASES, ids=[c[0] for c in CASES])
def test_missing_output_dir_is_refused_before_the_work(
    name, argv, module, func, small, tmp_path, capsys, monkeypatch
):
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(importlib.import_module(module), func, _never)
    sub = {"D": small["data"], "W": small["weights"], "RUN": small["root"]}
    code, _, err = cli(capsys, name, *[sub.get(a, a) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "nodir" in lines[0] and "does not exist" in lines[0]


def test_output_file_adds_the_suffix_and_refuses_a_directory(tmp_path):
    assert output_file(tmp_path / "c", "--out", ".png") == tmp_path / "c.png"
    assert output_file(tmp_path / "c.svg", "--out", ".png") == tmp_path / "c.svg"
    (tmp_path / "d.png").mkdir()
    with pytest.raises(UserError, match="is a directory"):
        output_file(tmp_path / "d.png", "--out", ".png")
    assert creatable_dir(tmp_path / "a" / "b" / "c", "OUT") == tmp_path / "a" / "b" / "c"
    assert list(tmp_path.iterdir()) == [tmp_path / "d.png"]  # the probes left nothing behind


def test_full_disk_at_the_check_is_exit_1(small, tmp_path, capsys, monkeypatch):
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    code, _, err = cli(capsys, "kernels", "--weights", small["weights"], "--out", tmp_path / "k")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert str(tmp_path) in lines[0] and "No space left on device" in lines[0]


def test_failed_write_leaves_nothing_half_written(small, tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def dies_half_way(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise OSError(errno.EIO, "Input/output error", "k.png")

    monkeypatch.setattr(Figure, "savefig", dies_half_way)
    code, _, err = cli(capsys, "kernels", "--weights", small["weights"], "--out", tmp_path / "k")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_eval_confusion_and_kernels_report_the_png_they_wrote(small, tmp_path, capsys):
    code, out, err = cli(capsys, "eval", "--data", small["data"], "--weights", small["weights"],
                         "--confusion", tmp_path / "conf", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "conf.png").is_file() and not (tmp_path / "conf").exists()
    assert f"confusion matrix: {tmp_path / 'conf.png'}" in out
    code, out, err = cli(capsys, "kernels", "--weights", small["weights"], "--out",
                         tmp_path / "kern")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "kern.png").read_bytes()[:4] == b"\x89PNG"
    assert out.startswith(f"wrote {tmp_path / 'kern.png'} ")


def test_a_write_that_fails_unnamed_is_named_by_its_file(tmp_path):
    from alexnet.fileio import atomic_write

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it

    with pytest.raises(OSError) as exc:
        atomic_write(tmp_path / "checkpoint.pt", full)
    assert exc.value.filename == str(tmp_path / "checkpoint.pt")
    assert exc.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 24 MiB tmpfs (root only): a real file system that fills up."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24M", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_during_training_names_the_file(small, tiny_disk, capsys, monkeypatch):
    import functools

    from alexnet.train import loop

    def fill(step: int) -> None:  # after the second step the disk is full
        if step == 2:
            with open(tiny_disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                except OSError:
                    pass

    monkeypatch.setattr(loop, "fit", functools.partial(loop.fit, callbacks=[fill]))
    run = tiny_disk / "run"
    code, _, err = cli(capsys, "train", "--data", small["data"], "--output-dir", run,
                       "--model", "small", "--recipe", "fast", "--batch-size", "4",
                       "--checkpoint-every", "3", "--device", "cpu")  # fmt: skip
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert code == 1 and len(lines) == 1, err
    assert str(run) in lines[0] and "No space left on device" in lines[0], lines[0]
    assert "output:" not in lines[0]
