"""`alexnet serve`: the real server in a subprocess on a free loopback port, real HTTP.

References: `alexnet predict --json` run in-process on the same files and weights (the API's
answers must equal it), the model called directly on PIL-resized images (features), numpy
brute-force distances over the features file (neighbours), the packed arrays (thumbnails).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import data_helpers as dh
import numpy as np
import pytest
import torch
from PIL import Image

from alexnet import get_model
from alexnet.cli import main
from alexnet.weights import save as save_weights

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
skdata = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

SRC = str(Path(__file__).resolve().parents[1] / "src")
MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.24, 0.26]


class Server:
    """`python -m alexnet serve ... --port 0` in a subprocess; `url` once it listens."""

    def __init__(self, log: Path, *args: str, timeout: float = 120.0) -> None:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "alexnet", "serve", "--port", "0", "--device", "cpu", *args]
        self.log = log
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=open(log, "wb"), env=env, text=True
        )
        self.url = self._wait_url(timeout)

    def _wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if " on http://" in line:
                    return line.rsplit(" on ", 1)[1].strip()
            if self.proc.poll() is not None:
                break
        self.proc.kill()
        raise AssertionError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit status (killed after `timeout` seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def make_world(root: Path) -> dict[str, Path]:
    """A packed synthetic dataset, a `small` model's weights (random, logits spread out so
    images get clearly different answers), its fc features of the train split, real photos."""
    data = root / "data"
    args = ["prepare", "synthetic", data, "--source", "synthetic", "--classes", "10",
            "--count", "64", "--image-size", "32", "--workers", "1", "--no-progress"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    classes = json.loads((data / "header.json").read_text())["classes"]
    torch.manual_seed(0)
    model = get_model("small", num_classes=10, in_channels=3, input_size=32)
    with torch.no_grad():
        list(model.modules())[-1].weight.mul_(30)  # the last Linear: confident answers
    weights = root / "small.safetensors"
    preprocess = {"crop_size": 32, "resize": None, "out_channels": 3, "normalize": "channel",
                  "mean": MEAN, "std": STD}  # fmt: skip
    save_weights(weights, model.state_dict(), model_config=model.config, classes=classes,
                 preprocess=preprocess, extra={"recipe": "test"})  # fmt: skip
    feats = root / "feats"
    args = ["features", "--data", data, "--weights", weights, "--out", feats, "--device", "cpu"]
    assert main([str(a) for a in args]) == 0
    photos = {"chelsea.png": skdata.chelsea(), "coffee.jpg": skdata.coffee(),
              "astronaut.png": skdata.astronaut(), "rocket.jpg": skdata.rocket()}  # fmt: skip
    out = {"data": data, "weights": weights, "feats": feats, "root": root}
    for name, arr in photos.items():
        Image.fromarray(arr).save(root / name, **({"quality": 92} if name.endswith("jpg") else {}))
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return make_world(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(world):
    with Server(world["root"] / "server.log", "--weights", str(world["weights"]), "--index",
                str(world["feats"]), "--max-batch", "32", "--max-wait-ms", "30") as s:  # fmt: skip
        yield s
        assert s.stop() == 0


def cli_predict(capsys, weights: Path, image: Path, topk: int = 5) -> dict:
    capsys.readouterr()
    argv = ["predict", "--weights", str(weights), str(image), "--topk", str(topk), "--json",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def ctype(path: Path) -> str:
    return "image/png" if path.suffix == ".png" else "image/jpeg"


def test_predict_equals_cli(world, server, capsys):
    names = ["chelsea.png", "coffee.jpg", "astronaut.png"]
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        for name in names:
            path = world[name]
            ref = cli_predict(capsys, world["weights"], path)
            raw = c.post("/v1/predict?topk=5", content=path.read_bytes(),
                         headers={"Content-Type": ctype(path)})  # fmt: skip
            assert raw.status_code == 200, raw.text
            body = raw.json()
            assert body["model"] == ref["model"] == "small" and body["topk"] == 5
            assert body["predictions"][0]["top"] == ref["predictions"][0]["top"]  # equal
            assert len(ref["predictions"][0]["top"]) == 5
        # several multipart `image` fields -> several answers, in order, named by file name
        files = [("image", (n, world[n].read_bytes(), ctype(world[n]))) for n in names]
        multi = c.post("/v1/predict", params={"topk": 3}, files=files)
        assert multi.status_code == 200, multi.text
        preds = multi.json()["predictions"]
    assert [p["image"] for p in preds] == names
    for name, pred in zip(names, preds):
        ref = cli_predict(capsys, world["weights"], world[name], topk=3)["predictions"][0]
        assert [t["index"] for t in pred["top"]] == [t["index"] for t in ref["top"]]
        # both print 6 decimals of values that batching moves by ~1e-7: one unit apart at most
        np.testing.assert_allclose([t["prob"] for t in pred["top"]],
                                   [t["prob"] for t in ref["top"]],
                                   rtol=0, atol=1.5e-6)  # fmt: skip


def reference_features(weights: Path, image: Path) -> np.ndarray:
    """PIL: shorter side to 32 (bilinear), centre crop, channel normalization, then the
    model's forward_penultimate, in float64 for the arithmetic outside the model."""
    from alexnet.weights import load

    model, _ = load(weights)
    img = Image.open(image).convert("RGB")
    w, h = img.size
    s = 32 / min(w, h)
    nw, nh = max(32, round(w * s)), max(32, round(h * s))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - 32) // 2, (nh - 32) // 2
    arr = np.asarray(img.crop((left, top, left + 32, top + 32)), dtype=np.float64) / 255
    x = torch.from_numpy((arr - np.array(MEAN)) / np.array(STD)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return model.forward_penultimate(x)[0].numpy()


def test_features_neighbors_and_thumbnails(world, server):
    from alexnet.data.packed import open_dataset
    from alexnet.weights import load

    png = world["chelsea.png"]
    hdr = {"Content-Type": "image/png"}
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        f = c.post("/v1/features", content=png.read_bytes(), headers=hdr).json()
        nb = c.post("/v1/neighbors?k=5", content=png.read_bytes(), headers=hdr).json()
        thumbs = {n["index"]: c.get(n["image"]) for n in nb["results"][0]["neighbors"]}
        info = c.get("/v1/model").json()
    vec = np.array(f["results"][0]["features"], dtype=np.float32)
    assert f["dim"] == vec.shape[0] == info["feature_dim"] > 0
    assert f["layer"] == info["feature_layer"] == load(world["weights"])[0].penultimate_name
    np.testing.assert_allclose(vec, reference_features(world["weights"], png), rtol=1e-4, atol=1e-5)
    base = np.load(str(world["feats"]) + ".npy").astype(np.float64)
    dist = np.sqrt(((base - vec.astype(np.float64)) ** 2).sum(1))
    order = np.argsort(dist, kind="stable")[:5]
    got = nb["results"][0]["neighbors"]
    assert [n["index"] for n in got] == order.tolist()
    np.testing.assert_allclose([n["distance"] for n in got], dist[order], rtol=1e-4, atol=1e-4)
    ds = open_dataset(world["data"], "train")
    for i, r in thumbs.items():
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.content))), ds.images[i])
        assert got[[n["index"] for n in got].index(i)]["label"] == ds.classes[ds.labels[i]]
    assert info["name"] == "small" and info["num_classes"] == 10 and info["input_size"] == 32
    assert info["metadata"] == {"recipe": "test"} and info["index"]["count"] == 64


