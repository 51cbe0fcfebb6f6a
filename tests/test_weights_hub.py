"""Weights by name: download from a real HTTP server on 127.0.0.1, cache, hash check, offline."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from alexnet.cli import main
from alexnet.errors import UserError
from alexnet.weights import hub
from alexnet.weights.files import describe_file
from alexnet.weights.hub import CATALOG


class _Server:
    """http.server serving `root` on 127.0.0.1 in a thread; counts the GET requests."""

    def __init__(self, root: Path) -> None:
        counter = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 - http.server's name
                counter.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def closed_url():
    """A URL whose port this test holds bound without listening: a connection is refused at
    once, and nothing else on the machine can start listening there meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/models"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server with models/<name> files, TORCH_HOME in tmp, the base URL pointing at it."""
    root = tmp_path / "www"
    (root / "models").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    server = _Server(root)
    monkeypatch.setenv(hub.BASE_URL_ENV, server.url)
    yield root / "models", server
    server.close()


def _named(folder: Path, payload: bytes, stem: str = "tiny", good: bool = True) -> str:
    digest = hashlib.sha256(payload).hexdigest()[:8]
    if not good:
        digest = "%08x" % (int(digest, 16) ^ 1)
    name = f"{stem}-{digest}.pth"
    (folder / name).write_bytes(payload)
    return name


def test_default_url_is_torchvisions(monkeypatch):
    monkeypatch.delenv(hub.BASE_URL_ENV, raising=False)
    name = CATALOG["torchvision"]["file_name"]
    assert hub.url_for(name) == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert hub.hash_prefix(name) == "7be5be79"


def test_download_then_cache_without_network(served, monkeypatch, closed_url):
    folder, server = served
    payload = bytes(range(256)) * 5000
    name = _named(folder, payload)
    path = hub.fetch(name)
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / name
    assert path.read_bytes() == payload and len(server.requests) == 1
    assert not list(path.parent.glob("*.partial"))
    monkeypatch.setenv(hub.BASE_URL_ENV, closed_url)  # no network from here on
    assert hub.fetch(name) == path and len(server.requests) == 1


def test_hash_mismatch_refused_and_not_kept(served):
    folder, _ = served
    name = _named(folder, b"tampered weights" * 100, good=False)
    with pytest.raises(UserError, match=f"refused.*{hub.hash_prefix(name)}.*not kept"):
        hub.fetch(name)
    assert not any((hub.cache_dir()).iterdir())  # neither the file nor a partial one


def test_http_error_is_one_line(served):
    with pytest.raises(UserError, match="HTTP 404") as info:
        hub.fetch("missing-0123abcd.pth")
    assert "\n" not in str(info.value)


def test_unreachable_host_fails_fast_with_one_line(tmp_path, monkeypatch, closed_url):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    base = closed_url
    monkeypatch.setenv(hub.BASE_URL_ENV, base)
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        hub.resolve_name("torchvision", progress=False)
    # a refused connection ends it at once (milliseconds), not the socket timeout's wait
    assert time.monotonic() - start < hub.TIMEOUT_S / 3
    msg = str(info.value)
    dest = hub.cache_dir() / "alexnet-owt-7be5be79.pth"
    assert "\n" not in msg
    assert f"{base}/alexnet-owt-7be5be79.pth" in msg  # the URL
    assert str(dest) in msg and "by hand" in msg  # where to put the file
    assert "the path of a copy instead of the name" in msg  # a path works too
    assert not dest.exists()


def test_names_and_paths(tmp_path, monkeypatch, closed_url):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(hub.BASE_URL_ENV, closed_url)
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"x")
    assert hub.resolve_name(own) == own and hub.resolve_name(str(own)) == own
    cached = hub.cache_dir() / CATALOG["torchvision"]["file_name"]  # placed by hand
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"y")
    assert hub.resolve_name("torchvision") == cached
    with pytest.raises(UserError, match="nor a name of downloadable weights"):
        hub.resolve_name("no-such-weights")


def test_cli_lists_names_and_files(tmp_path, monkeypatch, capsys):
    from alexnet import get_model
    from alexnet.weights import save as save_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = get_model("small", num_classes=10)
    path = tmp_path / "small.safetensors"
    pre = {"crop_size": 28, "resize": None, "out_channels": 1, "normalize": "none"}
    save_weights(path, model.state_dict(), model_config=model.config,
                 classes=[str(i) for i in range(10)], preprocess=pre,
                 extra={"top1_error": 0.125, "top5_error": 0.01})  # fmt: skip
    assert main(["weights", "--json", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in out["named"]] == ["torchvision"]
    assert out["named"][0]["cached"] is None
    assert out["convertible"][0]["top1_err"] == 42.9
    (row,) = out["files"]
    assert (row["model"], row["classes"], row["top1_err"], row["top5_err"]) == (
        "small", "10", 12.5, 1.0)  # fmt: skip
    assert describe_file(path)["input_size"] == model.input_size
    assert main(["weights", str(tmp_path / "nope.safetensors")]) == 2
    assert "no such weights file" in capsys.readouterr().err
