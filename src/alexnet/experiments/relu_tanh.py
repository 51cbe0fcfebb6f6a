"""`relu-tanh`: paper Fig. 1 (§3.1), the `small` four-layer CNN without regularization, ReLU
against tanh. Each activation's learning rate is chosen by a sweep on seed 0 (fewest steps to
25% minibatch training error, as the paper did); every seed then trains with it. Measured: the
steps to 25% and to 10% (a run that misses one is censored). The runs' clocks measure the
machine's load, so step times are measured afterwards, interleaved in one process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import SGD

from alexnet.data.loader import DeviceLoader
from alexnet.data.packed import open_dataset
from alexnet.evaluate import make_eval_transform
from alexnet.experiments import plots, stats
from alexnet.experiments.result import Claim, compare, run_row, summarize
from alexnet.experiments.runner import Context, Outcome, Plan, RunSpec, todo, training_words
from alexnet.rundir import RunDir
from alexnet.train import TrainConfig, make_config
from alexnet.weights import load as load_weights

NAME = "relu-tanh"
WORDS = (
    "A four-layer convolutional neural network with ReLUs reaches a 25% training error rate "
    "on CIFAR-10 six times faster than an equivalent network with tanh neurons."
)
CLAIM = Claim(
    NAME,
    NAME,
    "Fig. 1 (§3.1)",
    WORDS,
    "steps_to_25",
    "tanh",
    "relu",
    kind="ratio",
    direction="greater",
    numbers={"steps_to_25": 6.0},
    paper_data="CIFAR-10",
)
ACTIVATIONS = ("relu", "tanh")
THRESHOLDS = {"25": 0.25, "10": 0.10}
BATCH = 128  # images per step (the paper's batch)
# budget -> (learning rates swept, sweep steps, steps per seed, steps between log records)
BUDGET = {
    "quick": ((0.01, 0.03, 0.1), 150, 900, 10),
    "full": ((0.003, 0.01, 0.03, 0.1, 0.3), 300, 4700, 10),
}
ROUNDS, STEPS, WARMUP = 10, 5, 3  # step time: rounds, timed steps per model and round, untimed


def config(ctx: Context, activation: str, lr: float, seed: int, steps: int) -> TrainConfig:
    """The unregularized four-layer CNN with one activation, trained `steps` steps at `lr`."""
    return make_config(
        "paper",
        data=str(ctx.data),
        model="small",
        model_options={"lrn": False, "hidden": 0, "dropout": 0.0, "activation": activation},
        batch_size=BATCH,
        lr=lr,
        momentum=0.9,
        weight_decay=0.0,
        schedule="step",
        lr_step_size=10**6,  # a constant learning rate
        pad=0,
        flip=False,
        lighting_std=0.0,
        normalize="channel",
        epochs=10**4,
        max_steps=steps,
        log_every=BUDGET[ctx.budget][3],
        val_limit=1000,
        eval_crops=1,
        test_crops=1,
        seed=seed,
        device=ctx.device,
        checkpoint_every=500,
    )


def steps_to_threshold(records: Sequence[dict[str, Any]], threshold: float) -> float | None:
    """The step at which the training error (RUN/steps.jsonl records) first reaches
    `threshold`, linearly interpolated from the record before; None when it never does."""
    prev = None
    for row in sorted(records, key=lambda r: r["step"]):
        err = float(row["train_top1_error"])
        if err <= threshold:
            if prev is None:
                return float(row["step"])
            f = (float(prev["train_top1_error"]) - threshold) / (
                float(prev["train_top1_error"]) - err
            )
            return float(prev["step"]) + f * (float(row["step"]) - float(prev["step"]))
        prev = row
    return None


def plan(ctx: Context) -> Plan:
    """The learning-rate sweep (seed 0), then, once it has finished, the seeds at its rates."""
    rates, sweep_steps, steps, _ = BUDGET[ctx.budget]
    sweep = []
    for act in ACTIVATIONS:
        for lr in rates:
            name = f"sweep-{act}-lr{lr:g}"
            sweep.append(RunSpec(name, config(ctx, act, lr, 0, sweep_steps), name, 0))
    if todo(ctx, Plan(sweep)):
        pending = (
            f"the {len(ACTIVATIONS) * ctx.seeds} runs of the seeds follow once the learning-rate "
            f"sweep (runs 0-{len(sweep) - 1}) has finished: it chooses their rates"
        )
        return Plan(sweep, pending)
    best: dict[str, tuple[tuple[float, float], float]] = {}  # fewest steps, then lowest error
    for spec in sweep:
        records = RunDir(ctx.run_dir(spec)).read_steps()
        hit = steps_to_threshold(records, THRESHOLDS["25"])
        key = (
            float("inf") if hit is None else hit,
            records[-1]["train_top1_error"] if records else 1.0,
        )
        act = spec.cfg.model_options["activation"]
        if act not in best or key < best[act][0]:
            best[act] = (key, spec.cfg.lr)
    seeds = [
        RunSpec(f"{act}-seed{seed}", config(ctx, act, best[act][1], seed, steps), act, seed)
        for seed in range(ctx.seeds)
        for act in ACTIVATIONS
    ]
    return Plan(sweep + seeds)


def measure(records: list[dict[str, Any]], cfg: TrainConfig) -> tuple[dict[str, Any], list[str]]:
    """Steps to each threshold and the final training error of one run's steps.jsonl, and the
    thresholds it did not reach (valued at its last step, a lower bound)."""
    measured: dict[str, Any] = {"lr": cfg.lr}
    trained = float(records[-1]["step"]) if records else float(cfg.max_steps)
    censored = []
    for name, threshold in THRESHOLDS.items():
        hit = steps_to_threshold(records, threshold)
        measured[f"steps_to_{name}"] = trained if hit is None else hit
        censored += [f"steps_to_{name}"] * (hit is None)
    measured["final_train_error"] = records[-1]["train_top1_error"] if records else None
    return measured, censored


def gather(ctx: Context, outcomes: list[Outcome]) -> dict[str, Any]:
    sweep = [spec.cfg for spec, _ in outcomes if spec.variant not in ACTIVATIONS]
    seeds = [(spec, res) for spec, res in outcomes if spec.variant in ACTIVATIONS]
    rows, curves = [], {}
    for spec, res in seeds:
        records = RunDir(res.output_dir).read_steps()
        measured, censored = measure(records, spec.cfg)
        rows.append(
            run_row(spec.variant, spec.seed, res.output_dir, ctx.out, censored=censored, **measured)
        )
        curve = ([r["epoch"] for r in records], [r["train_top1_error"] for r in records])
        curves.setdefault(spec.variant, []).append(curve)
    title = "Training error, ReLU (solid) vs tanh (dashed): every seed thin, mean thick"
    plots.curves_plot(ctx.out / "fig1.png", curves, title)
    comparisons = [
        compare(rows, CLAIM.quantity, CLAIM.a, CLAIM.b, CLAIM),
        compare(rows, "steps_to_10", "tanh", "relu", CLAIM),
    ]
    cfg = seeds[0][0].cfg
    chosen = {spec.variant: spec.cfg.lr for spec, _ in seeds}
    notes = [
        f"Learning rates chosen by the sweep on seed 0 ({sweep[0].max_steps} steps each, rates "
        f"{', '.join(f'{r:g}' for r in sorted({c.lr for c in sweep}))}): "
        + ", ".join(f"{a} {lr:g}" for a, lr in chosen.items()),
        f"Each seed trained {cfg.max_steps} steps of {cfg.batch_size} images "
        f"({training_words(cfg)}, no regularization); training error is the minibatch error "
        f"averaged over every {cfg.log_every} steps.",
        "A run that does not reach a threshold within its budget counts with the steps it "
        "trained as a lower bound (censored, written >=), never left out.",
    ]
    return ctx.finish(CLAIM, rows, comparisons, notes, step_time=step_time(ctx, seeds, rows))


def step_time(ctx: Context, seeds: list[Outcome], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """result.json's `step_time`: ms per SGD step of each activation (the lowest seed's
    weights), tanh / ReLU paired by round, and the seconds to each uncensored threshold."""
    first = {spec.variant: (spec, res) for spec, res in reversed(seeds)}
    cfg, device = first["relu"][0].cfg, "cpu" if ctx.device == "auto" else ctx.device
    ctx.say(f"step time: {ROUNDS} interleaved rounds of {STEPS} steps per activation")
    loaded = {act: load_weights(str(first[act][1].weights), device) for act in ACTIVATIONS}
    transform = make_eval_transform(loaded["relu"][1].preprocess, loaded["relu"][1].mean_image, 1)
    ds = open_dataset(str(ctx.data), "train")
    loader = DeviceLoader(ds, cfg.batch_size, shuffle=False, drop_last=True, device=device)
    loader.set_epoch(0)
    batches = [(transform(x), y) for x, y in itertools.islice(loader.iterate(), STEPS)]
    models = {act: model.train() for act, (model, _) in loaded.items()}
    opts = {k: SGD(m.parameters(), lr=cfg.lr, momentum=cfg.momentum) for k, m in models.items()}

    def step(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        opts[name].zero_grad(set_to_none=True)
        nn.functional.cross_entropy(models[name](x), y).backward()
        opts[name].step()

    for name in models:
        for i in range(WARMUP):
            step(name, *batches[i % len(batches)])
    # seconds per step, the models interleaved on the same batches, the order reversed every
    # other round (a change of load lands on both alike)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(ROUNDS):
        for name in list(models)[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            for x, y in batches:
                step(name, x, y)
            times[name].append((time.perf_counter() - start) / len(batches))
    per_variant = {}
    for name, values in times.items():
        e = stats.mean_ci([1000 * v for v in values])
        per_variant[name] = {"ms": e.estimate, "ci95": e.ci95 and list(e.ci95)}
    ratio = stats.paired_ratio_ci(times["tanh"], times["relu"]).to_json()
    time_to: dict[str, dict[str, float]] = {}
    for s in summarize(rows):
        if s["quantity"].startswith("steps_to_"):
            per = time_to.setdefault(s["quantity"], {})
            if not s.get("censored"):
                per[s["variant"]] = s["mean"] * per_variant[s["variant"]]["ms"] / 1000
    return {
        "method": f"{ROUNDS} rounds of {STEPS} SGD steps per activation on the same batches of "
        f"{cfg.batch_size}, interleaved in one process, on {device}",
        "rounds": ROUNDS,
        "variants": per_variant,
        "ratio": {"a": "tanh", "b": "relu", "estimate": ratio["estimate"], "ci95": ratio["ci95"]},
        "time_to": time_to,
    }
