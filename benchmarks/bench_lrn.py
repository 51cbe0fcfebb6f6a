"""LRN forward+backward: this project's `LRN` against `torch.nn.LocalResponseNorm`.

Both compute the paper's formula (torch's with alpha * n, since it divides alpha by n), on a
64x96x55x55 float32 batch by default (conv1's output at batch 64). Interleaved repetitions,
best kept; last line JSON with `lrn_vs_torch_fwd_bwd` (how many times faster ours is).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from alexnet.models.lrn import LRN


def fwd_bwd(layer, x: torch.Tensor, grad: torch.Tensor) -> float:
    x = x.detach().requires_grad_()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    layer(x).backward(grad)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,96,55,55")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    shape = tuple(int(s) for s in args.shape.split(","))
    x = torch.randn(shape, device=args.device).relu_() * 10
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    ours = LRN(5, alpha=1e-4, beta=0.75, k=2.0)
    theirs = torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    assert torch.allclose(ours(x), theirs(x), rtol=1e-4, atol=1e-5), "layers disagree"
    best = {"ours": float("inf"), "torch": float("inf")}
    for _ in range(args.reps):
        best["ours"] = min(best["ours"], fwd_bwd(ours, x, grad))
        best["torch"] = min(best["torch"], fwd_bwd(theirs, x, grad))
    ratio = best["torch"] / best["ours"]
    print(f"shape {shape} on {args.device}, threads {torch.get_num_threads()}")
    print(f"torch.nn.LocalResponseNorm  {best['torch'] * 1000:8.1f} ms")
    print(f"alexnet LRN                 {best['ours'] * 1000:8.1f} ms   {ratio:.2f}x faster")
    print(json.dumps({"lrn_vs_torch_fwd_bwd": round(ratio, 2), "shape": list(shape),
                      "device": args.device, "ours_ms": round(best["ours"] * 1000, 1),
                      "torch_ms": round(best["torch"] * 1000, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
