"""`paper-net`: the 224 px two-tower network trained with the paper's recipe (§4-§5), tested
with one centre crop and with the paper's ten crops (§4.1). Deviations from the paper, each
needed on a CPU budget: Caffe's initialization (biases 0.1, not 1: with the paper's the loss
stays at chance for the first steps a CPU affords), bf16 autocast and channels-last, 12 epochs
(full budget) with a plateau patience of 2. The quick budget is a smoke run (100 steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.evaluate import evaluate, make_eval_transform
from alexnet.experiments.result import Claim, compare, item_rows, run_row
from alexnet.experiments.runner import Context, Outcome, Plan, RunSpec, data_words
from alexnet.inference import Predictor
from alexnet.runtime import dist_info, resolve_device
from alexnet.train import TrainConfig, make_config
from alexnet.viz import kernel_grid
from alexnet.weights import load as load_weights

NAME = "paper-net"
BATCH = 128  # images per step (the paper's batch)
# budget -> (epochs, training images (0: all), max steps (0: no limit))
BUDGET = {"quick": (1, 12800, 100), "full": (12, 0, 0)}
WORDS = (
    "At test time, the network makes a prediction by extracting five 224 x 224 patches (the "
    "four corner patches and the center patch) as well as their horizontal reflections, and "
    "averaging the predictions made by the network's softmax layer on the ten patches."
)
CLAIM = Claim(
    "ten-crop",
    NAME,
    "§4.1, §6",
    WORDS,
    "top1_error",
    "10-crop",
    "1-crop",
    paper_data="ILSVRC-2012 (the paper reports only 10-crop errors: 40.7 / 18.2 top-1/top-5)",
)


def config(ctx: Context, seed: int) -> TrainConfig:
    epochs, images, steps = BUDGET[ctx.budget]
    return make_config(
        "paper",
        data=str(ctx.data),
        model="paper",
        model_options={"init": "caffe"},
        batch_size=BATCH,
        amp=True,
        channels_last=True,
        epochs=epochs,
        plateau_patience=2,
        checkpoint_every=200,
        train_limit=images,
        max_steps=steps,
        seed=seed,
        device=ctx.device,
    )


def plan(ctx: Context) -> Plan:
    return Plan([RunSpec(f"paper-seed{s}", config(ctx, s), "paper", s) for s in range(ctx.seeds)])


def per_image_top1_errors(weights: str, ctx: Context, cfg: TrainConfig, crops: int) -> np.ndarray:
    """(N,) float 0/1: the top-1 error of `weights` on each validation image with `crops`
    crops (1 centre, or the paper's 10)."""
    device = resolve_device(ctx.device, dist_info())
    model, meta = load_weights(weights, device)
    ds = open_dataset(ctx.data, "val")
    loader = DeviceLoader(ds, cfg.batch_size, shuffle=False, drop_last=False, device=device)
    loader.set_epoch(0)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = evaluate(
        model,
        loader.iterate(),
        make_eval_transform(meta.preprocess, meta.mean_image, crops),
        crops=crops,
        num_classes=ds.num_classes,
        amp=cfg.amp,
        channels_last=bool(cfg.channels_last),
        per_image=True,
    )
    return (~out["top1_hit"]).numpy().astype(np.float64)


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    rows = []
    for spec, res in outcomes:  # 1-crop: the last epoch's validation; 10-crop: the final test
        for variant, values, prefix in (("1-crop", res.last, "val_"), ("10-crop", res.final, "")):
            errors = {q: values.get(prefix + q) for q in ("top1_error", "top5_error")}
            rows.append(run_row(variant, spec.seed, res.output_dir, ctx.out, **errors))
    comparisons = [
        compare(rows, q, "10-crop", "1-crop", CLAIM) for q in ("top1_error", "top5_error")
    ]
    cfg, first = outcomes[0][0].cfg, outcomes[0][1]
    if first.weights is not None:
        model = Predictor(first.weights).model
        kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels (paper Fig. 3)")
        ctx.say("per-image errors of the final weights: 1 centre crop, then 10 crops")
        one, ten = (per_image_top1_errors(first.weights, ctx, cfg, crops) for crops in (1, 10))
        images = item_rows("top1_error", {"10-crop": ten, "1-crop": one})
        comparisons.append(
            compare(images, "top1_error", "10-crop", "1-crop", CLAIM, over="test images")
        )
    init = {"caffe": "Caffe", "torch": "PyTorch"}.get(cfg.model_options.get("init"), "the paper")
    notes = [
        f"Budget {ctx.budget}: {data_words(cfg)}"
        + (f", stopped after {cfg.max_steps} steps" if cfg.max_steps else "")
        + f"; {init}'s initialization"
        + (", bf16 autocast" if cfg.amp else "")
        + (", channels-last" if cfg.channels_last else "")
        + " (see the module docstring).",
        "Both rows are the same final weights: the last epoch's validation with the centre crop "
        "and the final evaluation with ten crops.",
    ]
    if ctx.seeds < 2:
        notes.append("One seed: no interval over seeds (the cost of a seed is hours here).")
    notes.append(
        f"The row over test images compares the two protocols image by image for seed {cfg.seed}'s "
        "final weights (0/1 top-1 errors, paired t-interval): it answers whether ten crops beat "
        "one for this model, not how much that varies between models."
    )
    return ctx.finish(CLAIM, rows, comparisons, notes)
