"""Smoke training: a few steps of `alexnet train` on synthetic packed data, one JSON of the result.

Packs `--count` synthetic images (`alexnet prepare --source synthetic`) into `--data` unless a
packed dataset is already there, then runs `alexnet train --max-steps STEPS --log-every 1` with
the flags after `--` (e.g. `--model paper --amp --channels-last --compile`), in this process,
and writes `--json PATH`: ok (exit status 0, every logged loss finite, weights written), the
per-step losses, the first step's time (torch.compile's compilation, cuDNN autotuning) apart
from the steady step time, peak GPU memory (torch.cuda.max_memory_allocated), and with
`--compile` the graph breaks that TorchDynamo counted. The JSON is written even when training
raises. Usage (gpu_check.sh stage 1):
    python benchmarks/smoke_train.py --data /tmp/syn --out-dir /tmp/run --json OUT/smoke.json \\
        --device cuda --batch-size 256 -- --model paper --amp --channels-last
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import torch

from alexnet.cli import main as alexnet


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="packed dataset dir (made if absent)")
    p.add_argument("--out-dir", required=True, help="the run directory to write")
    p.add_argument("--json", required=True, metavar="PATH", help="where the result goes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--count", type=int, default=768, help="synthetic training images")
    p.add_argument("--image-size", type=int, default=256, help="synthetic image side")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--encoding", choices=("raw", "jpeg"), default="raw",
                   help="how the synthetic images are packed (jpeg: decoded as they load, "
                   "on CUDA by nvJPEG in batches)")  # fmt: skip
    return p.parse_args(own), extra


def make_data(opts: argparse.Namespace) -> float | None:
    """Pack the synthetic dataset unless it is there; seconds taken (None: it was there)."""
    if (Path(opts.data) / "header.json").is_file():
        return None
    t0 = time.perf_counter()
    code = alexnet(["prepare", "synthetic", opts.data, "--source", "synthetic", "--count",
                    str(opts.count), "--image-size", str(opts.image_size), "--classes", "10",
                    "--encoding", opts.encoding, "--no-progress"])  # fmt: skip
    if code != 0:
        raise RuntimeError(f"alexnet prepare --source synthetic exited {code}")
    return round(time.perf_counter() - t0, 2)


def train(opts: argparse.Namespace, extra: list[str], result: dict) -> None:
    argv = ["train", "--data", opts.data, "--output-dir", opts.out_dir, "--device", opts.device,
            "--batch-size", str(opts.batch_size), "--max-steps", str(opts.steps),
            "--workers", str(opts.workers), "--log-every", "1", "--val-limit", "1",
            "--eval-crops", "1", "--test-crops", "1", *extra]  # fmt: skip
    result["argv"] = argv
    t0 = time.perf_counter()
    result["rc"] = alexnet(argv)
    result["train_wall_s"] = round(time.perf_counter() - t0, 2)
    steps = Path(opts.out_dir) / "steps.jsonl"
    records = [json.loads(x) for x in steps.read_text().splitlines()] if steps.is_file() else []
    result["losses"] = [r["train_loss"] for r in records]
    times = [r["time"] for r in records]
    if times:
        result["first_step_s"] = round(times[0], 3)
    if len(times) > 1:
        result["step_s"] = round((times[-1] - times[0]) / (len(times) - 1), 4)
        result["images_s"] = round(opts.batch_size / max(result["step_s"], 1e-9), 1)
    weights = (Path(opts.out_dir) / "weights.safetensors").is_file()
    finite = all(math.isfinite(v) for v in result["losses"])
    result["ok"] = result["rc"] == 0 and len(records) == opts.steps and finite and weights


def dynamo_counts() -> dict[str, int]:
    """Graph breaks and compiled graphs that TorchDynamo counted in this process."""
    from torch._dynamo.utils import counters

    return {"graph_breaks": sum(counters["graph_break"].values()),
            "unique_graphs": int(counters["stats"]["unique_graphs"])}  # fmt: skip


def main(argv: list[str]) -> int:
    opts, extra = parse_args(argv)
    cuda = opts.device.startswith("cuda")
    result: dict = {"ok": False, "device": opts.device, "torch": torch.__version__,
                    "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
                    "batch_size": opts.batch_size, "flags": extra}  # fmt: skip
    t0 = time.perf_counter()
    try:
        result["prepare_s"] = make_data(opts)
        train(opts, extra, result)
    except BaseException as e:  # the JSON says what happened, even for Ctrl-C / a timeout
        result["error"] = "".join(traceback.format_exception(e))[-3000:]
    finally:
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        result["maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if cuda:
            result["gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        if "--compile" in extra:
            result.update(dynamo_counts())
        tmp = Path(opts.json + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, opts.json)
    print(json.dumps({k: v for k, v in result.items() if k != "argv"}))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
