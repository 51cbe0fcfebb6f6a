"""RUN/report.md: what a run learned, as pictures (conv1 kernels, paper Fig. 3; curves; nearest
training images by fc7 distance, Fig. 4 / §6.1; predictions) beside its results table."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.fileio import atomic_write_text
from alexnet.inference import Predictor, nearest, split_features
from alexnet.rundir import RunDir
from alexnet.viz import (
    captioned_grid,
    kernel_grid,
    neighbors_grid,
    read_metrics,
    training_curves,
)

FINAL_TEST_NOTE = (
    "The final test evaluates the last weights on the dataset's `val` split: the same split "
    "that picked `weights-best.safetensors` and the learning-rate reductions (for Fashion-MNIST "
    "and CIFAR-10, the official test set), so it is not an independent held-out estimate."
)
PREDICTIONS = 8  # validation images shown with their top-3 predictions
PARTIAL_NOTE = (
    "(partial): the epoch stopped early (`--max-steps`); its numbers cover only the steps it ran."
)


def _results_table(run: Path, num_classes: int) -> list[str]:
    """Markdown tables: per epoch (a `--max-steps` epoch marked partial), then final tests; no
    top-5 column with <= 5 classes (top-5 error is 0 there by construction)."""
    top5 = num_classes > 5
    head = "| epoch | lr | train loss | val top-1 error |" + (" val top-5 error |" if top5 else "")
    lines = [head + " images/s |", "|---:|---:|---:|---:|" + ("---:|" if top5 else "") + "---:|"]
    partial = False
    for r in read_metrics(run):
        mark = "" if r.get("complete", True) else " (partial)"
        partial |= bool(mark)
        t5 = f" {100 * r['val_top5_error']:.2f} % |" if top5 else ""
        lines.append(
            f"| {r['epoch']}{mark} | {r.get('lr', float('nan')):.4g} | {r['train_loss']:.4f} | "
            f"{100 * r['val_top1_error']:.2f} % |{t5} "
            f"{r.get('images_per_sec', float('nan')):.0f} |"
        )
    if partial:
        lines += ["", PARTIAL_NOTE]
    evals = sorted(run.glob("eval*.json"))
    if evals:
        t5 = " top-5 error |" if top5 else ""
        lines += ["", f"| final test | images | crops | top-1 error |{t5} loss |"]
        lines.append("|---|---:|---:|---:|" + ("---:|" if top5 else "") + "---:|")
        for path in evals:
            try:
                e = json.loads(path.read_text())
                t5 = f" {100 * e['top5_error']:.2f} % |" if top5 else ""
                lines.append(
                    f"| `{path.name}` | {e['images']} | {e['crops']} | "
                    f"{100 * e['top1_error']:.2f} % |{t5} {e['loss']:.4f} |"
                )
            except (OSError, ValueError, KeyError):
                continue
        lines += ["", FINAL_TEST_NOTE]
    return lines


def write_report(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    queries: int = 4,
    k: int = 7,
    max_train: int = 0,
) -> dict[str, Any]:
    """Write the pictures and RUN/report.md; return {"report": path, "files": [...]}.
    `max_train` > 0 searches neighbours among the first N training images only."""
    run = Path(run_dir)
    rd = RunDir(run)
    if weights is None:
        weights = next((p for p in (rd.weights, rd.best_weights) if p.is_file()), rd.weights)
    predictor = Predictor(weights, device)
    train, val = open_dataset(data_dir, "train"), open_dataset(data_dir, "val")
    if list(predictor.classes) != list(train.classes):
        raise UserError(f"{weights}: trained on other classes than {data_dir} has")
    kernel_grid(predictor.model, run / rd.KERNELS)
    training_curves([run], run / rd.CURVES, labels=[run.name])
    n_train = len(train) if max_train <= 0 else min(max_train, len(train))
    _neighbours_png(predictor, train, val, n_train, queries, k, device, run / rd.NEIGHBOURS)
    rows = _predictions_png(predictor, val, run / rd.PREDICTIONS)
    model_name = predictor.meta.model_name
    md = [
        f"# Run `{run.name}`",
        "",
        f"Weights `{Path(weights).name}` (model `{model_name}`), data `{data_dir}`.",
        "",
        "## Results",
        "",
        *_results_table(run, len(predictor.classes)),
        "",
        "![training curves](curves.png)",
        "",
        "## What conv1 learned (paper Fig. 3)",
        "",
        "![conv1 kernels](kernels.png)",
        "",
        f"## Nearest training images by {predictor.feature_layer} distance (paper Fig. 4, §6.1)",
        "",
        f"Queries from the validation split; neighbours among {n_train} training images, "
        "nearest first, with their class and distance.",
        "",
        "![neighbours](neighbours.png)",
        "",
        "## A few predictions (validation images)",
        "",
        "![predictions](predictions.png)",
        "",
        "| image | true class | top-3 |",
        "|---|---|---|",
        *rows,
        "",
    ]
    atomic_write_text(run / rd.REPORT, "\n".join(md))
    files = [rd.REPORT, rd.KERNELS, rd.CURVES, rd.NEIGHBOURS, rd.PREDICTIONS]
    return {"report": str(run / rd.REPORT), "files": [str(run / f) for f in files]}


def _neighbours_png(predictor, train, val, n_train: int, queries: int, k: int, device, out) -> None:
    """Validation queries of distinct classes and their k nearest among the first `n_train`
    training images (paper Fig. 4, §6.1), drawn to `out`."""
    feats = split_features(predictor, train.images[:n_train])
    q_idx = sorted(np.unique(val.labels, return_index=True)[1].tolist())[:queries]
    q_imgs = [np.asarray(val.images[i]) for i in q_idx]
    dist, idx = nearest(predictor.features(np.stack(q_imgs)).cpu().numpy(), feats, k, device=device)
    neighbors_grid(
        q_imgs,
        [[np.asarray(train.images[j]) for j in row] for row in idx.tolist()],
        out,
        query_titles=[f"val {i}: {val.classes[val.labels[i]]}" for i in q_idx],
        neighbour_titles=[
            [f"{train.classes[train.labels[j]]}\n{d:.3g}" for j, d in zip(row, drow)]
            for row, drow in zip(idx.tolist(), dist.tolist())
        ],
        feature=predictor.feature_layer,
    )


def _predictions_png(predictor, val, out) -> list[str]:
    """The top-3 predictions of a few validation images, drawn to `out`; their table rows."""
    p_idx = list(range(0, len(val), max(1, len(val) // PREDICTIONS)))[:PREDICTIONS]
    p_imgs = np.stack([np.asarray(val.images[i]) for i in p_idx])
    preds = predictor.predictions([f"val {i}" for i in p_idx], predictor.probabilities(p_imgs), 3)
    captions, rows = [], []
    for i, pred in zip(p_idx, preds):
        truth = val.classes[val.labels[i]]
        guesses = [f"{c} {100 * p:.0f}%" for c, p in zip(pred.classes, pred.probs)]
        mark = "ok" if pred.indices[0] == val.labels[i] else "WRONG"
        captions.append(f"true: {truth} [{mark}]\n" + "\n".join(guesses))
        rows.append(f"| {pred.image} | {truth} | {', '.join(guesses)} |")
    captioned_grid(list(p_imgs), captions, out, title="top-3 predictions")
    return rows
