"""How fast the command line answers: `alexnet --help`, every `alexnet CMD --help` and
`alexnet weights`, wall time and peak memory (best of --repeat runs), against the peers
measured in the same run: `python -c "import torch, torchvision"` (what every command paid
before its parsers were built without torch) and `torchrun --help`.

    python benchmarks/bench_startup.py [--repeat 3] [--json]

Goal (issue: the command answers at once): each <= 1.0 s and <= 400 MB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from alexnet.cli import COMMANDS  # noqa: E402 - torch-free, the list the parser is built from


def cpu_name() -> str:
    """alexnet.runtime.cpu_name, asked of a child: this process must stay small (a child's peak
    RSS counts the parent's pages it starts from)."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = "from alexnet.runtime import cpu_name; print(cpu_name())"
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return done.stdout.strip()


def measure(argv: list[str], repeat: int) -> tuple[float, float]:
    """(best wall seconds, peak RSS in MB of that child) of running `argv`."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"bench_startup: {' '.join(argv)} failed")
        best = min(best, (seconds, usage.ru_maxrss / 1024))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (best kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    py = [sys.executable]
    alexnet = [*py, "-m", "alexnet"]
    cases = {"alexnet --help": [*alexnet, "--help"], "alexnet weights": [*alexnet, "weights"]}
    cases |= {f"alexnet {c} --help": [*alexnet, c, "--help"] for c in COMMANDS}
    peers = {"python -c 'import torch, torchvision'": [*py, "-c", "import torch, torchvision"]}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun:
        peers["torchrun --help"] = [torchrun, "--help"]
    rows = {name: measure(argv, args.repeat) for name, argv in {**peers, **cases}.items()}
    torch_s, torch_mb = rows[next(iter(peers))]
    if args.json:
        out = {k: {"seconds": round(s, 3), "peak_mb": round(m, 1)} for k, (s, m) in rows.items()}
        print(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "rows": out}))
        return 0
    print(f"{cpu_name()}, {os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'command':<36} {'seconds':>8} {'peak MB':>8} {'vs torch import':>16}")
    for name, (s, mb) in rows.items():
        print(f"{name:<36} {s:>8.2f} {mb:>8.0f} {f'{s / torch_s:.2f}x time':>16}")
    ours = [v for k, v in rows.items() if k in cases]
    slowest, largest = max(s for s, _ in ours), max(m for _, m in ours)
    print(
        f"slowest alexnet command {slowest:.2f} s, largest {largest:.0f} MB; importing torch "
        f"+ torchvision alone: {torch_s:.2f} s, {torch_mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
