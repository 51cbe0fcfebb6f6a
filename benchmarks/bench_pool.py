"""Max-pooling and the fused ReLU -> LRN -> max-pool block against torch's own layers.

Shapes of the paper's conv1 and conv2 blocks at batch 64 (96x55x55 and 256x27x27, float32,
NCHW and channels-last). For each: forward+backward (training) and forward alone (inference),
best of interleaved repetitions:
- `MaxPool` (this project's kernel) vs `torch.nn.MaxPool2d(3, 2)`;
- the block ReLU -> LRN -> MaxPool run as the paper model runs it (one fused kernel) vs the
  same block from torch's layers (ReLU, LocalResponseNorm with alpha * 5, MaxPool2d).
Prints a table; the last line is JSON with the ratios (how many times faster ours is).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import OrderedDict

import torch
from torch import nn

from alexnet.models.lrn import LRN
from alexnet.models.pool import MaxPool, run_sequential


def timed(fn, x: torch.Tensor, train: bool) -> float:
    x = x.detach().clone().requires_grad_(train)
    start = time.perf_counter()
    if train:
        out = fn(x * 1.0)  # a non-leaf, as inside a network (in-place ReLU allowed)
        out.backward(torch.ones_like(out))
    else:
        with torch.inference_mode():
            fn(x.clone())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    ours_block = nn.Sequential(
        OrderedDict(act=nn.ReLU(inplace=True), norm=LRN(groups=2, inplace=True), pool=MaxPool(3, 2))
    )

    def torch_block(x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(x)
        x = torch.cat(
            [nn.functional.local_response_norm(p, 5, 5e-4, 0.75, 2.0) for p in x.chunk(2, 1)], 1
        )
        return nn.functional.max_pool2d(x, 3, 2)

    cases = {
        "maxpool": (MaxPool(3, 2), nn.MaxPool2d(3, 2)),
        "relu_lrn_pool": (lambda x: run_sequential(ours_block, x), torch_block),
    }
    result: dict[str, float] = {}
    print(f"batch {args.batch_size}, threads {torch.get_num_threads()}, best of {args.reps}")
    head = ("case", "shape", "layout", "mode", "ours ms", "torch ms", "ratio")
    print("{:14s} {:12s} {:6s} {:6s} {:>8s} {:>9s} {:>6s}".format(*head))
    for channels, size in ((96, 55), (256, 27)):
        for layout in ("nchw", "cl"):
            x = torch.randn(args.batch_size, channels, size, size) * 20
            if layout == "cl":
                x = x.contiguous(memory_format=torch.channels_last)
            for case, (ours, theirs) in cases.items():
                for train in (True, False):
                    best = [float("inf"), float("inf")]
                    for fn in (ours, theirs):  # warm-up
                        timed(fn, x, train)
                    for _ in range(args.reps):
                        best[0] = min(best[0], timed(ours, x, train))
                        best[1] = min(best[1], timed(theirs, x, train))
                    ratio = best[1] / best[0]
                    mode = "train" if train else "infer"
                    print(f"{case:14s} {channels}x{size}x{size:<5d} {layout:6s} {mode:6s} "
                          f"{best[0] * 1e3:8.1f} {best[1] * 1e3:9.1f} {ratio:6.2f}")  # fmt: skip
                    result[f"{case}_{channels}x{size}_{layout}_{mode}"] = round(ratio, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
