"""What every experiment shares: the context of one `alexnet reproduce` call, the experiments'
recipe of each network family, the measurements read off a finished run, the words that notes
say about a config, and the ending (result.json, table.md, the printed table).

An experiment module has `NAME`, `plan(ctx) -> Plan` (its runs: `RunSpec`s, each with its
variant and seed) and `gather(ctx, outcomes) -> result` (measures the finished runs, in the
plan's order, and calls `ctx.finish`); `alexnet.experiments.fanout` trains the runs (here, one
run per process, or N at a time) and then gathers.

The quick budget trains the paper's CIFAR-scale CNN family (`small`, paper §3.1/§3.3) on a
packed 28-32 px dataset (Fashion-MNIST here, CIFAR-10 where a user has it); the full budget
trains longer and on more seeds. Budgets are listed per experiment in `docs/experiments.md`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from alexnet.errors import UserError
from alexnet.experiments import result as results
from alexnet.experiments.catalog import BUDGETS, FAMILIES
from alexnet.experiments.runner import RunDirLike, RunOutcome, RunSpec, default_rundir, run_state
from alexnet.train.config import TrainConfig, make_config
from alexnet.train.recipes import recipe_model_options

__all__ = ["BUDGETS", "FAMILIES", "Context", "Plan", "RunSpec"]
BATCH = 128  # images per step (the paper's batch)


@dataclass
class Plan:
    """An experiment's runs as far as they are known: `pending` says why more will follow
    (a stage that needs these runs' results first, e.g. relu-tanh's learning-rate sweep)."""

    runs: list[RunSpec]
    pending: str = ""


@dataclass
class Context:
    """One `alexnet reproduce NAME` call: where the data is, where results go, how much to do."""

    name: str
    data: Path | None  # None: nothing to train (towers --weights)
    out: Path
    budget: str = "quick"
    seeds: int = 3
    device: str = "auto"
    family: str = "small"  # FAMILIES: the network the family_recipe experiments train
    log: TextIO | None = None  # None: sys.stderr at the time of writing
    fit: Any = None  # the training function (tests inject a counting one); None: the engine's
    started: float = field(default_factory=time.perf_counter)
    trained_here: set[str] = field(default_factory=set)  # runs trained by this invocation
    outcomes: list[RunOutcome] = field(default_factory=list)  # what gather measures

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def say(self, message: str) -> None:
        print(message, file=self.log or sys.stderr, flush=True)

    def header(self) -> dict[str, Any]:
        """The packed dataset's header.json (name, classes, image size)."""
        try:
            return json.loads((self.data / "header.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"--data {self.data}: not a packed dataset ({exc})") from None

    def dataset_name(self) -> str:
        if self.data is None:
            return "no dataset (given weights, nothing trained)"
        source = self.header().get("input", {}).get("source")
        return f"{source} ({self.data.name})" if source else self.data.name

    def num_classes(self) -> int:
        return len(self.header()["classes"])

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / "runs" / spec.name

    def finished(self, specs: Sequence[RunSpec], rundir=default_rundir) -> list[Any] | None:
        """The RunResults of these runs when every one has finished (each checked to have
        been trained with its spec's config), else None: what a later stage plans from."""
        results_: list[Any] = []
        for spec in specs:
            rd: RunDirLike = rundir(self.run_dir(spec))
            if run_state(rd, self.run_dir(spec), spec.cfg) != "reused":
                return None
            results_.append(rd.result())
        return results_

    def finish(
        self,
        claim: Any,
        runs: list[dict[str, Any]],
        comparisons: list[dict[str, Any]],
        notes: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write OUT/result.json and OUT/table.md (+ notes), print the table, return the result.

        result.json's per-invocation fields (`results.PER_INVOCATION`): wall_s, train_s (the
        runs' training time, read from each run) and runs_reused (of the runs_planned, those
        this call did not train); the rest depends only on the runs' files.
        """
        result = results.build_result(
            self.name,
            claim,
            self.dataset_name(),
            self.budget,
            runs,
            comparisons,
            time.perf_counter() - self.started,
        )
        result["family"] = self.family
        result["runs_planned"] = len(self.outcomes)
        result["runs_reused"] = sum(o.name not in self.trained_here for o in self.outcomes)
        result["train_s"] = round(
            sum(float(getattr(o.result, "train_seconds", 0) or 0) for o in self.outcomes), 1
        )
        result.update(extra or {})
        if notes:
            result["notes"] = list(notes)
        _, table = results.write_result(self.out, result)
        print(table.read_text())
        return result


# the experiments' recipe, per family: the model, its options, and the fields that differ
# between the families (family_config's docstring says why)
# each family's network and the fields it adds to the `ablation` recipe (its model options are
# the recipe's, `alexnet.train.recipes`: `alexnet train --recipe ablation --print-config`)
FAMILY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "small": ("small", {}),
    "paper": ("paper", {"amp": True}),
}


def family_config(family: str, data: str, device: str, **overrides: Any) -> TrainConfig:
    """The ablations' full recipe (the paper's features all on) for one network family: the
    `ablation` recipe (its description says what it sets and why) on the family's network;
    `overrides` are config fields (`model_options` are merged into the recipe's).

    `small` (the paper's CIFAR-scale CNN family, §3.1/§3.3) trains as the recipe says. A first
    try with lr 0.05 was no baseline: after 6 epochs on 8,000 Fashion-MNIST images it stood at
    45.5% top-1 error, and its no-dropout variant stayed at chance; with 0.01: 17.3%.

    `paper` (the 224 px network, `--family paper`, for ImageNet-scale data: hours per run on a
    CPU): the network's own paper options (two towers, LRN after conv1 and conv2, overlapping
    pooling, dropout 0.5 on fc6 and fc7), the same training, and the deviations of `reproduce
    paper-net`: Caffe's initialization (the recipe's) and autocast (bf16 on a CPU).
    """
    model, family_fields = FAMILY_MODELS[family]
    overrides = {**family_fields, **overrides}
    options = {**recipe_model_options("ablation", model), **overrides.pop("model_options", {})}
    values: dict[str, Any] = dict(
        data=data, model=model, model_options=options, device=device, batch_size=BATCH
    )
    values.update(overrides)
    return make_config("ablation", **values)


def family_recipe(ctx: Context, **overrides: Any) -> TrainConfig:
    """`family_config` for this call's family, data and device."""
    return family_config(ctx.family, str(ctx.data), ctx.device, **overrides)


def family_words(ctx: Context) -> str:
    """How the notes name the family's network."""
    return "the 224 px paper network" if ctx.family == "paper" else "the small family"


def training_words(cfg: TrainConfig) -> str:
    """The optimization of a config in words, for an experiment's notes (generated from the
    config, so a note cannot drift from what was trained)."""
    schedule = {
        "cosine": f"cosine decay from {cfg.lr:g} ({cfg.warmup_epochs:g} warm-up epochs)",
        "plateau": f"lr {cfg.lr:g} divided by {1 / cfg.lr_factor:g} on a validation plateau",
        "step": f"lr {cfg.lr:g}"
        + (f" x {cfg.lr_factor:g} every {cfg.lr_step_size} epochs"
           if cfg.lr_step_size < cfg.epochs else " (constant)"),
    }[cfg.schedule]  # fmt: skip
    return (
        f"SGD momentum {cfg.momentum:g}, weight decay {cfg.weight_decay:g}, batch "
        f"{cfg.batch_size}, {schedule}"
    )


def data_words(cfg: TrainConfig) -> str:
    """How many epochs on how many images, in words."""
    images = f"the first {cfg.train_limit:,} training images" if cfg.train_limit else (
        "all training images")  # fmt: skip
    return f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''} on {images}"


def with_options(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of cfg with some model options (key=value) or config fields (cfg__key) changed."""
    options = dict(cfg.model_options)
    fields = {}
    for key, value in changes.items():
        if key.startswith("cfg__"):
            fields[key[5:]] = value
        else:
            options[key] = value
    return dataclasses.replace(cfg, model_options=options, **fields)


def final_errors(outcome: RunOutcome) -> dict[str, float | None]:
    """Test and train errors of a finished run (eval.json), and their gap (test - train)."""
    final = outcome.result.final
    top1, top5 = final.get("top1_error"), final.get("top5_error")
    train = final.get("train", {})
    train1 = train.get("top1_error")
    return {
        "top1_error": top1,
        "top5_error": top5,
        "train_error": train1,
        "train_test_gap": None if top1 is None or train1 is None else top1 - train1,
    }