def distinct_images(root: Path, n: int) -> list[bytes]:
    """n different PNG photos: crops of the sample photos at different places and sizes."""
    sources = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    out = []
    for i in range(n):
        src = sources[i % 4]
        s = 80 + 12 * (i // 4)
        y, x = (17 * i) % (src.shape[0] - s), (29 * i) % (src.shape[1] - s)
        out.append(dh.png_bytes(np.ascontiguousarray(src[y : y + s, x : x + s])))
    return out


def batch_stats(client) -> tuple[float, float]:
    """(forward passes, images) so far, from /metrics."""
    values = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("alexnet_serve_batch_size_"):
            key, value = line.split(" ")
            values[key] = float(value)
    return values["alexnet_serve_batch_size_count"], values["alexnet_serve_batch_size_sum"]


def test_32_concurrent_clients_get_their_own_answers(world, server):
    images = distinct_images(world["root"], 32)
    hdr = {"Content-Type": "image/png"}
    with httpx.Client(
        base_url=server.url, timeout=30, trust_env=False
    ) as c:  # alone: batches of one
        alone = [c.post("/v1/predict?topk=10", content=b, headers=hdr).json() for b in images]
        passes0, images0 = batch_stats(c)

    async def together() -> list[dict]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, limits=limits, trust_env=False
        ) as ac:
            rs = await asyncio.gather(
                *(ac.post("/v1/predict?topk=10", content=b, headers=hdr) for b in images)
            )
        assert all(r.status_code == 200 for r in rs)
        return [r.json() for r in rs]

    batched = asyncio.run(together())
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
        passes1, images1 = batch_stats(c)
    assert images1 - images0 == 32 and passes1 - passes0 < 32  # some passes held several
    tops = [a["predictions"][0]["top"] for a in alone]
    assert len({tuple(round(t["prob"], 4) for t in top) for top in tops}) == 32  # all differ
    for a, b in zip(tops, (x["predictions"][0]["top"] for x in batched)):
        # a batched matrix product may round differently from a batch of one (last bit)
        assert [t["index"] for t in a] == [t["index"] for t in b]
        np.testing.assert_allclose([t["prob"] for t in a], [t["prob"] for t in b], atol=1e-6)


@pytest.fixture(scope="module")
def strict(world):
    """API key, a 50 kB body limit, 100,000 pixels, and slow batches (always 8 s wait for 8)
    into a queue of 4, so that requests are still in flight when the queue is full or SIGTERM
    comes."""
    with Server(world["root"] / "strict.log", "--weights", str(world["weights"]),
                "--api-key", "s3cret", "--max-body-mb", "0.05", "--max-pixels", "100000",
                "--max-batch", "8", "--max-wait-ms", "8000", "--always-wait",
                "--max-queue", "4") as s:  # fmt: skip
        yield s


