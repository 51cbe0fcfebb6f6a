"""Measurements on training logs and trained weights, as pure functions on arrays.

- `steps_to_threshold`: when the training error first reaches a threshold (Fig. 1, §3.1).
- `label_agreement`: how often the k nearest training images of a test image share its label,
  by Euclidean distance of fc7 features or of raw pixels (Fig. 4, §6.1).
- `colour_specificity` and `compare_towers`: how colour-specific each conv1 kernel is, and
  whether the two towers' kernels differ (Fig. 3, §6.1).
- `per_image_top1_errors`: which validation images trained weights get wrong, with 1 or 10
  crops (§4.1), for a comparison paired by image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import torch

from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.errors import UserError
from alexnet.evaluate import evaluate, make_eval_transform
from alexnet.experiments.stats import RESAMPLES, SEED
from alexnet.inference import nearest
from alexnet.weights import load as load_weights


# ------------------------------------------------------------------ Fig. 1: time to an error
@dataclass(frozen=True)
class Crossing:
    """Where a training-error curve first reaches a threshold (interpolated, see below)."""

    step: float
    seconds: float  # training seconds (the steps log's "time")
    images: float
    epoch: float  # images / images_per_epoch when given, else the record's "epoch"


def steps_to_threshold(
    records: Sequence[dict[str, Any]],
    threshold: float,
    *,
    key: str = "train_top1_error",
    images_per_epoch: int | None = None,
) -> Crossing | None:
    """The first step (and training seconds) at which `key` reaches `threshold`, else None.

    records: RUN/steps.jsonl, one per N steps ("step", "time", "images", "epoch", key), each the
    mean over the last N steps' minibatches. Rule: let record j be the first with
    error <= threshold; if j is the first record, its own step/time/images are returned;
    otherwise step, time and images are linearly interpolated between records j-1 and j at the
    point where the straight line between their errors meets the threshold.
    """
    rows = sorted(records, key=lambda r: r["step"])
    prev = None
    for row in rows:
        err = float(row[key])
        if err <= threshold:
            f = 1.0 if prev is None else (float(prev[key]) - threshold) / (float(prev[key]) - err)
            at = {}
            for name in ("step", "time", "images"):
                hi = float(row.get(name, math.nan))
                lo = hi if prev is None else float(prev.get(name, math.nan))
                at[name] = lo + f * (hi - lo)
            epoch = (at["images"] / images_per_epoch if images_per_epoch
                     else float(row.get("epoch", math.nan)))  # fmt: skip
            return Crossing(at["step"], at["time"], at["images"], epoch)
        prev = row
    return None


# ------------------------------------------------------------------ Fig. 4: retrieval
def pixel_features(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Raw pixels as vectors: (N, ...) -> (N, D) float32, for pixel-distance retrieval."""
    x = np.asarray(images)
    return x.reshape(x.shape[0], -1).astype(np.float32)


def label_agreements(
    query_feats: np.ndarray | torch.Tensor,
    query_labels: np.ndarray | Sequence[int],
    base_feats: np.ndarray | torch.Tensor,
    base_labels: np.ndarray | Sequence[int],
    ks: Sequence[int] = (1, 5),
    *,
    chunk: int = 8192,
) -> dict[int, float]:
    """For each k: the share of the k nearest base rows (Euclidean) that have the query's label,
    averaged over queries. Features (Q, D) and (N, D); one neighbour search for all k
    (`alexnet.inference.nearest`: ||a||^2 - 2ab + ||b||^2 in chunks of base rows)."""
    ql, bl = np.asarray(query_labels).reshape(-1), np.asarray(base_labels).reshape(-1)
    if ql.shape[0] != len(query_feats) or bl.shape[0] != len(base_feats):
        raise ValueError("one label per feature row is needed, for queries and base alike")
    kmax = max(ks)
    if min(ks) < 1 or kmax > bl.shape[0]:
        raise ValueError(f"k must lie in 1..{bl.shape[0]} (the base size), got {list(ks)}")
    _, idx = nearest(query_feats, base_feats, kmax, chunk=chunk)
    same = bl[idx] == ql[:, None]  # (Q, kmax), nearest first
    return {int(k): float(same[:, :k].mean()) for k in ks}


def label_agreement(
    query_feats: np.ndarray | torch.Tensor,
    query_labels: np.ndarray | Sequence[int],
    base_feats: np.ndarray | torch.Tensor,
    base_labels: np.ndarray | Sequence[int],
    k: int,
) -> float:
    """The share of the k nearest base rows with the query's label, mean over queries."""
    return label_agreements(query_feats, query_labels, base_feats, base_labels, (k,))[k]


