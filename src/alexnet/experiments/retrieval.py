"""`retrieval`: paper Fig. 4 (§6.1), quantified: every test image queries the training set by
the last hidden layer's activations (fc7 in the 224 px network) and by raw pixels; the label
agreement of the k nearest (k = 1, 5), features minus pixels, paired by seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alexnet.data.packed import open_dataset
from alexnet.experiments.ablations import family_plan, family_words
from alexnet.experiments.result import Claim, compare, run_row
from alexnet.experiments.runner import Context, Outcome, Plan
from alexnet.inference import Predictor, nearest, split_features
from alexnet.viz import neighbors_grid

NAME = "retrieval"
WORDS = (
    "If two images produce feature activation vectors with a small Euclidean separation, the "
    "higher levels of the neural network consider them to be similar; the retrieved training "
    "images are often not close in L2 to the query at the pixel level."
)
CLAIM = Claim(
    NAME, NAME, "Fig. 4 (§6.1)", WORDS, "label_agreement", "fc7", "pixels", direction="greater"
)
KS = (1, 5)
BUDGET = {"quick": 2, "full": 10}  # budget -> epochs
FIG_QUERIES = 5


def label_agreements(
    queries: np.ndarray,
    query_labels: np.ndarray,
    base: np.ndarray,
    base_labels: np.ndarray,
    ks: Sequence[int] = KS,
    chunk: int = 8192,
) -> dict[int, float]:
    """For each k, the share of the k nearest base rows (Euclidean; (Q, D) against (N, D)) with
    the query's label, averaged over queries."""
    ql, bl = np.asarray(query_labels).reshape(-1), np.asarray(base_labels).reshape(-1)
    if ql.shape[0] != len(queries) or bl.shape[0] != len(base):
        raise ValueError("one label per feature row is needed, for queries and base alike")
    if min(ks) < 1 or max(ks) > bl.shape[0]:
        raise ValueError(f"k must lie in 1..{bl.shape[0]} (the base size), got {list(ks)}")
    _, idx = nearest(queries, base, max(ks), chunk=chunk)
    same = bl[idx] == ql[:, None]  # (Q, max k), nearest first
    return {int(k): float(same[:, :k].mean()) for k in ks}


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Raw pixels as vectors: (N, ...) uint8 -> (N, D) float32."""
    x = np.asarray(images)
    return x.reshape(x.shape[0], -1).astype(np.float32)


def plan(ctx: Context) -> Plan:
    return family_plan(ctx, "full", "full", BUDGET[ctx.budget])


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    train, test = open_dataset(ctx.data, "train"), open_dataset(ctx.data, "val")
    train_labels, test_labels = np.asarray(train.labels), np.asarray(test.labels)
    ctx.say(f"pixel neighbours: {len(test)} queries x {len(train)} training images")
    pixel_base, pixel_queries = pixel_features(train.images), pixel_features(test.images)
    pixels = label_agreements(pixel_queries, test_labels, pixel_base, train_labels)
    rows, name = [], "features"
    for spec, res in outcomes:
        device = "cpu" if ctx.device == "auto" else ctx.device
        predictor = Predictor(res.weights, device=device)
        name = getattr(predictor.model, "penultimate_name", "features")
        base, queries = (split_features(predictor, x) for x in (train.images, test.images))
        feats = label_agreements(queries, test_labels, base, train_labels)
        for variant, agree in (("features", feats), ("pixels", pixels)):
            measured = {f"agreement_k{k}": v for k, v in agree.items()}
            rows.append(run_row(variant, spec.seed, res.output_dir, ctx.out, **measured))
        if spec is outcomes[0][0]:  # Fig. 4: five test images, 4 nearest by features, by pixels
            picks = np.linspace(0, len(test) - 1, FIG_QUERIES).astype(int)
            _, by_feat = nearest(queries[picks], base, 4)
            _, by_pix = nearest(pixel_queries[picks], pixel_base, 4)
            neighbors_grid(
                [np.asarray(test.images[q]) for q in picks],
                [[np.asarray(train.images[j]) for j in [*f, *p]] for f, p in zip(by_feat, by_pix)],
                ctx.out / "fig4.png",
                query_titles=[f"query {int(q)}" for q in picks],
                neighbour_titles=[["features"] * 4 + ["pixels"] * 4] * len(picks),
                feature=f"{name} (first 4) and pixel (last 4)",
            )
    comparisons = [compare(rows, f"agreement_k{k}", "features", "pixels", CLAIM) for k in KS]
    notes = [
        f"Features: the trained model's last hidden layer ({name}), after its ReLU, centre "
        "crop; pixels: the stored images as vectors. Queries: every test image; base: every "
        f"training image. Models: {family_words(ctx)}, the ablations' full recipe, "
        f"{outcomes[0][0].cfg.epochs} epochs.",
        "Label agreement = share of the k nearest training images with the query's class; "
        "chance is about 1 / number of classes.",
    ]
    return ctx.finish(CLAIM, rows, comparisons, notes)
