"""LRN forward and forward+backward: this project's kernels against `torch.nn.LocalResponseNorm`.

All compute the paper's formula (torch's with alpha * n, since it divides alpha by n), on a
64x96x55x55 float32 batch by default (conv1's output at batch 64). Paths: on the CPU `ours`
(the C kernel) and `torch_ops` (the torch-ops fallback); on CUDA `triton` (one Triton kernel
each way), `torch_ops` (what CUDA ran before: whole-batch torch ops in float32) and `torch_nn`
(the peer) everywhere. Interleaved repetitions, best kept. Effective bandwidth counts the
bytes that must move: the forward reads x and writes y, the backward reads x and dL/dy and
writes dL/dx; on CUDA also as a fraction of the card's memory bandwidth (from the device's
memory clock and bus width when torch reports them, else a table; `bandwidth_source` says
which). `--json PATH` writes one JSON object, rewritten after each path (a killed run keeps
what it measured); the last line printed is JSON with `lrn_vs_torch_fwd_bwd` (how many times
faster our default path is than the peer, forward+backward).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import torch

from alexnet.models.lrn import LRN, kernel_for

# bytes per second of the cards this project targets, when torch does not report them
BANDWIDTH_TABLE = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}
# bytes moved per element, in units of the element size
TRAFFIC = {"fwd": 2, "fwd_bwd": 5}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,96,55,55", help="N,C,H,W")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", type=Path, help="write the numbers here as one JSON object")
    return parser.parse_args()


@contextlib.contextmanager
def lrn_env(value: str | None):
    """ALEXNET_LRN=value (None: as it was) around a call."""
    saved = os.environ.get("ALEXNET_LRN")
    if value is not None:
        os.environ["ALEXNET_LRN"] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ALEXNET_LRN", None)
        else:
            os.environ["ALEXNET_LRN"] = saved


class Peer(torch.nn.LocalResponseNorm):
    """`nn.LocalResponseNorm` as the paper's layer; float32 inside for bfloat16 on the CPU,
    where torch's avg_pool3d has no bfloat16 kernel (on CUDA it runs in bfloat16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.bfloat16:
            return super().forward(x.float()).to(x.dtype)
        return super().forward(x)


def paths(device: str) -> dict[str, tuple[torch.nn.Module, str | None]]:
    """name -> (layer, ALEXNET_LRN for it), the most telling first."""
    theirs = Peer(5, alpha=5e-4, beta=0.75, k=2.0)
    if device.startswith("cuda"):
        return {
            "triton": (LRN(5, alpha=1e-4, beta=0.75, k=2.0), "triton"),
            "torch_nn": (theirs, None),
            "torch_ops": (LRN(5, alpha=1e-4, beta=0.75, k=2.0), "torch"),
        }
    return {
        "ours": (LRN(5, alpha=1e-4, beta=0.75, k=2.0), None),
        "torch_nn": (theirs, None),
        "torch_ops": (LRN(5, alpha=1e-4, beta=0.75, k=2.0, cpu_path="chunked"), None),
    }


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_once(layer, env, x: torch.Tensor, grad: torch.Tensor, mode: str) -> None:
    with lrn_env(env):
        if mode == "fwd":
            with torch.no_grad():
                layer(x)
        else:  # autograd.grad: no accumulation into x.grad between repetitions
            xr = x.detach().requires_grad_()
            torch.autograd.grad(layer(xr), xr, grad)


def timed(layer, env, x, grad, mode: str, inner: int) -> float:
    """Seconds per call, over `inner` back-to-back calls."""
    sync(x.device.type)
    start = time.perf_counter()
    for _ in range(inner):
        run_once(layer, env, x, grad, mode)
    sync(x.device.type)
    return (time.perf_counter() - start) / inner


def bandwidth(device: str) -> tuple[float | None, str]:
    """The card's memory bandwidth (bytes/s) and where the number came from."""
    if not device.startswith("cuda"):
        return None, "not measured on a CPU"
    props = torch.cuda.get_device_properties(torch.device(device))
    clock_khz, bus_bits = (
        getattr(props, "memory_clock_rate", 0),
        getattr(props, "memory_bus_width", 0),
    )
    if clock_khz and bus_bits:  # double data rate: two transfers per clock
        return 2 * clock_khz * 1e3 * bus_bits / 8, "device properties (memory clock x bus width)"
    for name, value in BANDWIDTH_TABLE.items():
        if name in props.name:
            return value, f"table: {name}"
    return None, f"unknown card {props.name!r}"


