"""Load test of `alexnet serve` on 127.0.0.1: dynamic batching against --max-batch 1.

Starts the server twice in a subprocess on a free loopback port (batched: --max-batch 32
--max-wait-ms 5; unbatched: --max-batch 1), sends --requests POST /v1/predict at each
concurrency (default 1, 8, 32; every level also stops after --level-seconds), and prints
throughput and p50/p99 latency. The last line is JSON with `serve_batched_vs_unbatched`
(throughput ratio at the highest concurrency) and `errors` (non-200 answers, must be 0).

    python benchmarks/bench_serve.py                      # `paper`, random weights, 1000 req
    python benchmarks/bench_serve.py --weights runs/x/weights.safetensors --requests 200

Only 127.0.0.1 is ever contacted; the load is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
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
from alexnet.train.weights import save_weights  # noqa: E402


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
    """`count` requests by `concurrency` clients (stops early after `seconds`)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "image/jpeg"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=limits, trust_env=False
    ) as client:

        async def worker() -> None:
            nonlocal errors, sent
            while sent < count and time.monotonic() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict?topk=5", content=body, headers=headers)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    p50, p99 = (round(float(np.percentile(lat, q)), 1) for q in (50, 99))
    return {"concurrency": concurrency, "requests": len(latencies), "seconds": round(wall, 2),
            "rps": round(len(latencies) / wall, 2), "p50_ms": p50, "p99_ms": p99,
            "errors": errors}  # fmt: skip


def model_alone(weights: Path, body: bytes, batch: int, seconds: float = 3.0) -> dict:
    """ms per image of the model call alone (decoded image, on a worker thread as in the
    server) at batch 1 and at `batch`: the most that batching can gain."""
    import concurrent.futures

    from alexnet.serve.engine import Engine

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


def run_config(name: str, weights: Path, body: bytes, args, extra: list[str]) -> list[dict]:
    proc, url = start(weights, *extra)
    try:
        asyncio.run(level(url, body, 4, 8, 60))  # warm-up
        rows = []
        for c in args.concurrency:
            row = {"config": name, **asyncio.run(level(url, body, c, args.requests,
                                                       args.level_seconds))}  # fmt: skip
            print(f"{name:>9}  c={c:<3} {row['requests']:>5} req  {row['rps']:8.1f} req/s  "
                  f"p50 {row['p50_ms']:8.1f} ms  p99 {row['p99_ms']:8.1f} ms  "
                  f"errors {row['errors']}", flush=True)  # fmt: skip
            rows.append(row)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    if rc != 0:
        raise SystemExit(f"server ({name}) exited with {rc} after SIGTERM")
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, help="weights file (default: random --model)")
    p.add_argument("--model", choices=["paper", "small"], default="paper")
    p.add_argument("--requests", type=int, default=1000, help="requests per level (1000)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--level-seconds", type=float, default=300, help="time limit per level")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    args = p.parse_args()
    body = photo_jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_weights(args.model, Path(tmp) / "w.safetensors")
        batched = ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        rows = run_config("batched", weights, body, args, batched)
        rows += run_config("unbatched", weights, body, args, ["--max-batch", "1"])
        alone = model_alone(weights, body, args.max_batch)
    print(f"model alone: {alone}")
    top = max(args.concurrency)
    rate = {r["config"]: r["rps"] for r in rows if r["concurrency"] == top}
    ratio = round(rate["batched"] / rate["unbatched"], 2)
    print(json.dumps({
        "bench": "serve", "weights": str(args.weights or f"random {args.model}"),
        "machine": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "levels": rows, **alone, "serve_batched_vs_unbatched": ratio,
        "errors": sum(r["errors"] for r in rows),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
