"""Does storing the images as JPEG change what the network learns? A paired comparison.

Fashion-MNIST is packed twice (`alexnet prepare`, raw and `--encoding jpeg --quality Q`);
for each seed the `small` model is trained with the `fast` recipe on both (same seed, same
command line otherwise) and evaluated on the test set (centre crop): each model on the test
set of its own encoding (what a user of either gets), and the JPEG-trained model also on the
raw test set (the effect of training on JPEG alone). Reported whatever it shows: each test
error with its 95% binomial interval, the mean over seeds with its t interval, and the paired
difference JPEG - raw with its t interval over seeds. Runs that finished are reused (rerun
after an interruption). Last line: one JSON object.

    python scripts/jpeg_accuracy.py [--seeds 3] [--quality 90] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from alexnet.experiments.stats import mean_ci, paired_diff_ci
from alexnet.runtime import cpu_name

FMNIST = "/usr/share/datasets/fashion-mnist"


def alexnet(*args: str) -> str:
    cmd = [sys.executable, "-m", "alexnet", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def pack(fmnist: str, out: Path, encoding: str, quality: int) -> None:
    if not (out / "header.json").is_file():
        jpeg = ["--encoding", "jpeg", "--quality", str(quality)] if encoding == "jpeg" else []
        alexnet("prepare", fmnist, str(out), *jpeg, "--no-progress")


def train(data: Path, run: Path, seed: int, extra: list[str]) -> None:
    if not (run / "weights.safetensors").is_file():
        alexnet("train", "--data", str(data), "--output-dir", str(run), "--resume", "auto",
                "--model", "small", "--recipe", "fast", "--seed", str(seed), "--device", "cpu",
                *extra)  # fmt: skip


def test_error(data: Path, run: Path) -> tuple[float, int]:
    out = json.loads(alexnet("eval", "--data", str(data), "--weights",
                             str(run / "weights.safetensors"), "--crops", "1", "--json",
                             "--device", "cpu"))  # fmt: skip
    return float(out["top1_error"]), int(out["images"])


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson interval of an error rate p measured on n images."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--work", default=None, help="where the data and runs go (default: a temp dir)")
    ap.add_argument("--fmnist", default=FMNIST, help="the Fashion-MNIST idx files")
    ap.add_argument("--train-args", default="", help="extra `alexnet train` flags for every run")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="jpeg_accuracy_"))
    work.mkdir(parents=True, exist_ok=True)
    raw, jpg = work / "fmnist-raw", work / f"fmnist-jpeg-q{args.quality}"
    pack(args.fmnist, raw, "raw", args.quality)
    pack(args.fmnist, jpg, "jpeg", args.quality)
    extra = args.train_args.split()
    rows = []
    for seed in range(args.seeds):
        train(raw, work / f"raw-seed{seed}", seed, extra)
        train(jpg, work / f"jpeg-seed{seed}", seed, extra)
        e_raw, n = test_error(raw, work / f"raw-seed{seed}")
        e_jpg, _ = test_error(jpg, work / f"jpeg-seed{seed}")
        e_cross, _ = test_error(raw, work / f"jpeg-seed{seed}")
        rows.append({"seed": seed, "raw": e_raw, "jpeg": e_jpg, "jpeg_on_raw": e_cross, "n": n})
    report(rows, args, work)


LABELS = {
    "raw": "raw",
    "jpeg": "JPEG",
    "jpeg_on_raw": "JPEG-trained on raw",
    "jpeg_minus_raw": "paired JPEG - raw",
    "jpeg_on_raw_minus_raw": "paired (JPEG-trained on raw) - raw",
}


def report(rows: list[dict], args, work: Path) -> None:
    n = rows[0]["n"]
    print(
        f"Fashion-MNIST, `small` + `fast` recipe, CPU ({cpu_name()}); test error (%, centre "
        f"crop, {n} images) with 95% Wilson intervals; JPEG q{args.quality}; runs in {work}"
    )
    heads = ("raw", "JPEG", "JPEG-trained on raw")
    print(f"{'seed':>4}  " + "  ".join(f"{h:>20}" for h in heads) + f"  {'JPEG - raw':>10}")
    for r in rows:
        cells = [f"{pct(r[k])} [{pct(wilson(r[k], n)[0])}, {pct(wilson(r[k], n)[1])}]"
                 for k in ("raw", "jpeg", "jpeg_on_raw")]  # fmt: skip
        print(f"{r['seed']:>4}  " + "  ".join(f"{c:>20}" for c in cells)
              + f"  {100 * (r['jpeg'] - r['raw']):>+10.2f}")  # fmt: skip
    col = {k: [r[k] for r in rows] for k in ("raw", "jpeg", "jpeg_on_raw")}
    summary = {k: mean_ci(v).to_json() for k, v in col.items()}
    summary["jpeg_minus_raw"] = paired_diff_ci(col["jpeg"], col["raw"]).to_json()
    summary["jpeg_on_raw_minus_raw"] = paired_diff_ci(col["jpeg_on_raw"], col["raw"]).to_json()
    for key, label in LABELS.items():
        e = summary[key]
        ci = "n < 2" if e["ci95"] is None else f"[{pct(e['ci95'][0])}, {pct(e['ci95'][1])}]"
        print(f"mean over {e['n']} seeds, {label}: {pct(e['estimate'])} % (95% t interval {ci})")
    print(json.dumps({"quality": args.quality, "machine": cpu_name(), "rows": rows, **summary}))


if __name__ == "__main__":
    main()
