"""`relu-tanh`: paper Fig. 1 (§3.1) — a four-layer CNN with ReLUs reaches 25% training error
about six times sooner than the same network with tanh units.

The network: the `small` family (three 5x5 conv layers + one fully-connected layer, four
weight layers) with no regularization of any kind (no LRN, no dropout, no weight decay, no
augmentation), as in the paper's figure. Each activation gets its own learning rate, chosen by
a sweep on seed 0 for the fastest descent (the fewest steps to 25% training error; if no rate
gets there, the lowest training error at the sweep's end), as the paper did ("the learning
rates for each network were chosen independently to make training as fast as possible");
then every seed trains with it. Training error is that of the minibatches as training goes
(the step log, `--log-every`), the curve the paper plots.

Measured per run: steps to 25% training error, and to a stricter threshold fixed before any
run (10%: Fashion-MNIST's 25% comes within a fraction of an epoch). A run that does not reach a
threshold within its budget is right-censored, not dropped: its value is the budget (the steps
it trained; the true value is larger), marked in the row's `censored`, counted in every
summary, and the comparisons stay honest (`result`: a one-sided interval and a paired sign
test). Comparison: tanh / ReLU, paired by seed (bootstrap).

Time: the runs' own clocks measure the machine's load, so they are not compared. Instead each
activation's step time is measured after training, in one process, on the same batches, the
two interleaved (`timing`); time to a threshold = its steps x that step time. The step time is
a per-invocation measurement (result.json `step_time`), the findings are on steps.
"""

from __future__ import annotations

from typing import Any

from alexnet.experiments import plots, timing
from alexnet.experiments.analyses import steps_to_threshold
from alexnet.experiments.claims import claim
from alexnet.experiments.common import Context, Plan, RunSpec, training_words
from alexnet.experiments.result import FORMAT, compare, compare_claim, run_row, summarize
from alexnet.experiments.runner import RunOutcome
from alexnet.rundir import RunDir
from alexnet.train.config import TrainConfig, make_config
from alexnet.weights import load as load_weights

NAME = "relu-tanh"
ACTIVATIONS = ("relu", "tanh")
THRESHOLDS = {"25": 0.25, "10": 0.10}
BATCH = 128  # images per step (the paper's batch)
# budget -> (learning rates swept, sweep steps, steps per seed, steps between log records)
BUDGET = {
    "quick": ((0.01, 0.03, 0.1), 150, 900, 10),
    "full": ((0.003, 0.01, 0.03, 0.1, 0.3), 300, 4700, 10),
}


def config(ctx: Context, activation: str, lr: float, seed: int, steps: int, log: int):
    """The unregularized four-layer CNN with one activation, trained for `steps` steps."""
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
        log_every=log,
        val_limit=1000,
        eval_crops=1,
        test_crops=1,
        seed=seed,
        device=ctx.device,
        checkpoint_every=500,
    )


def sweep_plan(ctx: Context) -> list[RunSpec]:
    """The learning-rate sweep: every rate for each activation, seed 0, the sweep's steps."""
    rates, steps, _, log = BUDGET[ctx.budget]
    return [
        RunSpec(f"sweep-{act}-lr{lr:g}", config(ctx, act, lr, 0, steps, log),
                f"sweep-{act}-lr{lr:g}", 0, f"sweep {act} lr={lr:g}")
        for act in ACTIVATIONS
        for lr in rates
    ]  # fmt: skip


def choose_rates(sweep: list[RunSpec], results: list[Any]) -> dict[str, float]:
    """Per activation, the swept rate with the fewest steps to 25% (ties and no crossing: the
    lowest final training error; then the first rate)."""
    best: dict[str, tuple[tuple[float, float], float]] = {}
    for spec, result in zip(sweep, results):
        act, lr = spec.cfg.model_options["activation"], spec.cfg.lr
        records = RunDir(result.output_dir).read_steps()
        hit = steps_to_threshold(records, THRESHOLDS["25"])
        last = records[-1]["train_top1_error"] if records else 1.0
        key = (hit.step if hit else float("inf"), last)
        if act not in best or key < best[act][0]:
            best[act] = (key, lr)
    return {act: lr for act, (_, lr) in best.items()}


