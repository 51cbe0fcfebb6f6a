"""`paper-net`: the 224 px two-tower network itself, trained with the paper's recipe (§4-§5)
on a dataset brought to 256 px, tested with one centre crop and with the paper's ten crops
(§4.1: four corners and the centre, and their mirrors, softmax averaged).

The recipe is `alexnet train --recipe paper` (SGD, momentum 0.9, weight decay 5e-4, batch 128,
lr 0.01 divided by 10 when the validation error stops improving, random 224 crops + flips +
fancy-PCA lighting, mean-image subtraction, dropout 0.5) with these deviations, each needed on
a CPU budget and said in the result:
- Caffe's initialization (biases 0.1 instead of the paper's 1 in conv2/4/5 and fc6/7; fc
  weights N(0, 0.005)): with the paper's biases the loss stayed at chance for the first steps
  that a CPU can afford (the slow start that made Caffe change them);
- bf16 autocast and channels-last (about 2x the fp32 speed on a CPU with AVX-512 BF16);
- 12 epochs (full budget) instead of ~90, with a plateau patience of 2 validations;
- images smaller than 256 (Fashion-MNIST's 28 px) are resized to 256 on the device first.
The quick budget is a smoke run (100 steps), not a result.
"""

from __future__ import annotations

from typing import Any

from alexnet.experiments.analyses import per_image_top1_errors
from alexnet.experiments.claims import Claim
from alexnet.experiments.common import Context, Plan, RunSpec, data_words
from alexnet.experiments.result import compare, compare_per_item, run_row
from alexnet.experiments.runner import RunOutcome
from alexnet.inference import Predictor
from alexnet.runtime import dist_info, resolve_device
from alexnet.train.config import TrainConfig, make_config
from alexnet.viz import kernel_grid

NAME = "paper-net"
BATCH = 128  # images per step (the paper's batch)
# budget -> (epochs, training images (0: all), max steps (0: no limit))
BUDGET = {"quick": (1, 12800, 100), "full": (12, 0, 0)}
_INIT_WORDS = {"caffe": "Caffe", "paper": "the paper", "torch": "PyTorch"}
CLAIM = Claim(
    "ten-crop",
    NAME,
    "§4.1, §6",
    "At test time, the network makes a prediction by extracting five 224 x 224 patches (the "
    "four corner patches and the center patch) as well as their horizontal reflections, and "
    "averaging the predictions made by the network's softmax layer on the ten patches.",
    "top1_error",
    "10-crop",
    "1-crop",
    direction="less",
    numbers={},
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
    return Plan([RunSpec(f"paper-seed{s}", config(ctx, s), "paper", s, f"paper network seed {s}")
                 for s in ctx.seed_list])  # fmt: skip


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    rows = []
    for outcome in outcomes:
        cfg = outcome.spec.cfg
        last, final = outcome.result.last, outcome.result.final
        one = {"top1_error": last.get("val_top1_error"), "top5_error": last.get("val_top5_error")}
        ten = {"top1_error": final.get("top1_error"), "top5_error": final.get("top5_error")}
        rows.append(run_row("1-crop", cfg.seed, outcome.run_dir, ctx.out, **one))
        rows.append(run_row("10-crop", cfg.seed, outcome.run_dir, ctx.out, **ten))
        if outcome is outcomes[0] and outcome.result.weights is not None:
            model = Predictor(outcome.result.weights).model
            kernel_grid(model, ctx.out / "kernels.png", title="conv1 kernels (paper Fig. 3)")
    comparisons = [
        compare(rows, q, "10-crop", "1-crop", direction="less", claim=CLAIM.key)
        for q in ("top1_error", "top5_error")
    ]
    first = outcomes[0]
    first_cfg = first.spec.cfg
    if first.result.weights is not None:
        comparisons.append(per_image_comparison(ctx, first_cfg, first.result.weights))
    notes = [
        f"Budget {ctx.budget}: {data_words(first_cfg)}"
        + (f", stopped after {first_cfg.max_steps} steps" if first_cfg.max_steps else "")
        + f"; {_INIT_WORDS.get(first_cfg.model_options.get('init'), 'the paper')}'s initialization"
        + (", bf16 autocast" if first_cfg.amp else "")
        + (", channels-last" if first_cfg.channels_last else "")
        + " (see the module docstring).",
        "Both rows are the same final weights: the last epoch's validation with the centre crop "
        "and the final evaluation with ten crops.",
    ]
    if ctx.seeds < 2:
        notes.append("One seed: no interval over seeds (the cost of a seed is hours here).")
    notes.append(
        f"The row over test images compares the two protocols image by image for seed "
        f"{first_cfg.seed}'s final weights (0/1 top-1 errors, paired t-interval): it answers "
        "whether ten crops beat one for this model, not how much that varies between models."
    )
    return ctx.finish(CLAIM, rows, comparisons, notes)


def per_image_comparison(ctx: Context, cfg: TrainConfig, weights) -> dict[str, Any]:
    """10-crop minus 1-crop top-1 error over the validation images of one model, paired by
    image: its interval covers the test set's sampling (what one seed can tell)."""
    device = resolve_device(ctx.device, dist_info())
    ctx.say("per-image errors of the final weights: 1 centre crop, then 10 crops")
    kwargs = dict(device=device, amp=cfg.amp, channels_last=bool(cfg.channels_last),
                  batch_size=cfg.batch_size)  # fmt: skip
    one = per_image_top1_errors(weights, ctx.data, 1, **kwargs)
    ten = per_image_top1_errors(weights, ctx.data, 10, **kwargs)
    return compare_per_item(ten, one, "top1_error", "10-crop", "1-crop", over="test images",
                            direction="less", claim=CLAIM.key)  # fmt: skip
