"""The constants of `alexnet serve`'s memory formula (docs/serve.md), measured on real servers.

    peak RSS ~ R0 + max_decoding x max_pixels x b + 2 x bodies in flight + batch

Each measurement starts a fresh server on 127.0.0.1 and reads the peak RSS of its process
(VmHWM in /proc/PID/status) before and after sending images:

- b, bytes per decoded pixel, per image kind: --max-decoding 1, two SIDE x SIDE images one
  after the other; b = (growth - 2 x body) / pixels, the body having its own term (kinds:
  8-bit RGB, gray, RGBA and 16-bit gray PNG, float TIFF, JPEG under the paper rule, which
  decodes it at a reduced size, and under torchvision's rule, at full size);
- the decode term's scaling: RGB PNGs in a burst of 4 x D concurrent requests at
  --max-decoding D for D = 1, 2, 4 -> growth / (D x pixels x b_rgb + 2 x bodies), 1.0 when
  the formula is exact;
- R0 (the model, torch, the server) and the batch term: `small` and `paper` (random weights)
  at start, then after --max-batch 32 concurrent small images.

    python benchmarks/bench_serve_memory.py            # SIDE 2000 (4 MP), 5 minutes on 2 cores
    python benchmarks/bench_serve_memory.py --side 1000

The last line is JSON with `decode_vs_formula` (the largest scaling ratio) and each constant.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from bench_serve import random_weights, start
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from alexnet.runtime import cpu_name  # noqa: E402
from alexnet.weights import read as read_weights  # noqa: E402
from alexnet.weights import save as save_weights  # noqa: E402


def image_bytes(kind: str, side: int) -> tuple[bytes, str]:
    """A smooth SIDE x SIDE image of `kind`, encoded -> (bytes, Content-Type)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.int32)
    rgb = np.stack([xx % 256, yy % 256, (xx // 7 + yy) % 256], -1).astype(np.uint8)
    fmt, ctype = "PNG", "image/png"
    if kind == "rgb-png":
        img = Image.fromarray(rgb)
    elif kind == "gray-png":
        img = Image.fromarray(rgb[..., 0])
    elif kind == "rgba-png":
        img = Image.fromarray(np.dstack([rgb, ((xx + yy) % 256).astype(np.uint8)]))
    elif kind == "gray16-png":
        img = Image.fromarray((xx * 7 + yy).astype(np.uint16))
    elif kind == "float-tiff":
        img, fmt, ctype = Image.fromarray((xx * 0.5 + yy).astype(np.float32)), "TIFF", "image/tiff"
    else:  # jpeg, jpeg-torchvision
        img, fmt, ctype = Image.fromarray(rgb), "JPEG", "image/jpeg"
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue(), ctype


def hwm_kib(pid: int, field: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def send(url: str, body: bytes, ctype: str, count: int, concurrency: int) -> None:
    """`count` POST /v1/predict, `concurrency` at a time; every answer must be 200."""

    async def go() -> list[int]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=url, timeout=300, limits=limits, trust_env=False
        ) as client:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> int:
                async with sem:
                    r = await client.post("/v1/predict", content=body,
                                          headers={"Content-Type": ctype})  # fmt: skip
                    return r.status_code

            return await asyncio.gather(*(one() for _ in range(count)))

    codes = asyncio.run(go())
    if set(codes) != {200}:
        raise SystemExit(f"answers {sorted(set(codes))}, expected 200")


def grown_mb(weights: Path, jobs: list[tuple[bytes, str, int, int]], *flags: str) -> dict:
    """A fresh server: peak RSS at start, after a small warm-up image, and its growth over
    the warm-up peak after `jobs` (body, type, count, concurrency), in MiB."""
    proc, url = start(weights, "--max-body-mb", "256", "--max-pixels", str(10**9), *flags)
    try:
        at_start = hwm_kib(proc.pid)
        small, ctype = image_bytes("jpeg", 64)
        send(url, small, ctype, 2, 1)
        before = hwm_kib(proc.pid)
        for body, kind_type, count, concurrency in jobs:
            send(url, body, kind_type, count, concurrency)
        after = hwm_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return {"start_mb": at_start / 1024, "warm_mb": before / 1024,
            "grown_mb": (after - before) / 1024}  # fmt: skip


def torchvision_rule(weights: Path, out: Path) -> Path:
    """The same weights, with preprocess.resize_rule = torchvision (full-size JPEG decode)."""
    model_weights, meta = read_weights(weights)
    pre = {**meta.preprocess.to_json(), "resize_rule": "torchvision"}
    save_weights(out, model_weights, model_config=meta.model_config, classes=meta.classes,
                 preprocess=pre)  # fmt: skip
    return out


KINDS = ["rgb-png", "gray-png", "rgba-png", "gray16-png", "float-tiff", "jpeg", "jpeg-torchvision"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=2000, help="side of the large images (2000)")
    args = p.parse_args()
    pixels, t0, out = args.side**2, time.monotonic(), {}
    with tempfile.TemporaryDirectory() as tmp:
        small = random_weights("small", Path(tmp) / "small.safetensors")
        tv = torchvision_rule(small, Path(tmp) / "small-tv.safetensors")
        b = {}
        for kind in KINDS:
            body, ctype = image_bytes(kind, args.side)
            w = tv if kind == "jpeg-torchvision" else small
            g = grown_mb(w, [(body, ctype, 2, 1)], "--max-decoding", "1")["grown_mb"]
            b[kind] = round((g * 2**20 - 2 * len(body)) / pixels, 1)
            print(f"{kind:>17}: {len(body) / 2**20:6.2f} MiB body, peak +{g:6.1f} MiB, "
                  f"b = {b[kind]:4.1f} bytes/pixel", flush=True)  # fmt: skip
        body, ctype = image_bytes("rgb-png", args.side)
        scaling = {}
        for d in (1, 2, 4):
            g = grown_mb(small, [(body, ctype, 4 * d, 4 * d)], "--max-decoding", str(d))
            term = d * pixels * b["rgb-png"] + 2 * 4 * d * len(body)  # decodes + bodies
            scaling[d] = round(g["grown_mb"] * 2**20 / term, 2)
            print(f"--max-decoding {d}: burst of {4 * d}, peak +{g['grown_mb']:6.1f} MiB = "
                  f"{scaling[d]:.2f} x the formula's decode + body terms", flush=True)  # fmt: skip
        models = {}
        for name in ("small", "paper"):
            w = small if name == "small" else random_weights("paper", Path(tmp) / "paper.st")
            photo, ctype = image_bytes("jpeg", 400)
            g = grown_mb(w, [(photo, ctype, 64, 32)], "--max-batch", "32", "--max-wait-ms", "50")
            models[name] = {k: round(v, 1) for k, v in g.items()}
            print(f"{name:>6}: peak at start {g['start_mb']:.0f} MiB, warm {g['warm_mb']:.0f} "
                  f"MiB, +{g['grown_mb']:.1f} MiB for batches of up to 32", flush=True)  # fmt: skip
    out = {"bench": "serve_memory", "machine": cpu_name(), "cores": os.cpu_count(),
           "side": args.side, "bytes_per_pixel": b, "decode_scaling": scaling,
           "decode_vs_formula": max(scaling.values()), "models_mb": models,
           "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
