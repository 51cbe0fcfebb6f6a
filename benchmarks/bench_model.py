"""Training and inference images/s of `paper`, `seed` and torchvision's own alexnet.

Same batch, same process, interleaved repetitions; prints a table and the ratio of each model
to torchvision's, then one JSON line with `paper_vs_torchvision_train` and
`paper_vs_torchvision_infer`. Absolute numbers on a shared machine are noisy; ratios are what
we report. Settings: on a CPU fp32, fp32 channels-last and (with AVX-512) bf16 channels-last;
on CUDA also TF32 (fp32 with TF32 matmuls and convolutions; plain `fp32` has TF32 off) and bf16
autocast, each NCHW and channels-last, with the peak GPU memory of a training step beyond the
resident weights (torch.cuda.max_memory_allocated). A setting that fails (out of memory, ...)
is reported under `failed`; `--json PATH` rewrites the JSON after every setting. Usage:
    python benchmarks/bench_model.py [--batch-size 64] [--device cpu] [--reps 5] [--steps 3]
        [--models paper,seed,torchvision] [--settings fp32,tf32+cl,...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision

import alexnet

# label -> (autocast dtype, channels-last, TF32 on); the CUDA-only ones need TF32 or a GPU's bf16
SETTINGS = {
    "fp32": (torch.float32, False, False),
    "fp32+cl": (torch.float32, True, False),
    "tf32": (torch.float32, False, True),
    "tf32+cl": (torch.float32, True, True),
    "bf16": (torch.bfloat16, False, True),
    "bf16+cl": (torch.bfloat16, True, True),
}
CPU_SETTINGS = ["fp32", "fp32+cl", "bf16+cl"]


def make_models(
    device: torch.device, channels_last: bool, names: list[str]
) -> dict[str, torch.nn.Module]:
    """The named models (torchvision's last, as the ratios' base), on `device`."""
    build = {
        "paper": lambda: alexnet.get_model("paper"),
        "seed": lambda: alexnet.get_model("seed"),
        "torchvision": lambda: torchvision.models.alexnet(weights=None),
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: build[k]().to(device, memory_format=fmt) for k in names}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train(model, x, y, dtype, steps: int) -> float:
    """Seconds per SGD step (forward, loss, backward, update)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(x.device)
    return (time.perf_counter() - start) / steps


@torch.inference_mode()
def time_infer(model, x, dtype, steps: int) -> float:
    model.eval()
    sync(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            model(x)
    sync(x.device)
    return (time.perf_counter() - start) / steps


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")() in ("AVX512",))


def set_tf32(device: torch.device, on: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (no effect on a CPU)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def step_gpu_mb(model, x, y, dtype) -> float | None:
    """Peak GPU memory of one training step beyond what was allocated before it (MiB)."""
    if x.device.type != "cuda":
        return None
    torch.cuda.synchronize(x.device)
    before = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    time_train(model, x, y, dtype, 1)
    return (torch.cuda.max_memory_allocated(x.device) - before) / 2**20


def measure(args, device: torch.device, label: str, x, y) -> dict[str, dict[str, float]]:
    """Best seconds per train / infer step of every model in one setting (interleaved)."""
    dtype, channels_last, tf32 = SETTINGS[label]
    set_tf32(device, tf32)
    models = make_models(device, channels_last, args.model_names)
    xs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    got = {k: {"train": float("inf"), "infer": float("inf")} for k in models}
    for k, m in models.items():  # warm-up (allocator, cudnn autotune), then the step's memory
        time_train(m, xs, y, dtype, 1)
        time_infer(m, xs, dtype, 1)
        got[k]["gpu_mb"] = step_gpu_mb(m, xs, y, dtype)
    for _ in range(args.reps):  # interleaved so load changes hit every model alike
        for k, m in models.items():
            got[k]["train"] = min(got[k]["train"], time_train(m, xs, y, dtype, args.steps))
            got[k]["infer"] = min(got[k]["infer"], time_infer(m, xs, dtype, args.steps))
    del models
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return got


def record(result: dict, label: str, got: dict, batch: int) -> None:
    """Print the setting's rows; put its rates and ratios to torchvision into `result`."""
    base = got.get("torchvision")
    for k, t in got.items():
        tr, inf = batch / t["train"], batch / t["infer"]
        rt = base["train"] / t["train"] if base else float("nan")
        ri = base["infer"] / t["infer"] if base else float("nan")
        mem = f"{t['gpu_mb']:8.0f} MB" if t.get("gpu_mb") is not None else ""
        print(f"{label:9s} {k:12s} {tr:12.1f} {rt:6.2f} {inf:12.1f} {ri:6.2f} {mem}")
        if k != "torchvision" and base:
            suffix = "" if label == "fp32" else "_" + label.replace("+", "_")
            result[f"{k}_vs_torchvision_train{suffix}"] = round(rt, 3)
            result[f"{k}_vs_torchvision_infer{suffix}"] = round(ri, 3)
        result[f"{k}_train_img_s_{label}"] = round(tr, 1)
        result[f"{k}_infer_img_s_{label}"] = round(inf, 1)
        if t.get("gpu_mb") is not None:
            result[f"{k}_train_step_gpu_mb_{label}"] = round(t["gpu_mb"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (best kept)")
    parser.add_argument("--steps", type=int, default=3, help="steps timed per repetition")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--models", default="paper,seed,torchvision", help="comma-separated")
    parser.add_argument("--settings", default=None, help=f"of {','.join(SETTINGS)} (device's)")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON here, per setting")
    args = parser.parse_args()
    args.model_names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.model_names or not set(args.model_names) <= {"paper", "seed", "torchvision"}:
        parser.error(f"--models {args.models}: choose from paper, seed, torchvision")
    args.model_names.sort(key=lambda m: m == "torchvision")  # the base last, as in the table
    if args.settings:
        args.setting_names = [x.strip() for x in args.settings.split(",") if x.strip()]
        if not set(args.setting_names) <= set(SETTINGS):
            parser.error(f"--settings {args.settings}: choose from {', '.join(SETTINGS)}")
    return args


def default_settings(args, device: torch.device) -> list[str]:
    if getattr(args, "setting_names", None):
        return args.setting_names
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and bf16_supported(device))
    names = list(SETTINGS) if device.type == "cuda" else CPU_SETTINGS
    return [n for n in names if bf16 or SETTINGS[n][0] != torch.bfloat16]


def write_json(path: str | None, result: dict) -> None:
    """The result so far, replaced atomically (a kill never leaves half a file)."""
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, path)


def main() -> int:
    args = parse_args()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)  # as the CLI does, for every model alike
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name or platform.machine()}), threads {torch.get_num_threads()}")
    print(f"batch {args.batch_size}, best of {args.reps} x {args.steps} steps, {torch.__version__}")
    head = ("setting", "model", "train img/s", "ratio", "infer img/s", "ratio")
    print("{:9s} {:12s} {:>12s} {:>6s} {:>12s} {:>6s}".format(*head))
    result: dict = {"device": str(device), "device_name": name, "torch": torch.__version__,
                    "batch_size": args.batch_size, "failed": {}}  # fmt: skip
    for label in default_settings(args, device):
        try:
            got = measure(args, device, label, x, y)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
            result["failed"][label] = f"{type(e).__name__}: {str(e)[-500:]}"
            print(f"{label:9s} FAILED: {result['failed'][label]}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            record(result, label, got, args.batch_size)
        write_json(args.json, result)
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