# ------------------------------------------------------------------ Fig. 3: the towers
def colour_specificity(weight: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per conv1 kernel, the share of its energy off the gray axis: (O, 3, kh, kw) -> (O,).

    Each pixel's colour vector w[:, y, x] splits into its gray part (the mean over the 3
    channels, repeated) and the remainder; the score is sum(remainder^2) / sum(w^2), in [0, 1]:
    0 for a colour-agnostic (gray) kernel, 2/3 for a kernel living in one channel, 1 when every
    pixel's channels sum to 0. An all-zero kernel scores 0.
    """
    w = weight.detach().cpu().double().numpy() if torch.is_tensor(weight) else np.asarray(weight)
    w = w.astype(np.float64)
    if w.ndim != 4 or w.shape[1] != 3:
        raise UserError(
            f"colour specificity needs conv1 kernels of 3 colour channels, got shape {w.shape} "
            "(was the model trained on grayscale data?)"
        )
    rest = w - w.mean(axis=1, keepdims=True)
    total = (w**2).sum(axis=(1, 2, 3))
    return np.where(total > 0, (rest**2).sum(axis=(1, 2, 3)) / np.where(total > 0, total, 1), 0.0)


def tower_scores(scores: np.ndarray, towers: int = 2) -> list[np.ndarray]:
    """Split per-kernel scores (O,) into the towers' equal, consecutive blocks (§3.2)."""
    scores = np.asarray(scores)
    if towers < 1 or scores.shape[0] % towers:
        raise ValueError(f"{scores.shape[0]} kernels do not split into {towers} towers")
    return list(scores.reshape(towers, -1))


@dataclass(frozen=True)
class TowerTest:
    """Two-sided permutation test of mean(a) - mean(b)."""

    difference: float
    p_value: float
    method: str
    n_a: int
    n_b: int


def compare_towers(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, resamples: int = RESAMPLES
) -> TowerTest:
    """Permutation test on the difference of means of two towers' scores, two-sided.

    Exact (every split of the pooled scores) when there are at most `resamples` splits, else
    `resamples` random splits from numpy.random.default_rng(SEED) with p = (count + 1) /
    (resamples + 1). p = min(1, 2 * min(P(null <= observed), P(null >= observed))), with a
    relative tolerance of 100 eps for ties (the conventions of scipy.stats.permutation_test).
    """
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if x.size < 1 or y.size < 1:
        raise ValueError("each tower needs at least one score")
    pooled, na, nb = np.concatenate([x, y]), x.size, y.size
    total = pooled.sum()
    observed = x.mean() - y.mean()
    if math.comb(na + nb, na) <= resamples:
        groups = np.array(list(combinations(range(na + nb), na)))
        method, adjust = "exact permutation", 0
    else:
        rng = np.random.default_rng(SEED)
        perm = rng.permuted(np.tile(np.arange(na + nb), (resamples, 1)), axis=1)
        groups, method, adjust = perm[:, :na], f"permutation ({resamples} resamples)", 1
    sa = pooled[groups].sum(1)
    null = sa / na - (total - sa) / nb
    gamma = abs(observed) * 100 * np.finfo(np.float64).eps
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / (null.size + adjust)
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (null.size + adjust)
    p = min(1.0, 2.0 * min(less, greater))
    return TowerTest(float(observed), float(p), method, int(na), int(nb))


# ------------------------------------------------------------------ §4.1: 1 crop vs 10 crops
def per_image_top1_errors(
    weights: str | Any,
    data: str | Any,
    crops: int,
    *,
    device: torch.device | str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    batch_size: int = 128,
) -> np.ndarray:
    """(N,) float 0/1: the top-1 error of `weights` on each validation image of the packed
    dataset `data`, in the split's order, with `crops` crops (1 centre, 10 as paper §4.1)."""
    device = torch.device(device)
    model, meta = load_weights(weights, device)
    ds = open_dataset(data, "val")
    loader = DeviceLoader(ds, batch_size, shuffle=False, drop_last=False, device=device)
    loader.set_epoch(0)
    transform = make_eval_transform(meta.preprocess, meta.mean_image, crops)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = evaluate(model, loader.iterate(), transform, crops=crops, num_classes=ds.num_classes,
                   amp=amp, channels_last=channels_last, per_image=True)  # fmt: skip
    return (~out["top1_hit"]).numpy().astype(np.float64)
