"""Occlusion sensitivity (`alexnet predict --explain occlusion`, Zeiler & Fergus 2014 §4.2):
`alexnet.explain.occlusion`, all covered copies `--batch-size` at a time, against the plain
loop that runs one covered image per forward pass (the peer), in the same run on the same
seeded random model and image. Both compute the same grid; the largest difference between
their drops is printed too. The last line is JSON with `batched_vs_loop` (how many times faster
the batched path is).

    python benchmarks/bench_occlusion.py [--model paper] [--batch-size 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from alexnet import get_model  # noqa: E402
from alexnet.explain import occlusion, occlusion_grid  # noqa: E402
from alexnet.runtime import cpu_name  # noqa: E402


@torch.no_grad()
def one_at_a_time(model, x: torch.Tensor, target: int, patch: int, stride: int) -> torch.Tensor:
    """The peer: each covered copy through the model on its own."""
    n = (x.shape[-1] - patch) // stride + 1
    p0 = torch.softmax(model(x).double(), 1)[0, target]
    drop = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            xs = x.clone()
            xs[..., i * stride : i * stride + patch, j * stride : j * stride + patch] = 0
            drop[i, j] = p0 - torch.softmax(model(xs).double(), 1)[0, target]
    return drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper", choices=["paper", "seed", "small"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = get_model(args.model).eval().to(args.device)
    size = model.input_size
    x = torch.randn(1, model.in_channels, size, size, device=args.device)
    patch, stride, n = occlusion_grid(size, None, None)
    occlusion(model, x, 0, patch, stride, args.batch_size)  # warm-up
    t0 = time.perf_counter()
    batched = occlusion(model, x, 0, patch, stride, args.batch_size)["drop"]
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = one_at_a_time(model, x, 0, patch, stride).numpy()
    t_loop = time.perf_counter() - t0
    where = cpu_name() if args.device == "cpu" else torch.cuda.get_device_name()
    print(f"{args.model} at {size} px, {n}x{n} squares of {patch} px, stride {stride}, on {where}")
    print(f"batched ({args.batch_size} a pass): {t_batched:.2f} s")
    print(f"one at a time (peer):   {t_loop:.2f} s")
    result = {
        "model": args.model,
        "squares": n * n,
        "batch_size": args.batch_size,
        "batched_s": round(t_batched, 3),
        "loop_s": round(t_loop, 3),
        "batched_vs_loop": round(t_loop / t_batched, 2),
        "max_abs_diff": float(abs(batched - loop).max()),
        "machine": where,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
