"""Load test of `alexnet serve` on 127.0.0.1: dynamic batching against --max-batch 1.

Starts two servers in subprocesses on free loopback ports (batched: --max-batch 32
--max-wait-ms 5; unbatched: --max-batch 1), sends --requests POST /v1/predict (a 400x266 JPEG
photo) at each concurrency (default 1, 8, 32), in --rounds rounds that alternate between the
two servers (every level also stops after --level-seconds), and prints throughput and p50/p99
latency. The last line is JSON with `serve_batched_vs_unbatched`
(throughput ratio at the highest concurrency) and `errors` (non-200 answers, must be 0).
Both servers decode --max-decoding images at once (2, the server's default). With
--peer-decoding N the peer is instead the batched server decoding N images at once, and the
ratio is `serve_batched_vs_decodeN`.

    python benchmarks/bench_serve.py                      # `paper`, random weights, 1000 req
    python benchmarks/bench_serve.py --weights runs/x/weights.safetensors --requests 200
    python benchmarks/bench_serve.py --peer-decoding 6    # decoding 2 vs 6 images at once

Only 127.0.0.1 is ever contacted; the load is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

from alexnet import get_model  # noqa: E402
from alexnet.runtime import cpu_name  # noqa: E402
from alexnet.weights import save as save_weights  # noqa: E402


def random_weights(model: str, out: Path) -> Path:
    """A `paper` (224 px, 1000 classes) or `small` (32 px, 10 classes) model, random init."""
    torch.manual_seed(0)
    if model == "paper":
        m, crop, classes = get_model("paper", num_classes=1000), 224, 1000
    else:
        m, crop, classes = get_model("small", num_classes=10, in_channels=3, input_size=32), 32, 10
    pre = {"crop_size": crop, "resize": None, "out_channels": 3, "normalize": "channel",
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # fmt: skip
    names = [f"class_{i}" for i in range(classes)]
    save_weights(out, m.state_dict(), model_config=m.config, preprocess=pre, classes=names,
                 extra={"random": True})  # fmt: skip
    return out


def photo_jpeg() -> bytes:
    """A real photo (scikit-image's cat) as a 400x266 JPEG; a gradient when it is missing."""
    try:
        from skimage.data import chelsea

        img = Image.fromarray(chelsea())
    except ImportError:
        yy, xx = np.mgrid[0:300, 0:450]
        img = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    buf = io.BytesIO()
    img.resize((400, 266)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def start(weights: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "alexnet", "serve", "--weights", str(weights), "--host",
           "127.0.0.1", "--port", "0", "--device", "cpu", *args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if " on http://" in line:
                return proc, line.rsplit(" on ", 1)[1].strip()
    proc.kill()
    raise SystemExit("the server did not start")


async def level(url: str, body: bytes, concurrency: int, count: int, seconds: float) -> dict:
    """`count` requests by `concurrency` clients (stops early after `seconds`); each client
    first opens its connection with one untimed request (steady keep-alive state)."""
    latencies: list[float] = []
    errors = sent = 0
    headers = {"Content-Type": "image/jpeg"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=limits, trust_env=False
    ) as client:

        async def post() -> bool:
            try:
                r = await client.post("/v1/predict?topk=5", content=body, headers=headers)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        async def worker() -> None:
            nonlocal errors, sent
            while sent < count and time.monotonic() < deadline:
                sent += 1
                t0 = time.perf_counter()
                ok = await post()
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        await asyncio.gather(*(post() for _ in range(concurrency)))
        before = batches(await client.get("/metrics"))
        deadline = time.monotonic() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
        after = batches(await client.get("/metrics"))
    passes, images = after[0] - before[0], after[1] - before[1]
    return {"latencies": latencies, "seconds": wall, "errors": errors, "passes": passes,
            "images": images}  # fmt: skip


def batches(metrics: httpx.Response) -> tuple[float, float]:
    """(forward passes, images) so far, from the server's Prometheus text."""
    values = dict.fromkeys(("count", "sum"), 0.0)
    for line in metrics.text.splitlines():
        for key in values:
            if line.startswith(f"alexnet_serve_batch_size_{key} "):
                values[key] = float(line.split()[1])
    return values["count"], values["sum"]


def summary(name: str, concurrency: int, parts: list[dict]) -> dict:
    """Rounds of one configuration and concurrency -> throughput and latency percentiles."""
    lat = np.concatenate([np.array(p["latencies"]) for p in parts]) * 1000
    wall = sum(p["seconds"] for p in parts)
    p50, p99 = (round(float(np.percentile(lat, q)), 1) for q in (50, 99))
    mean_batch = sum(p["images"] for p in parts) / max(1.0, sum(p["passes"] for p in parts))
    row = {"config": name, "concurrency": concurrency, "requests": int(lat.size),
           "seconds": round(wall, 2), "rps": round(lat.size / wall, 2), "p50_ms": p50,
           "p99_ms": p99, "mean_batch": round(mean_batch, 1),
           "errors": sum(p["errors"] for p in parts)}  # fmt: skip
    print(f"{name:>9}  c={concurrency:<3} {row['requests']:>5} req  {row['rps']:8.1f} req/s  "
          f"p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  batch {mean_batch:5.1f}  "
          f"errors {row['errors']}", flush=True)  # fmt: skip
    return row


def model_alone(weights: Path, body: bytes, batch: int, seconds: float = 3.0) -> dict:
    """ms per image of the model call alone (decoded image, on a worker thread as in the
    server) at batch 1 and at `batch`: the most that batching can gain."""
    import concurrent.futures

    from alexnet.serve.answers import Engine

    engine = Engine(weights, "cpu")
    image = engine.decode(body, "photo.jpg")
    pool = concurrent.futures.ThreadPoolExecutor(1, initializer=engine.thread_init)
    out = {}
    for b in (1, batch):
        x = np.stack([image] * b)
        pool.submit(engine.run_batch, "predict", x).result()  # warm-up
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            pool.submit(engine.run_batch, "predict", x).result()
            n += 1
        out[f"model_batch{b}_ms_per_image"] = round((time.perf_counter() - t0) / n / b * 1000, 2)
    pool.shutdown()
    return out


def measure(servers: dict[str, str], body: bytes, args) -> list[dict]:
    """Every concurrency level in `args.rounds` interleaved rounds per server (the machine's
    other load then weighs on both alike)."""
    for url in servers.values():
        asyncio.run(level(url, body, 4, 8, 60))  # warm-up
    rows = []
    for c in args.concurrency:
        parts: dict[str, list[dict]] = {name: [] for name in servers}
        count, seconds = max(1, args.requests // args.rounds), args.level_seconds / args.rounds
        for _ in range(args.rounds):
            for name, url in servers.items():
                parts[name].append(asyncio.run(level(url, body, c, count, seconds)))
        rows += [summary(name, c, parts[name]) for name in servers]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, help="weights file (default: random --model)")
    p.add_argument("--model", choices=["paper", "small"], default="paper")
    p.add_argument("--requests", type=int, default=1000, help="requests per level (1000)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds per level (4)")
    p.add_argument("--level-seconds", type=float, default=300, help="time limit per level")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-decoding", type=int, default=2, help="images decoded at once (2)")
    p.add_argument("--peer-decoding", type=int, metavar="N",
                   help="compare with a batched server decoding N images at once instead of "
                   "the unbatched one")  # fmt: skip
    args = p.parse_args()
    body = photo_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_weights(args.model, Path(tmp) / "w.safetensors")
        batched = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        decoding = ["--max-decoding", str(args.max_decoding)]
        configs = {"batched": batched + decoding, "unbatched": ["--max-batch", "1", *decoding]}
        if args.peer_decoding:
            peer = f"decode{args.peer_decoding}"
            configs = {"batched": configs["batched"],
                       peer: batched + ["--max-decoding", str(args.peer_decoding)]}  # fmt: skip
        procs = {name: start(weights, *extra) for name, extra in configs.items()}
        try:
            rows = measure({name: url for name, (_, url) in procs.items()}, body, args)
        finally:
            for proc, _ in procs.values():
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc, _ in procs.values()]
        if any(codes):
            raise SystemExit(f"servers exited with {codes} after SIGTERM")
        alone = model_alone(weights, body, args.max_batch)
    print(f"model alone: {alone}")
    top = max(args.concurrency)
    rate = {r["config"]: r["rps"] for r in rows if r["concurrency"] == top}
    peer = next(name for name in rate if name != "batched")
    ratio = round(rate["batched"] / rate[peer], 2)
    key = "serve_batched_vs_unbatched" if peer == "unbatched" else f"serve_batched_vs_{peer}"
    print(json.dumps({
        "bench": "serve", "weights": str(args.weights or f"random {args.model}"),
        "machine": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "max_decoding": args.max_decoding,
        "levels": rows, **alone, key: ratio,
        "errors": sum(r["errors"] for r in rows),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