def plan(ctx: Context) -> Plan:
    """The sweep, then (once the sweep has finished: its results choose the rates) the seeds."""
    sweep = sweep_plan(ctx)
    done = ctx.finished(sweep)
    if done is None:
        return Plan(sweep, pending=(
            f"the {len(ACTIVATIONS) * ctx.seeds} runs of the seeds follow once the "
            f"learning-rate sweep (runs 0-{len(sweep) - 1}) has finished: it chooses their rates"
        ))  # fmt: skip
    chosen = choose_rates(sweep, done)
    _, _, steps, log = BUDGET[ctx.budget]
    runs = list(sweep)
    for seed in ctx.seed_list:
        for act in ACTIVATIONS:
            cfg = config(ctx, act, chosen[act], seed, steps, log)
            runs.append(RunSpec(f"{act}-seed{seed}", cfg, act, seed,
                                f"{act} lr={chosen[act]:g} seed {seed}"))  # fmt: skip
    return Plan(runs)


def measure(records: list[dict[str, Any]], cfg: TrainConfig) -> tuple[dict[str, Any], list[str]]:
    """Steps to each threshold and the final training error of one run's steps.jsonl, and the
    thresholds it did not reach (their value: the last logged step, a lower bound)."""
    measured: dict[str, Any] = {"lr": cfg.lr}
    censored = []
    trained = float(records[-1]["step"]) if records else float(cfg.max_steps)
    for name, threshold in THRESHOLDS.items():
        hit = steps_to_threshold(records, threshold)
        measured[f"steps_to_{name}"] = hit.step if hit else trained
        if hit is None:
            censored.append(f"steps_to_{name}")
    measured["final_train_error"] = records[-1]["train_top1_error"] if records else None
    return measured, censored


def comparisons_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """tanh / ReLU on steps to 25% (the claim) and to 10%, paired by seed."""
    main = claim(NAME)
    return [
        compare_claim(rows, main),
        compare(rows, "steps_to_10", "tanh", "relu", kind="ratio", direction="greater",
                claim=main.key),
    ]  # fmt: skip


def notes_of(sweep: list[RunSpec], seeds: list[RunSpec]) -> list[str]:
    """The notes, from the configs: the sweep, the chosen rates, the training, the censoring."""
    rates = sorted({s.cfg.lr for s in sweep})
    chosen = {s.variant: s.cfg.lr for s in seeds}
    cfg = seeds[0].cfg
    return [
        f"Learning rates chosen by the sweep on seed 0 ({sweep[0].cfg.max_steps} steps each, "
        f"rates {', '.join(f'{r:g}' for r in rates)}): "
        + ", ".join(f"{a} {lr:g}" for a, lr in chosen.items()),
        f"Each seed trained {cfg.max_steps} steps of {cfg.batch_size} images "
        f"({training_words(cfg)}, no regularization); training error is the minibatch error "
        f"averaged over every {cfg.log_every} steps.",
        "A run that does not reach a threshold within its budget counts with the steps it "
        "trained as a lower bound (censored, written >=), never left out.",
    ]


def gather(ctx: Context, outcomes: list[RunOutcome]) -> dict[str, Any]:
    sweep = [o.spec for o in outcomes if o.spec.variant not in ACTIVATIONS]
    seeds = [o for o in outcomes if o.spec.variant in ACTIVATIONS]
    rows, curves = [], []
    for outcome in seeds:
        spec, records = outcome.spec, RunDir(outcome.run_dir).read_steps()
        measured, censored = measure(records, spec.cfg)
        rows.append(run_row(spec.variant, spec.seed, outcome.run_dir, ctx.out,
                            censored=censored, **measured))  # fmt: skip
        curves.append(plots.Curve(spec.variant, spec.seed, [r["epoch"] for r in records],
                                  [r["train_top1_error"] for r in records]))  # fmt: skip
    plots.curves_plot(
        ctx.out / "fig1.png",
        curves,
        title="Training error, ReLU (solid) vs tanh (dashed): every seed thin, mean thick",
    )
    step_time = measure_step_time(ctx, seeds, rows)
    return ctx.finish(claim(NAME), rows, comparisons_of(rows),
                      notes_of(sweep, [o.spec for o in seeds]),
                      extra={"step_time": step_time})  # fmt: skip