def make_input(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    shape = tuple(int(s) for s in args.shape.split(","))
    dtype = getattr(torch, args.dtype)
    x = (torch.randn(shape, device=args.device).relu_() * 10).to(dtype)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    return x, torch.randn_like(x)


def check(layers: dict, x: torch.Tensor) -> dict[str, float]:
    """Each path's largest difference from the peer's output, relative to its largest value."""
    with lrn_env(None), torch.no_grad():
        ref = layers["torch_nn"][0](x.float()).float()
    diffs = {}
    for name, (layer, env) in layers.items():
        with lrn_env(env), torch.no_grad():
            diffs[name] = ((layer(x).float() - ref).abs().max() / ref.abs().max()).item()
    return diffs


def warm_up(layers: dict, x, grad, device: str) -> tuple[dict, dict]:
    """First calls (Triton compiles its kernels then): their seconds, and the calls per
    timed sample for each (path, mode) so that a sample lasts about 5 ms on a GPU."""
    first, inner = {}, {}
    for name, (layer, env) in layers.items():
        for mode in TRAFFIC:
            start = time.perf_counter()
            run_once(layer, env, x, grad, mode)
            sync(device)
            first[f"{name}_{mode}"] = time.perf_counter() - start
            once = timed(layer, env, x, grad, mode, 1)
            calls = round(5e-3 / max(once, 1e-6)) if device.startswith("cuda") else 1
            inner[(name, mode)] = max(1, min(20, calls))
    return first, inner


def summary(best: dict, x: torch.Tensor, peak: float | None) -> dict:
    """Per path: ms, effective GB/s and (on CUDA) the fraction of the card's bandwidth."""
    out = {}
    for name, modes in best.items():
        row = {}
        for mode, seconds in modes.items():
            moved = TRAFFIC[mode] * x.numel() * x.element_size() / seconds
            row[f"{mode}_ms"] = round(seconds * 1e3, 4)
            row[f"{mode}_gb_per_s"] = float(f"{moved / 1e9:.4g}")
            if peak:
                row[f"{mode}_bandwidth_fraction"] = round(moved / peak, 3)
        out[name] = row
    return out


def ratios(best: dict) -> dict:
    """How many times faster than the peer (and than torch ops), forward+backward."""
    ours = "triton" if "triton" in best else "ours"
    found = {"lrn_vs_torch_fwd_bwd": best["torch_nn"]["fwd_bwd"] / best[ours]["fwd_bwd"]}
    found[f"{ours}_vs_torch_ops_fwd_bwd"] = best["torch_ops"]["fwd_bwd"] / best[ours]["fwd_bwd"]
    found[f"{ours}_vs_torch_nn_fwd"] = best["torch_nn"]["fwd"] / best[ours]["fwd"]
    return {key: round(value, 2) for key, value in found.items()}


def write(path: Path | None, result: dict) -> None:
    if path is not None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, path)


def print_table(result: dict) -> None:
    names = {
        "ours": "alexnet LRN (C kernel)",
        "triton": "alexnet LRN (Triton)",
        "torch_ops": "alexnet LRN (torch ops)",
        "torch_nn": "torch.nn.LocalResponseNorm",
    }
    for name, row in result["paths"].items():
        frac = row.get("fwd_bwd_bandwidth_fraction")
        share = f"  {frac:.0%} of the card's bandwidth" if frac is not None else ""
        print(
            f"{names[name]:28s} fwd {row['fwd_ms']:9.3f} ms  fwd+bwd {row['fwd_bwd_ms']:9.3f} ms"
            f"  {row['fwd_bwd_gb_per_s']:8.4g} GB/s{share}  [{result['kernels'][name]}]",
            flush=True,
        )


def main() -> None:
    args = parse_args()
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    x, grad = make_input(args)
    layers = paths(args.device)
    peak, source = bandwidth(args.device)
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if x.is_cuda else None
    result = {
        "device": args.device, "gpu": gpu, "shape": list(x.shape), "dtype": args.dtype,
        "channels_last": args.channels_last, "reps": args.reps, "threads": torch.get_num_threads(),
        "bandwidth_bytes_per_s": peak, "bandwidth_source": source,
        "bytes_moved_per_element": {"fwd": "2 x element size", "fwd_bwd": "5 x element size"},
    }  # fmt: skip
    result["kernels"] = {
        name: "torch.nn"
        if env is None and not isinstance(layer, LRN)
        else lrn_kernel(x, env, layer)
        for name, (layer, env) in layers.items()
    }
    first, inner = warm_up(layers, x, grad, args.device)
    result["first_call_s"] = {key: round(value, 3) for key, value in first.items()}
    result["max_rel_diff_vs_torch_nn"] = check(layers, x)
    write(args.json, result)
    best = {name: dict.fromkeys(TRAFFIC, float("inf")) for name in layers}
    for _ in range(args.reps):
        for name, (layer, env) in layers.items():
            for mode in TRAFFIC:
                seconds = timed(layer, env, x, grad, mode, inner[(name, mode)])
                best[name][mode] = min(best[name][mode], seconds)
        result["paths"] = summary(best, x, peak)
        result.update(ratios(best))
        write(args.json, result)
    layout = " channels-last" if args.channels_last else ""
    print(f"shape {tuple(x.shape)} {args.dtype}{layout} on {gpu or args.device}, threads "
          f"{torch.get_num_threads()}; bandwidth: {source}")  # fmt: skip
    print_table(result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}), flush=True)


def lrn_kernel(x: torch.Tensor, env: str | None, layer: LRN) -> str:
    """What computes the layer's LRN of x: "c", "triton" or "torch" (ops)."""
    with lrn_env(env):
        return kernel_for(x, layer.cpu_path)


if __name__ == "__main__":
    main()
