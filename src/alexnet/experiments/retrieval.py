"""`retrieval`: paper Fig. 4 / §6.1, quantified — training images whose last hidden layer's
activations (fc7, 4096-d, in the 224 px network; the `small` family's hidden layer here) lie
close in Euclidean distance to a query's are semantically similar, though not close in pixels.

For each of N trained models (seeds, the full recipe of `ablations`), every test image queries
the whole training set: the label agreement at k = 1 and k = 5 (the share of the k nearest
training images with the query's label) by feature distance and by raw-pixel distance. One
`runs` row per seed and distance; pixels do not depend on the seed (the same value each
time). Comparison: feature minus pixels, paired by seed. The picture: the paper's Fig. 4 grid
for five test images, feature neighbours beside pixel neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alexnet.data.packed import open_dataset
from alexnet.experiments.analyses import label_agreements, pixel_features
from alexnet.experiments.claims import claim
from alexnet.experiments.common import Context, Plan, RunSpec, family_recipe, family_words
from alexnet.experiments.result import compare, run_row
from alexnet.experiments.runner import RunOutcome
from alexnet.inference import Predictor, nearest, split_features
from alexnet.viz import neighbors_grid

NAME = "retrieval"
KS = (1, 5)
# budget -> (training images (0: all), epochs)
BUDGET = {"quick": (0, 2), "full": (0, 10)}
FIG_QUERIES = 5


def plan(ctx: Context) -> Plan:
    images, epochs = BUDGET[ctx.budget]
    runs = []
    for seed in ctx.seed_list:
        cfg = family_recipe(ctx, epochs=epochs, train_limit=images, seed=seed)
        runs.append(RunSpec(f"full-seed{seed}", cfg, "full", seed, f"full recipe seed {seed}"))
    return Plan(runs)


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    train, test = open_dataset(ctx.data, "train"), open_dataset(ctx.data, "val")
    train_labels, test_labels = np.asarray(train.labels), np.asarray(test.labels)
    ctx.say(f"pixel neighbours: {len(test)} queries x {len(train)} training images")
    pixel_base, pixel_queries = pixel_features(train.images), pixel_features(test.images)
    pixels = label_agreements(pixel_queries, test_labels, pixel_base, train_labels, KS)
    rows, name = [], "features"
    for outcome in outcomes:
        seed = outcome.spec.seed
        predictor = Predictor(outcome.result.weights, device=_device(ctx))
        name = getattr(predictor.model, "penultimate_name", "features")
        base = split_features(predictor, train.images)
        queries = split_features(predictor, test.images)
        feats = label_agreements(queries, test_labels, base, train_labels, KS)
        for variant, agree in (("features", feats), ("pixels", pixels)):
            measured = {f"agreement_k{k}": v for k, v in agree.items()}
            rows.append(run_row(variant, seed, outcome.run_dir, ctx.out, **measured))
        if outcome is outcomes[0]:
            _figure(ctx, train, test, base, queries, pixel_base, pixel_queries, name)
    c = claim("retrieval")
    comparisons = [
        compare(rows, f"agreement_k{k}", "features", "pixels", direction=c.direction, claim=c.key)
        for k in KS
    ]
    notes = [
        f"Features: the trained model's last hidden layer ({name}), after its ReLU, centre "
        "crop; pixels: the stored images as vectors. Queries: every test image; base: every "
        f"training image. Models: {family_words(ctx)}, the ablations' full recipe, "
        f"{outcomes[0].spec.cfg.epochs} epochs.",
        "Label agreement = share of the k nearest training images with the query's class; "
        "chance is about 1 / number of classes.",
    ]
    return ctx.finish(c, rows, comparisons, notes)


def _device(ctx: Context) -> str:
    return "cpu" if ctx.device == "auto" else ctx.device


def _figure(ctx, train, test, base, queries, pixel_base, pixel_queries, name: str) -> None:
    """Fig. 4: five test images, their 4 nearest by features, then by pixels."""
    picks = np.linspace(0, len(test) - 1, FIG_QUERIES).astype(int)
    _, by_feat = nearest(queries[picks], base, 4)
    _, by_pix = nearest(pixel_queries[picks], pixel_base, 4)
    rows, titles = [], []
    for i in range(len(picks)):
        feats = [np.asarray(train.images[j]) for j in np.asarray(by_feat[i])]
        pix = [np.asarray(train.images[j]) for j in np.asarray(by_pix[i])]
        rows.append(feats + pix)
        titles.append(["features"] * 4 + ["pixels"] * 4)
    neighbors_grid(
        [np.asarray(test.images[q]) for q in picks],
        rows,
        ctx.out / "fig4.png",
        query_titles=[f"query {int(q)}" for q in picks],
        neighbour_titles=titles,
        feature=f"{name} (first 4) and pixel (last 4)",
    )
