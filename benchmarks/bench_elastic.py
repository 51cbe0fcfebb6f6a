"""What a fault costs a multi-node run: a 2-node torchrun job on this machine (two agents on
127.0.0.1, c10d rendezvous, gloo, `small` on Fashion-MNIST or any packed dataset), rank 1's
worker SIGKILLed at a chosen step, against the same job without the kill in the same run.

Reports: seconds from the kill until the surviving rank had exited by itself, until the
restarted job's first step, the steps recomputed (those since the last checkpoint), whether
the final weights equal the uninterrupted job's bit for bit, and the wall time of both jobs.

    python benchmarks/bench_elastic.py [--data DIR] [--kill-at 20] [--checkpoint-every 15]
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the job's harness
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from elastic_helpers import run_job  # noqa: E402

from alexnet.runtime import cpu_name  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
_STAMP = re.compile(r"^[EWI]\d{4} (\d\d:\d\d:\d\d\.\d+) \d+ .*failed \(exitcode: (-?\d+)\)", re.M)


def _data(root: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    from alexnet.data.pack import prepare
    from alexnet.data.sources import open_source

    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        raise SystemExit("bench_elastic: no Fashion-MNIST here; pass --data DIR (a packed set)")
    prepare(open_source(FMNIST), root / "fmnist", progress=False)
    return root / "fmnist"


def _survivor_exit(log: str, kill_time: float) -> float | None:
    """Seconds from the kill to the survivor worker's own exit (torchrun's log line)."""
    day = datetime.datetime.fromtimestamp(kill_time)
    for stamp, code in _STAMP.findall(log):
        t = datetime.datetime.combine(day.date(), datetime.time.fromisoformat(stamp))
        if code != "-9":
            return t.timestamp() - kill_time
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="packed dataset (default: Fashion-MNIST, packed here)")
    parser.add_argument("--kill-at", type=int, default=20, help="step to kill rank 1 at")
    parser.add_argument("--checkpoint-every", type=int, default=15)
    parser.add_argument("--train-limit", type=int, default=3200, help="training images")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = _data(root, args.data)
        common = ["--recipe", "fast", "--model", "small", "--epochs", "1", "--batch-size", "32",
                  "--train-limit", str(args.train_limit), "--val-limit", "1000", "--device",
                  "cpu", "--checkpoint-every", str(args.checkpoint_every)]  # fmt: skip
        ref = run_job(data, root / "ref", common)
        job = run_job(data, root / "killed", common, kill_at_step=args.kill_at)
        resumed = [s for s in job.starts if s["resumed"]]
        start = resumed[0]["global_step"] if resumed else 0
        steps = [json.loads(x) for x in (root / "killed" / "steps.jsonl").read_text().splitlines()]
        after = [s for s in steps if s.get("wall", 0) > (job.kill_time or 0)]
        from alexnet.weights import read

        a, _ = read(root / "ref" / "weights.safetensors")
        b, _ = read(root / "killed" / "weights.safetensors")
        equal = all((a[k] == b[k]).all().item() for k in a)
        survivor = _survivor_exit(job.agent_logs[0], job.kill_time or 0)
        out = {
            "cpu": cpu_name(),
            "killed_at_step": job.steps_before_kill,
            "resumed_at_step": start if resumed else None,
            "steps_recomputed": job.steps_before_kill - resumed[0]["global_step"]
            if resumed
            else None,
            "survivor_exit_s": None if survivor is None else round(survivor, 2),
            "kill_to_first_step_s": round(after[0]["wall"] - job.kill_time, 2) if after else None,
            "restarts_recorded": len(resumed),
            "final_weights_bitwise_equal": bool(equal),
            "agents_exit": job.returncodes,
            "wall_s": {"uninterrupted": round(ref.wall_s, 1), "killed": round(job.wall_s, 1)},
        }
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:<28} {value}")
    return 0 if equal and job.returncodes == [0, 0] else 1


if __name__ == "__main__":
    sys.exit(main())