def measure_step_time(
    ctx: Context, seeds: list[RunOutcome], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each activation's step time, interleaved in this process on the same batches (the
    first seed's final weights of each), and the seconds its mean steps to each threshold
    take (only where no value is censored)."""
    first = {o.spec.variant: o for o in reversed(seeds)}  # the lowest seed of each
    weights = {act: str(first[act].result.weights) for act in ACTIVATIONS}
    cfg = first["relu"].spec.cfg
    device = "cpu" if ctx.device == "auto" else ctx.device
    ctx.say(f"step time: {timing.ROUNDS} interleaved rounds of {timing.STEPS} steps per activation")
    batches = timing.training_batches(str(ctx.data), weights["relu"], cfg.batch_size,
                                      timing.STEPS, device)  # fmt: skip
    models = {act: load_weights(w, device)[0] for act, w in weights.items()}
    times = timing.step_times(models, batches, lr=cfg.lr, momentum=cfg.momentum,
                              rounds=timing.ROUNDS, warmup=timing.WARMUP)  # fmt: skip
    means = {s["quantity"]: {} for s in summarize(rows) if s["quantity"].startswith("steps_to_")}
    for s in summarize(rows):
        if s["quantity"] in means and not s.get("censored"):
            means[s["quantity"]][s["variant"]] = s["mean"]
    method = (f"{timing.ROUNDS} rounds of {timing.STEPS} SGD steps per activation on the same "
              f"batches of {cfg.batch_size}, interleaved in one process, on {device}")  # fmt: skip
    return timing.summary(times, "tanh", "relu", means, method=method)


def upgrade(result: dict[str, Any]) -> dict[str, Any]:
    """A result written before censoring (format 1: a threshold not reached was None and left
    out of its comparison; wall-clock seconds_to_X) in today's form, from its own rows: a
    missing steps_to_X becomes the budget's steps (BUDGET, the steps every seed trained) as a
    censored lower bound, seconds_to_X are dropped, and the summary, comparisons and notes are
    recomputed. Everything that describes the invocation (machine, commit, wall_s) is kept;
    no step time can be measured afterwards (the runs' weights are not in a result)."""
    if result.get("format", 1) >= FORMAT:
        return result
    steps = float(BUDGET[result["budget"]][2])
    rows = []
    for r in result["runs"]:
        measured = {k: v for k, v in r.items() if k not in ("variant", "seed", "run_dir")
                    and not k.startswith("seconds_to_")}  # fmt: skip
        censored = [k for k, v in measured.items() if k.startswith("steps_to_") and v is None]
        measured.update({k: steps for k in censored})
        rows.append(run_row(r["variant"], r["seed"], r["run_dir"], censored=censored, **measured))
    notes = [n for n in result.get("notes", []) if not n.startswith("Not reaching")]
    notes += [
        "A run that does not reach a threshold within its budget counts with the steps it "
        "trained as a lower bound (censored, written >=), never left out.",
        f"Recomputed from the rows of the result of commit {result.get('commit')} (format 1): "
        f"missing steps_to_X set to the {steps:g} steps trained, as lower bounds; the runs' "
        "wall-clock seconds_to_X dropped (they measured the machine's load); no step time "
        "(the run directories were not kept).",
    ]
    return {**result, "format": FORMAT, "runs": rows, "summary": summarize(rows),
            "comparisons": comparisons_of(rows), "notes": notes}  # fmt: skip
