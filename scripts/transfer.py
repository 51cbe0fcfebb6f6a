"""Transfer on Fashion-MNIST: does starting from trained weights help, at a small budget?

`small` is trained on classes 0-4 (30,000 images, the `fast` recipe). On classes 5-9 with few
training images, three arms train for the same epochs at the same batch, seed by seed:
  scratch    random initialization, the `fast` recipe (what a first run does)
  finetune   `--recipe finetune --init-from` the 0-4 weights: every layer learns
  frozen     the same with `--freeze features`: only the fully-connected layers learn
  finetune-lr  `finetune` with `--lr 0.01`: a tenth of the rate the weights were trained at
             (the `finetune` recipe's 0.001 is a tenth of the paper's 0.01, for ImageNet weights)
and each is tested on the 5,000 test images of classes 5-9. The differences are paired by seed,
with Student t 95% intervals (`alexnet.experiments.stats`); every run is kept and reported.
It goes the newcomer's road: the class folders are written as PNG files and packed by
`alexnet prepare` with a validation split of the test images.

    python scripts/transfer.py --fmnist /usr/share/datasets/fashion-mnist --work work/transfer

Resumable: a finished run is read back, an interrupted one continues (`--resume auto`).
Writes OUT/result.json and OUT/table.md (default docs/results/transfer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.cli import main as alexnet
from alexnet.experiments.result import git_commit, machine
from alexnet.experiments.stats import mean_ci, paired_diff_ci
from alexnet.train import fit, make_config

ARMS = ("scratch", "finetune", "frozen", "finetune-lr")
FIRST, SECOND = range(0, 5), range(5, 10)


def write_folders(packed: Path, root: Path, classes: range, per_class: int | None) -> None:
    """ImageFolder PNGs root/{train,val}/<class>/ of `classes` (train: the first `per_class` of
    each class, or all; val: every test image of the class)."""
    header = json.loads((packed / "header.json").read_text())
    for split, part in (("train", "train"), ("val", "val")):
        images = np.load(packed / f"{part}_images.npy", mmap_mode="r")
        labels = np.load(packed / f"{part}_labels.npy")
        for c in classes:
            folder = root / split / header["classes"][c].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            chosen = np.flatnonzero(labels == c)
            chosen = chosen[:per_class] if split == "train" and per_class else chosen
            for i in chosen:
                Image.fromarray(np.asarray(images[i])[:, :, 0]).save(folder / f"{i}.png")


def prepare(packed: Path, work: Path, name: str, classes: range, per_class: int | None) -> Path:
    out = work / "data" / name
    if not (out / "header.json").is_file():
        folders = work / "folders" / name
        write_folders(packed, folders, classes, per_class)
        args = ["prepare", str(folders), str(out), "--size", "28", "--no-progress"]
        assert alexnet(args) == 0, f"prepare {name} failed"
    return out


def train(work: Path, name: str, recipe: str, **values) -> dict:
    """One run (or its result, when finished): its final test error and training seconds."""
    out = work / "runs" / name
    cfg = make_config(recipe, output_dir=str(out), resume="auto", device="cpu", **values)
    started = time.perf_counter()
    result = fit(cfg)
    final = result.final or json.loads((out / "eval.json").read_text())
    return {
        "run": name,
        "top1_error": final["top1_error"],
        "images": final["images"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--work", default="work/transfer", type=Path)
    p.add_argument("--out", default="docs/results/transfer", type=Path)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--per-class", type=int, nargs="+", default=[100, 300])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args(argv)

    packed = a.work / "data" / "fmnist"
    if not (packed / "header.json").is_file():
        assert alexnet(["prepare", a.fmnist, str(packed), "--no-progress"]) == 0
    first = prepare(packed, a.work, "classes0-4", FIRST, None)
    pre = train(a.work, "pretrain-classes0-4", "fast", data=str(first), seed=0)
    print(f"pretrained on classes 0-4: test error {100 * pre['top1_error']:.2f} %", flush=True)
    weights = a.work / "runs" / "pretrain-classes0-4" / "weights.safetensors"

    same = dict(epochs=a.epochs, batch_size=a.batch_size)
    settings = {
        "scratch": ("fast", {}),
        "finetune": ("finetune", {"init_from": str(weights)}),
        "frozen": ("finetune", {"init_from": str(weights), "freeze": "features"}),
        "finetune-lr": ("finetune", {"init_from": str(weights), "lr": 0.01}),
    }
    rows, comparisons = [], []
    for per_class in a.per_class:
        data = prepare(packed, a.work, f"classes5-9-{per_class}", SECOND, per_class)
        errors: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for seed in range(a.seeds):
            for arm in ARMS:
                recipe, extra = settings[arm]
                name = f"{arm}-{per_class}-seed{seed}"
                run = train(a.work, name, recipe, data=str(data), seed=seed, **same, **extra)
                rows.append({"arm": arm, "per_class": per_class, "seed": seed, **run})
                errors[arm].append(run["top1_error"])
                print(json.dumps(rows[-1]), flush=True)
        for arm in ARMS:
            est = mean_ci(errors[arm])
            comparisons.append(
                {"per_class": per_class, "what": arm, "mean": est.estimate, "ci95": est.ci95}
            )
        for arm in ARMS[1:]:
            est = paired_diff_ci(errors[arm], errors["scratch"])
            what = f"{arm} - scratch"
            comparisons.append({"per_class": per_class, "what": what, **_est(est)})

    result = {
        "experiment": "transfer",
        "pretrain": pre,
        "settings": {"epochs": a.epochs, "batch_size": a.batch_size, "seeds": a.seeds},
        "machine": machine(),
        "commit": git_commit(),
        "runs": rows,
        "comparisons": comparisons,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (a.out / "table.md").write_text(table(result))
    print(table(result))
    return 0


def _est(est) -> dict:
    return {"mean": est.estimate, "ci95": est.ci95}


def table(result: dict) -> str:
    """The Markdown table of the comparisons (errors in %)."""
    lines = [
        "| training images of classes 5-9 | arm | test top-1 error (%) | 95% interval |",
        "|---|---|---:|---|",
    ]
    for c in result["comparisons"]:
        lo, hi = c["ci95"] or (None, None)
        interval = "–" if lo is None else f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"
        if " - " not in c["what"]:
            interval = interval.replace("+", "")
        mean = f"{100 * c['mean']:+.2f}" if " - " in c["what"] else f"{100 * c['mean']:.2f}"
        lines.append(f"| {5 * c['per_class']:,} | {c['what']} | {mean} | {interval} |")
    s = result["settings"]
    lines += [
        "",
        f"{s['seeds']} seeds per arm, {s['epochs']} epochs at batch {s['batch_size']} each; "
        f"pre-trained on classes 0-4: {100 * result['pretrain']['top1_error']:.2f} % test error. "
        f"Machine: {result['machine']}; commit {result['commit']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
