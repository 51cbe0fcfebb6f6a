"""Training and inference images/s of `paper`, `seed` and torchvision's own alexnet.

Same batch, same process, interleaved repetitions; prints a table and the ratio of each model
to torchvision's, then one JSON line with `paper_vs_torchvision_train` and
`paper_vs_torchvision_infer`. Absolute numbers on a shared machine are noisy; ratios are what
we report. Usage:
    python benchmarks/bench_model.py [--batch-size 64] [--device cpu] [--reps 5] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torchvision

import alexnet


def make_models(device: torch.device, channels_last: bool) -> dict[str, torch.nn.Module]:
    models = {
        "paper": alexnet.get_model("paper"),
        "seed": alexnet.get_model("seed"),
        "torchvision": torchvision.models.alexnet(weights=None),
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: m.to(device, memory_format=fmt) for k, m in models.items()}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (best kept)")
    parser.add_argument("--steps", type=int, default=3, help="steps timed per repetition")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_flush_denormal(True)  # as the CLI does, for every model alike
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    settings = [("fp32", torch.float32, False), ("fp32+cl", torch.float32, True)]
    if args.bf16 == "on" or (args.bf16 == "auto" and bf16_supported(device)):
        settings.append(("bf16+cl", torch.bfloat16, True))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name or platform.machine()}), threads {torch.get_num_threads()}")
    print(f"batch {args.batch_size}, best of {args.reps} x {args.steps} steps, {torch.__version__}")
    head = ("setting", "model", "train img/s", "ratio", "infer img/s", "ratio")
    print("{:9s} {:12s} {:>12s} {:>6s} {:>12s} {:>6s}".format(*head))
    result: dict[str, float | str] = {"device": str(device), "batch_size": args.batch_size}
    for label, dtype, channels_last in settings:
        models = make_models(device, channels_last)
        xs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        train = {k: float("inf") for k in models}
        infer = {k: float("inf") for k in models}
        for m in models.values():  # warm-up (allocator, cudnn autotune)
            time_train(m, xs, y, dtype, 1)
            time_infer(m, xs, dtype, 1)
        for _ in range(args.reps):  # interleaved so load changes hit every model alike
            for k, m in models.items():
                train[k] = min(train[k], time_train(m, xs, y, dtype, args.steps))
                infer[k] = min(infer[k], time_infer(m, xs, dtype, args.steps))
        for k in models:
            tr, inf = args.batch_size / train[k], args.batch_size / infer[k]
            rt, ri = train["torchvision"] / train[k], infer["torchvision"] / infer[k]
            print(f"{label:9s} {k:12s} {tr:12.1f} {rt:6.2f} {inf:12.1f} {ri:6.2f}")
            if k != "torchvision":
                suffix = "" if label == "fp32" else "_" + label.replace("+", "_")
                result[f"{k}_vs_torchvision_train{suffix}"] = round(rt, 3)
                result[f"{k}_vs_torchvision_infer{suffix}"] = round(ri, 3)
            result[f"{k}_train_img_s_{label}"] = round(tr, 1)
            result[f"{k}_infer_img_s_{label}"] = round(inf, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
