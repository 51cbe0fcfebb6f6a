"""alexnet.weights: typed metadata, checkpoints as weights, and one-line answers for files that
are not weights (saying what they are and what to pass instead)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from alexnet.errors import UserError
from alexnet.models.registry import get_model
from alexnet.weights import load, read
from alexnet.weights.meta import Preprocess

PRE = {"crop_size": 32, "image_size": 32, "resize": None, "out_channels": 3,
       "normalize": "channel", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}  # fmt: skip


def small() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("small", num_classes=3).eval()


def checkpoint(path, model, **more) -> None:
    state = {"format": "alexnet-checkpoint/1", "model_config": json.dumps(model.config),
             "model": model.state_dict(), "epoch": 2, **more}  # fmt: skip
    torch.save(state, path)


def one_line_error(path) -> str:
    with pytest.raises(UserError) as exc:
        load(path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_preprocess_json_round_trip_and_older_files():
    pre = Preprocess.from_json(PRE)
    assert Preprocess.from_json(pre.to_json()) == pre
    assert pre.resize_rule == "paper" and pre.mean == [0.5, 0.5, 0.5]
    old = Preprocess.from_json({"crop_size": 224, "normalize": "mean_image", "future": 1})
    assert (old.image_size, old.out_channels, old.mean) == (None, 3, None)
    assert old.stored_image_size() == 256  # the paper's 256 for 224 crops (§2)
    assert Preprocess.from_json({"crop_size": 28}).stored_image_size() == 28
    with pytest.raises(UserError, match="crop_size"):
        Preprocess.from_json({"normalize": "none"})


def test_checkpoint_with_its_metadata_loads_like_the_model(tmp_path):
    model = small()
    mean = torch.rand(32, 32, 3)
    path = tmp_path / "checkpoint.pt"
    checkpoint(path, model, classes=json.dumps(["a", "b", "c"]), preprocess=json.dumps(PRE),
               mean_image=mean)  # fmt: skip
    for given in (path, tmp_path):  # the file or the run directory
        loaded, meta = load(given)
        assert meta.format == "checkpoint" and meta.classes == ["a", "b", "c"]
        assert meta.preprocess == Preprocess.from_json(PRE) and torch.equal(meta.mean_image, mean)
        assert meta.extra["epoch"] == 2 and not loaded.training
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_checkpoint_without_its_metadata_says_what_to_use(tmp_path):
    model = small()
    path = tmp_path / "checkpoint.pt"
    checkpoint(path, model)
    message = one_line_error(path)
    assert "without its class names" in message and "RUN/weights.safetensors" in message
    pre = dict(PRE, normalize="mean_image")  # needs the mean image too
    checkpoint(path, model, classes=json.dumps(list("xyz")), preprocess=json.dumps(pre))
    assert "mean image" in one_line_error(path)


def test_directory_without_checkpoint(tmp_path):
    assert "without checkpoint.pt" in one_line_error(tmp_path)


def test_other_files_say_what_they_are(tmp_path):
    png = tmp_path / "cat.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png)
    message = one_line_error(png)
    assert "a PNG image, not weights" in message and ".safetensors" in message
    js = tmp_path / "eval.json"
    js.write_text('{"top1_error": 0.5}')
    assert "a JSON file" in one_line_error(js)
    npy = tmp_path / "f.npy"
    np.save(npy, np.zeros(3))
    assert "a NumPy array file" in one_line_error(npy)
    assert "no such weights file" in one_line_error(tmp_path / "missing.safetensors")


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in small().state_dict().items()}, str(path))
    assert "without alexnet metadata" in one_line_error(path)


def test_torch_files_that_are_not_state_dicts(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    assert "not a state_dict" in one_line_error(path)
    other = tmp_path / "small.pth"
    torch.save(small().state_dict(), other)
    assert "not torchvision AlexNet weights" in one_line_error(other)


def test_read_gives_single_device_tensors_of_every_format(tmp_path):
    model = small()
    path = tmp_path / "checkpoint.pt"
    checkpoint(path, model, classes=json.dumps(list("abc")), preprocess=json.dumps(PRE))
    tensors, meta = read(path)
    assert set(tensors) == set(model.state_dict()) and meta.num_classes == 3
