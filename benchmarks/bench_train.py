"""End-to-end training benchmark: `alexnet train` as a user runs it vs a pytorch/examples loop.

Both train on the same folder of JPEGs (500x375 photos, as `bench_loader.py` makes them), the
same batch size and the same number of loader workers, each pipeline in a fresh process:

- `examples`: pytorch/examples' imagenet/main.py loop: torchvision ImageFolder + PIL
  (RandomResizedCrop 224, flip, ToTensor, Normalize) + DataLoader(workers) + torchvision's
  `alexnet`, SGD (lr 0.01, momentum 0.9, wd 1e-4), cross-entropy; every JPEG decoded each step;
- `ours-torchvision`: `alexnet prepare` once, then `alexnet train --model torchvision
  --recipe torchvision` (its defaults: channel-normalised random-resized crops, flip);
- `ours-paper`: `alexnet train --model paper` (the paper recipe: 224 crops of 256, flip,
  fancy-PCA lighting, mean image; the two-tower network with LRN);
- `ours-paper-amp`, `ours-torchvision-amp`: the same with bf16 autocast (`--amp`, opt-in since
  it changes the numerics); `ours-*-nomalloc`: with ALEXNET_MALLOC=0 (the allocator setting off);
  `ours-*-cl`: with `--channels-last`; `ours-*-w1`: one loader thread instead of `--workers`.

Rates are steady state: images/s between the end of step `--skip` and the last step (start-up,
worker spin-up and the first steps excluded), measured from per-step timestamps (ours: the
step log of `--log-every 1`, which also gives the data stall = time waiting for a batch /
step time). Pipelines run in alternating rounds (`--rounds`), each keeping its best round,
because other jobs share the machine. The one-time `prepare` cost is printed on its own with
the number of epochs after which it has paid for itself. Peak RSS of each process is reported.
Last line: JSON with train_vs_pytorch_examples (ours-torchvision / examples, like for like) and
paper_train_vs_pytorch_examples.

Also reported per pipeline: the process's wall time, and `startup_s`, the training time of the
first `--skip` steps beyond as many steady steps: torch.compile's compilation for a `--compile`
pipeline (reported as `compile_s`), cuDNN autotuning and worker start-up otherwise; on CUDA the
peak GPU memory (torch.cuda.max_memory_allocated). `--log-every N` logs (and syncs) every N
steps instead of every step. A pipeline that fails or runs past `--pipeline-timeout` is
reported under `failed` and loses nothing else; `--json PATH` rewrites the JSON after every
pipeline, so a benchmark killed midway keeps what it measured (exit status 1 if any failed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _ours(model: str, *flags: str, recipe: str = "") -> list[str]:
    """`alexnet train`'s arguments for a pipeline: the model, its recipe (the model's name
    unless given) and further flags."""
    return ["--model", model, "--recipe", recipe or model, *flags]


FAST = ("--amp", "--channels-last")  # bf16 and channels-last
PIPELINES = {
    "examples": None,
    "ours-torchvision": _ours("torchvision"),
    "ours-paper": _ours("paper"),
    "ours-torchvision-amp": _ours("torchvision", "--amp"),
    "ours-paper-amp": _ours("paper", "--amp"),
    "ours-torchvision-nomalloc": _ours("torchvision"),
    "ours-paper-nomalloc": _ours("paper"),
    "ours-torchvision-cl": _ours("torchvision", "--channels-last"),
    "ours-paper-cl": _ours("paper", "--channels-last"),
    "ours-torchvision-w1": _ours("torchvision"),
    "ours-paper-w1": _ours("paper"),
    # the small network: a fast dry run of the plumbing (gpu_check.sh on a CPU), no claim
    "ours-small": _ours("small", recipe="fast"),
    # bf16 and channels-last, eager (the fast settings on CUDA without compile's start-up)
    "ours-paper-amp-cl": _ours("paper", *FAST),
    "ours-torchvision-amp-cl": _ours("torchvision", *FAST),
    # a GPU as it is meant to run: packed data and augmentation on the device, bf16,
    # channels-last, torch.compile
    "ours-paper-gpu": _ours("paper", *FAST, "--compile"),
    "ours-torchvision-gpu": _ours("torchvision", *FAST, "--compile"),
}
# pipelines that change one setting against the same-named one without the suffix
WORKERS_OVERRIDE = {"-w1": 1}
DEFAULT = ["examples", "ours-torchvision", "ours-paper", "ours-torchvision-amp", "ours-paper-amp"]


class PipelineError(Exception):
    """One pipeline failed (exit status, timeout, no result): reported, the others go on."""


def examples_loop(data: str, batch: int, workers: int, steps: int, device: str) -> None:
    """pytorch/examples imagenet/main.py's training loop; prints one timestamp per step."""
    import torch
    import torchvision
    import torchvision.transforms as T

    torch.set_flush_denormal(True)  # as our CLI does: the comparison is of the pipelines
    normalize = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    ds = torchvision.datasets.ImageFolder(os.path.join(data, "train"), tf)
    cuda = device.startswith("cuda")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True, pin_memory=cuda
    )
    model = torchvision.models.alexnet(num_classes=len(ds.classes)).to(device)
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    done, t0 = 0, time.perf_counter()
    stamps = [(0, 0, 0.0)]
    while done < steps:
        for images, target in loader:
            images = images.to(device, non_blocking=True)
            target = target.to(device, non_blocking=True)
            output = model(images)
            loss = criterion(output, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if cuda:
                torch.cuda.synchronize()
            stamps.append((done, done * batch, time.perf_counter() - t0))
            if done >= steps:
                break
    print(json.dumps({"stamps": stamps, "maxrss_mb": _maxrss_mb(), "gpu_mb": _gpu_mb()}))


def ours_loop(argv: list[str]) -> int:
    """`alexnet ARGV` through the real CLI entry point, then the process's peak RSS; returns
    the CLI's exit status."""
    from alexnet.cli import main

    code = main(argv)
    print(json.dumps({"rc": code, "maxrss_mb": _maxrss_mb(), "gpu_mb": _gpu_mb()}))
    return code


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _gpu_mb() -> float | None:
    """Peak GPU memory allocated by this process (MiB), None without CUDA."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _child(args: list[str], env: dict[str, str], timeout: float | None) -> dict:
    """This script in a fresh process; its last stdout line (JSON). PipelineError if it fails,
    runs past `timeout` seconds (then it is killed) or prints no result."""
    try:
        done = subprocess.run([sys.executable, str(Path(__file__)), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PipelineError(f"timed out after {timeout:.0f} s (--pipeline-timeout)") from None
    if done.returncode != 0:
        raise PipelineError(f"exit status {done.returncode}: {done.stderr[-1500:]}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PipelineError(f"no result line; stderr: {done.stderr[-1500:]}") from None


def _steady(stamps: list[tuple[int, int, float]], skip: int) -> dict:
    """From (step, images, seconds) stamps: images/s between the first stamp at or after step
    `skip` and the last one, and startup_s, the time to that stamp beyond as many steady steps."""
    first = next((s for s in stamps if s[0] >= skip), None)
    last = stamps[-1]
    if first is None or last[0] <= first[0]:
        raise PipelineError(f"no steps logged after step {skip}: raise --steps")
    span = max(last[2] - first[2], 1e-9)
    per_step = span / (last[0] - first[0])
    return {"rate": (last[1] - first[1]) / span, "startup_s": first[2] - first[0] * per_step,
            "first": first, "last": last}  # fmt: skip


def run_pipeline(name: str, opts, jpegs: Path, packed: Path, work: Path, env: dict) -> dict:
    """One pipeline in its own process: rate, data stall, startup, peak memory, wall time."""
    steps, t0 = opts.skip + opts.steps, time.perf_counter()
    if name == "examples":
        args = [str(jpegs), str(opts.batch_size), str(opts.workers), str(steps), opts.device]
        out = _child(["--examples", *args], env, opts.pipeline_timeout)
        got = _steady([tuple(s) for s in out["stamps"]], opts.skip)
        return _result(got, out, time.perf_counter() - t0)
    run = work / f"{name}-{time.monotonic_ns()}"
    argv = ["train", "--data", str(packed), "--output-dir", str(run), *PIPELINES[name]]
    workers = next((w for sfx, w in WORKERS_OVERRIDE.items() if name.endswith(sfx)), opts.workers)
    argv += ["--batch-size", str(opts.batch_size), "--workers", str(workers)]
    argv += ["--max-steps", str(steps), "--log-every", str(opts.log_every), "--val-limit", "1"]
    argv += ["--test-crops", "1", "--eval-crops", "1", "--device", opts.device]
    child_env = dict(env, ALEXNET_MALLOC="0") if name.endswith("-nomalloc") else env
    out = _child(["--ours", *argv], child_env, opts.pipeline_timeout)
    try:
        lines = (run / "steps.jsonl").read_text().splitlines()
    except OSError as e:
        raise PipelineError(f"no step log: {e}") from None
    records = [json.loads(x) for x in lines]
    got = _steady([(r["step"], r["images"], r["time"]) for r in records], opts.skip)
    later = [r for r in records if r["step"] > got["first"][0]]
    stall = sum(r["data_time"] for r in later) / max(got["last"][2] - got["first"][2], 1e-9)
    return _result(got, out, time.perf_counter() - t0, stall=stall)


def _result(got: dict, out: dict, wall_s: float, **extra: float) -> dict:
    return {"rate": got["rate"], **extra, "startup_s": got["startup_s"], "wall_s": wall_s,
            "maxrss_mb": out["maxrss_mb"], "gpu_mb": out["gpu_mb"]}  # fmt: skip


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1280, help="JPEGs in the train folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="measured steps per round")
    p.add_argument("--skip", type=int, default=4, help="first steps excluded")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pipelines", default=",".join(DEFAULT), help=",".join(PIPELINES))
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (both pipelines)")
    p.add_argument("--log-every", type=int, default=1, help="ours: log (and sync) every N steps")
    p.add_argument("--pipeline-timeout", type=float, default=None, help="seconds per pipeline")
    p.add_argument("--json", metavar="PATH", help="also write the JSON here, after each pipeline")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that it runs")
    opts = p.parse_args()
    if opts.quick:
        opts.images, opts.batch_size, opts.steps, opts.skip, opts.rounds = 24, 4, 2, 1, 1
        if opts.pipelines == ",".join(DEFAULT):
            opts.pipelines = "examples,ours-torchvision,ours-paper"
    opts.names = [n.strip() for n in opts.pipelines.split(",") if n.strip()]
    unknown = [n for n in opts.names if n not in PIPELINES]
    if unknown:
        p.error(f"unknown pipelines {unknown}; choose from {', '.join(PIPELINES)}")
    if opts.log_every < 1 or opts.skip < 1 or opts.steps < opts.log_every:
        p.error("need --log-every >= 1, --skip >= 1 and --steps >= --log-every")
    return opts


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--examples":
        data, (batch, workers, steps), device = sys.argv[2], map(int, sys.argv[3:6]), sys.argv[6]
        examples_loop(data, batch, workers, steps, device)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--ours":
        return ours_loop(sys.argv[2:])
    opts = parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(SRC), env.get("PYTHONPATH", "")) if x)
    best: dict[str, dict] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train.") as tmp:
        work = Path(tmp)
        jpegs, packed = work / "jpegs", work / "packed"
        try:
            prepare_s = make_data(jpegs, packed, opts.images, env)
        except (PipelineError, OSError, ImportError) as e:
            write_json(opts, {"device": opts.device, "error": f"data: {e}"})
            print(f"bench_train: data: {e}", file=sys.stderr)
            return 1
        write_json(opts, summarize(best, failed, opts, prepare_s))
        for r in range(opts.rounds):
            for name in [n for n in opts.names if n not in failed]:
                try:
                    got = run_pipeline(name, opts, jpegs, packed, work, env)
                except PipelineError as e:
                    failed[name] = str(e)
                    print(f"round {r + 1} {name:28s} FAILED: {e}", flush=True)
                else:
                    print(f"round {r + 1} {name:28s} {got['rate']:7.1f} img/s", flush=True)
                    if name not in best or got["rate"] > best[name]["rate"]:
                        best[name] = got
                write_json(opts, summarize(best, failed, opts, prepare_s))
    report(best, opts, prepare_s)
    print(json.dumps(summarize(best, failed, opts, prepare_s)))
    return 1 if failed else 0


def make_data(jpegs: Path, packed: Path, images: int, env: dict) -> float:
    """The JPEG folder (bench_loader's photos) and its `alexnet prepare`; prepare's seconds."""
    sys.path.insert(0, str(HERE))
    from bench_loader import find_photos, make_jpegs

    make_jpegs(jpegs, find_photos(None), images)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "alexnet", "prepare", str(jpegs), str(packed)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise PipelineError(f"alexnet prepare failed: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def write_json(opts, summary: dict) -> None:
    """--json PATH: the summary so far, replaced atomically (a kill never leaves half a file)."""
    if not opts.json:
        return
    path = Path(opts.json)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, path)


def report(best: dict[str, dict], opts, prepare_s: float) -> None:
    cpu = _cpu_name(SRC)
    setting = f"batch {opts.batch_size}, {opts.workers} workers, {opts.images} JPEGs"
    print(f"\n{cpu}, {os.cpu_count()} cores, torch {_torch_version()}, {setting}, best of "
          f"{opts.rounds} round(s)")  # fmt: skip
    base = best.get("examples", {}).get("rate")
    print(f"{'pipeline':28s} {'img/s':>8s} {'vs examples':>12s} {'stall':>6s} {'peak RSS':>9s}"
          f" {'GPU mem':>9s} {'start s':>8s} {'wall s':>7s}")  # fmt: skip
    for name, got in best.items():
        ratio = f"{got['rate'] / base:.2f}" if base else "-"
        stall = f"{100 * got['stall']:.0f}%" if "stall" in got else "-"
        gpu = f"{got['gpu_mb']:7.0f} MB" if got.get("gpu_mb") is not None else "-"
        print(f"{name:28s} {got['rate']:8.1f} {ratio:>12s} {stall:>6s} "
              f"{got['maxrss_mb']:7.0f} MB {gpu:>9s} {got['startup_s']:8.1f} "
              f"{got['wall_s']:7.1f}")  # fmt: skip
    paid = _paid_after(best, opts, prepare_s)
    note = f"; paid for itself after {paid:.2f} epochs" if paid is not None else ""
    print(f"prepare (one time): {prepare_s:.1f} s for {opts.images} JPEGs{note}")


def _paid_after(best: dict[str, dict], opts, prepare_s: float) -> float | None:
    """Epochs after which prepare's one-time cost is saved back (ours-torchvision vs examples)."""
    base = best.get("examples", {}).get("rate")
    ours = best.get("ours-torchvision", {}).get("rate")
    if not (base and ours and ours > base):
        return None
    saved_per_epoch = opts.images / base - opts.images / ours
    return prepare_s / saved_per_epoch


def summarize(best: dict[str, dict], failed: dict[str, str], opts, prepare_s: float) -> dict:
    """The JSON line: rates, ratios to examples, stalls, GPU memory, start-up and failures."""
    cpu = _cpu_name(SRC)
    base = best.get("examples", {}).get("rate")
    paid = _paid_after(best, opts, prepare_s)
    summary = {
        "machine": cpu if opts.device == "cpu" else f"{cpu} + {_gpu_name()}",
        "device": opts.device,
        "torch": _torch_version(),
        "batch_size": opts.batch_size,
        "steps": opts.steps,
        "skip": opts.skip,
        "log_every": opts.log_every,
        "prepare_s": round(prepare_s, 2),
        "prepare_paid_after_epochs": None if paid is None else round(paid, 3),
        **{f"{k}_img_s": round(v["rate"], 2) for k, v in best.items()},
    }
    for name in best:
        if name != "examples" and base:
            key = name.removeprefix("ours-").replace("-", "_")
            summary[f"{key}_vs_pytorch_examples"] = round(best[name]["rate"] / base, 3)
    if "torchvision_vs_pytorch_examples" in summary:
        summary["train_vs_pytorch_examples"] = summary.pop("torchvision_vs_pytorch_examples")
    if "paper_vs_pytorch_examples" in summary:
        summary["paper_train_vs_pytorch_examples"] = summary.pop("paper_vs_pytorch_examples")
    for name, got in best.items():
        key = name.removeprefix("ours-").replace("-", "_")
        if got.get("gpu_mb") is not None:
            summary[f"{key}_gpu_mb"] = round(got["gpu_mb"])
        if "stall" in got:
            summary[f"{key}_data_stall"] = round(got["stall"], 3)
        started = "compile_s" if "--compile" in (PIPELINES[name] or []) else "startup_s"
        summary[f"{key}_{started}"] = round(got["startup_s"], 2)
        summary[f"{key}_wall_s"] = round(got["wall_s"], 1)
    summary["failed"] = dict(failed)
    return summary


def _cpu_name(src: Path) -> str:
    """The CPU's model name, as the package reports it (alexnet.runtime.cpu_name)."""
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    from alexnet.runtime import cpu_name

    return cpu_name()


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