KEY = {"Authorization": "Bearer s3cret"}
PNG = {**KEY, "Content-Type": "image/png"}


def test_bad_input_auth_and_errors(world, strict):
    bomb = dh.png_bytes(np.zeros((400, 400, 3), np.uint8))  # 160,000 pixels, ~1 kB
    photo = world["chelsea.png"].read_bytes()  # a real photo, over 50 kB
    small = dh.png_bytes(dh.photo(1, 60, 40))
    assert len(photo) > 0.05 * 2**20 and len(bomb) < 0.05 * 2**20
    with httpx.Client(base_url=strict.url, timeout=30, trust_env=False) as c:
        text = {**KEY, "Content-Type": "text/plain"}
        cases = {
            "no key": (c.get("/v1/model"), 401),
            "wrong key": (c.get("/v1/model", headers={"Authorization": "Bearer s3cre"}), 401),
            "too big": (c.post("/v1/predict", content=photo, headers=PNG), 413),
            "bomb": (c.post("/v1/predict", content=bomb, headers=PNG), 413),
            "not image": (c.post("/v1/predict", content=b"hello" * 10, headers=PNG), 415),
            "text type": (c.post("/v1/predict", content=small, headers=text), 415),
            "empty": (c.post("/v1/predict", content=b"", headers=PNG), 422),
            "topk 0": (c.post("/v1/predict?topk=0", content=small, headers=PNG), 422),
            "topk abc": (c.post("/v1/predict?topk=abc", content=small, headers=PNG), 422),
            "no field": (c.post("/v1/predict", headers=KEY, files={"x": ("a.png", small)}), 422),
            "no index": (c.post("/v1/neighbors", content=small, headers=PNG), 404),
            "no route": (c.get("/v1/nothing", headers=KEY), 404),
        }
        for name, (r, code) in cases.items():
            assert r.status_code == code, (name, r.status_code, r.text)
            assert set(r.json()) == {"error"} and r.json()["error"], name
        assert cases["no key"][0].headers["www-authenticate"] == "Bearer"
        assert "decompression bomb" in cases["bomb"][0].json()["error"]
        assert c.get("/v1/model", headers=KEY).status_code == 200
        assert c.get("/healthz").status_code == 200  # no key needed, and still alive
        assert c.get("/metrics").status_code == 200
        r = c.post("/v1/predict", content=small, headers=PNG)
        assert r.status_code == 200 and len(r.json()["predictions"][0]["top"]) == 5


def test_full_queue_503_and_sigterm_drains(world, strict):
    images = distinct_images(world["root"], 5)
    results: list = [None] * 4

    def send(i: int) -> None:
        with httpx.Client(base_url=strict.url, timeout=30, trust_env=False) as c:
            results[i] = c.post("/v1/predict", content=images[i], headers=PNG)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=strict.url, timeout=30, trust_env=False) as c:
        deadline = time.monotonic() + 10
        while c.get("/healthz").json()["queue_depth"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        full = c.post("/v1/predict", content=images[4], headers=PNG)
    assert full.status_code == 503 and full.headers["retry-after"] == "1"
    assert "busy" in full.json()["error"]
    assert all(r is None for r in results)  # still waiting for their batch
    strict.proc.send_signal(signal.SIGTERM)  # while 4 requests wait for their batch
    for t in threads:
        t.join(30)
    assert strict.stop() == 0  # drained: every waiting request answered below, then exit 0
    for r in results:
        assert r is not None and r.status_code == 200, r
        assert len(r.json()["predictions"][0]["top"]) == 5


def test_cli_user_errors(tmp_path, capsys):
    assert main(["serve", "--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "no such weights file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # refused while parsing, before any work
        main(["serve", "--weights", "w", "--max-batch", "0"])
    assert stop.value.code == 2
    assert "--max-batch" in capsys.readouterr().err


def test_batcher_gathers_and_keeps_answers_apart():
    from alexnet.serve.batcher import Batcher, QueueFull

    seen: list[int] = []

    def run_batch(kind: str, images: np.ndarray) -> list:
        seen.append(len(images))
        if kind == "boom":
            raise RuntimeError("model failed")
        return [int(img.sum()) for img in images]  # each image's own answer

    async def go() -> None:
        b = Batcher(run_batch, max_batch=4, max_wait_ms=50, max_queue=10)
        b.start()
        imgs = [np.full((2, 2, 3), i, np.uint8) for i in range(10)]
        answers = await asyncio.gather(*(b.submit("predict", [im]) for im in imgs))
        assert [a[0] for a in answers] == [12 * i for i in range(10)]
        assert seen == [4, 4, 2]
        with pytest.raises(QueueFull):
            await b.submit("predict", imgs + imgs[:1])  # 11 > max_queue: none accepted
        with pytest.raises(RuntimeError, match="model failed"):
            await b.submit("boom", imgs[:2])
        assert b.depth == 0
        await b.stop()

    asyncio.run(go())
