"""hubconf.py through torch.hub itself (source="local" on this checkout, and the GitHub path
from a pre-filled hub cache), and `alexnet.get_model(..., weights=...)`; references are
torchvision's own AlexNet and the models that wrote the files."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

import alexnet
from alexnet.errors import UserError
from alexnet.weights import hub, save

ROOT = Path(__file__).resolve().parents[1]
PRE = {"crop_size": 32, "normalize": "none"}


def hub_load(*args, **kwargs) -> torch.nn.Module:
    return torch.hub.load(str(ROOT), "alexnet", *args, source="local", **kwargs)


@pytest.fixture
def closed_url():
    """A URL whose port this test holds bound without listening: refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/models"


def small_file(path: Path, classes: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    model = alexnet.get_model("small", num_classes=classes).eval()
    names = [f"c{i}" for i in range(classes)]
    save(path, model.state_dict(), model_config=model.config, classes=names, preprocess=PRE)
    return model


@pytest.mark.parametrize("name", alexnet.list_models())
def test_hub_builds_every_model(name):
    model = hub_load(name, num_classes=7)
    assert model.config["name"] == name and model.num_classes == 7
    size = model.input_size
    x = torch.randn(2, model.in_channels, size, size)
    assert model.eval()(x).shape == (2, 7)
    if name == "torchvision":  # the same tensors, name for name, as torchvision's own builder
        theirs = torchvision.models.alexnet(num_classes=7).state_dict()
        ours = model.state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_hub_default_is_the_paper_model_with_options():
    model = hub_load(towers=1, input_size=227)
    assert model.config["name"] == "paper"
    assert model.config["options"]["towers"] == 1 and model.input_size == 227
    with pytest.raises(UserError, match="no option 'nonsense'"):
        hub_load("small", nonsense=1)


def test_hub_loads_our_safetensors_bitwise(tmp_path):
    ref = small_file(tmp_path / "w.safetensors")
    model = hub_load(weights=str(tmp_path / "w.safetensors"))
    assert not model.training
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    same = alexnet.get_model("small", weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(same(x), ref(x))


def test_hub_loads_torchvision_layout_pth(tmp_path):
    torch.manual_seed(1)
    theirs = torchvision.models.alexnet(num_classes=5).eval()
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    model = hub_load("torchvision", weights=str(tmp_path / "tv.pth"))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="weights of model 'torchvision', not 'paper'"):
        hub_load("paper", weights=str(tmp_path / "tv.pth"))


def test_other_num_classes_remakes_only_the_last_layer(tmp_path):
    ref = small_file(tmp_path / "w.safetensors", classes=4)
    with pytest.warns(UserWarning, match="4 classes in the weights, num_classes=9"):
        model = hub_load(weights=str(tmp_path / "w.safetensors"), num_classes=9)
    assert model.num_classes == 9 and model.fc.weight.shape == (9, ref.fc.weight.shape[1])
    theirs = ref.state_dict()
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    assert kept and all(torch.equal(v, theirs[k]) for k, v in kept.items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the weights' own number: no warning
        alexnet.get_model("small", num_classes=4, weights=str(tmp_path / "w.safetensors"))


def test_hub_list_and_help_through_the_github_path(tmp_path, monkeypatch):
    """torch.hub.list / help read hubconf.py from the hub cache: this checkout placed there as
    torch.hub would unpack OWNER/alexnet:main (nothing is downloaded)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    (tmp_path / "owner_alexnet_main").symlink_to(ROOT)
    assert torch.hub.list("owner/alexnet:main", trust_repo=True, verbose=False) == ["alexnet"]
    doc = torch.hub.help("owner/alexnet:main", "alexnet", trust_repo=True)
    assert "Krizhevsky" in doc and "weights:" in doc


@pytest.mark.timeout(60)
def test_offline_torchvision_weights_fail_in_one_line(tmp_path, monkeypatch, closed_url):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv(hub.BASE_URL_ENV, closed_url)
    with pytest.raises(UserError) as exc:
        hub_load(weights="torchvision")
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"cannot download {closed_url}/alexnet-owt")


@pytest.mark.timeout(120)
def test_hub_imports_only_models_and_weights(tmp_path):
    """A fresh python: torch.hub.load with a weights file imports no command line, no server."""
    import subprocess
    import sys

    small_file(tmp_path / "w.safetensors")
    script = (
        "import sys, torch; torch.hub.load(sys.argv[1], 'alexnet', source='local', "
        "weights=sys.argv[2]); print(' '.join(sorted(sys.modules)))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), str(tmp_path / "w.safetensors")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = proc.stdout.split()
    assert "alexnet.weights.files" in modules
    loaded = [
        m
        for m in modules
        if m.startswith(
            (
                "alexnet.cli",
                "alexnet.commands",
                "alexnet.serve",
                "alexnet.train",
                "fastapi",
                "uvicorn",
            )
        )
    ]
    assert loaded == []
