"""`alexnet reproduce`: one of the paper's findings, trained over several seeds, with intervals.
The parser reads the torch-free `alexnet.experiments`; the experiments load when it runs."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alexnet.commands import add_device, device, flag_of, int_range, nonnegative_int
from alexnet.errors import UserError
from alexnet.experiments import BUDGETS, DEFAULT_SEEDS, FAMILIES, FAMILIES_OF, NAMES

if TYPE_CHECKING:
    from alexnet.experiments.runner import Context, Plan


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce one of the paper's findings with several seeds and 95%% intervals",
        description="Train the runs that test one of the paper's claims (each an ordinary run "
        "under OUT/runs/, reused or resumed when the command is run again), then write "
        "OUT/result.json, OUT/table.md and plots, and print the table. The runs can be trained "
        "elsewhere first (--plan, --run I, --jobs N): the plain command then only gathers. "
        "Experiments: " + ", ".join(NAMES),
    )
    p.add_argument("name", choices=NAMES, metavar="NAME", help=" | ".join(NAMES))
    p.add_argument(
        "--data", help="packed dataset directory (alexnet prepare); required unless --weights"
    )
    p.add_argument(
        "--seeds",
        type=int_range(1, 100),
        default=None,
        help="seeds per variant, 1..100 (default: 3 quick, 5 full; paper-net 1)",
    )
    p.add_argument(
        "--budget",
        choices=BUDGETS,
        default="quick",
        help="quick (minutes) or full (hours; see docs/experiments.md)",
    )
    p.add_argument(
        "--family",
        choices=FAMILIES,
        default=None,
        help="the network: small (the paper's CIFAR-scale CNN, minutes; default) or "
        "paper (the 224 px network, hours a run: for ImageNet-scale data); "
        "relu-tanh is small only, paper-net paper only",
    )
    p.add_argument(
        "--output-dir",
        default=None,
        help="results directory (default reproduce/NAME-BUDGET[-paper]; with --weights "
        "reproduce/towers-STEM); rerun with the same one to resume",
    )
    add_device(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--plan",
        action="store_true",
        help="print the runs, one JSON line each (index, run, variant, seed, "
        "status, the `alexnet train` command line), and exit",
    )
    how.add_argument(
        "--run",
        type=nonnegative_int,
        default=None,
        metavar="I",
        help="train run I of --plan only (a SLURM array task, one GPU per run), "
        "into OUT/runs/; gather later with the plain command",
    )
    how.add_argument(
        "--jobs",
        type=int_range(1, 1024),
        default=None,
        metavar="N",
        help="train N runs at a time in child processes, then gather",
    )
    how.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="towers only: analyse these two-tower weights (e.g. bvlc_alexnet from "
        "`alexnet convert caffe`) instead of training",
    )
    p.add_argument(
        "--devices",
        type=lambda text: [device(part.strip()) for part in text.split(",")],
        default=None,
        metavar="LIST",
        help="with --jobs: devices for the jobs in turn, e.g. cuda:0,cuda:1 (default: "
        "--device for all; CPU jobs split the cores between them)",
    )
    return p


def _context(args: argparse.Namespace) -> Context:
    from alexnet.experiments.runner import Context

    if args.weights is not None:
        if args.name != "towers":
            raise UserError(f"--weights: only for towers (reproduce {args.name} trains its runs)")
        out = args.output_dir or f"reproduce/towers-{Path(args.weights).stem}"
        return Context(args.name, None, _out(out), "weights", 1, args.device)
    if not args.data:
        raise UserError(f"reproduce {args.name}: --data DIR is required (a packed dataset)")
    data = Path(args.data).expanduser().resolve()
    if not (data / "header.json").is_file():
        raise UserError(f"--data {args.data}: not a packed dataset (run `alexnet prepare` first)")
    families = FAMILIES_OF[args.name]
    family = args.family or families[0]
    if family not in families:
        raise UserError(
            f"reproduce {args.name}: --family {family} does not apply "
            f"(it trains the {families[0]} network only)"
        )
    # reproduce/NAME-BUDGET, with -paper for the 224 px family of an experiment that has two
    paper = ["paper"] if family == "paper" and len(families) > 1 else []
    out = _out(args.output_dir or "reproduce/" + "-".join([args.name, args.budget, *paper]))
    seeds = args.seeds or DEFAULT_SEEDS[args.name][BUDGETS.index(args.budget)]
    return Context(args.name, data, out, args.budget, seeds, args.device, family=family)


def _out(path: str) -> Path:
    out = Path(path).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out}: is a file")
    return out


def run(args: argparse.Namespace) -> int:
    from alexnet.experiments import get, runner

    if args.devices is not None and args.jobs is None:
        raise UserError("--devices: only with --jobs N")
    ctx = _context(args)
    module = get(args.name)
    if args.weights is not None:
        module.from_weights(ctx, args.weights)
        return 0
    if args.plan:
        plan = module.plan(ctx)
        for record in plan_records(ctx, plan):
            print(json.dumps(record))
        if plan.pending:
            ctx.say(f"reproduce {args.name}: {plan.pending} (run --plan again then)")
        return 0
    what = f"run {args.run}" if args.run is not None else f"{ctx.seeds} seed(s)"
    ctx.say(f"reproduce {args.name}: budget {args.budget}, {what}, results in {ctx.out}")
    try:
        if args.run is not None:
            runner.train_one(ctx, module, args.run)
        else:
            runner.reproduce(ctx, module, args.jobs or 0, args.devices or [])
    except runner.RunStopped as exc:
        ctx.say(f"alexnet reproduce: {exc}")
        return 130
    return 0


def train_argv(recipe: str, overrides: dict[str, Any]) -> list[str]:
    """The `alexnet train` arguments of a config: --recipe when not paper, then each field that
    differs from the recipe's value (`runner.recipe_overrides`) as its flag (booleans `--x` /
    `--no-x`, dicts as JSON)."""
    argv = [] if recipe == "paper" else ["--recipe", recipe]
    for name, value in overrides.items():
        flag = flag_of(name)
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:
            text = json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value
            argv += [flag, repr(value) if isinstance(value, float) else str(text)]
    return argv


def plan_records(ctx: Context, plan: Plan) -> list[dict[str, Any]]:
    """`--plan`: per run its index, run, variant, seed, status (finished, checkpoint, new) and
    the `alexnet train ... --resume auto` line that starts or continues it."""
    from alexnet.experiments.runner import recipe_overrides, run_config, run_state

    records = []
    for i, s in enumerate(plan.runs):
        cfg = run_config(ctx, s)
        flags = train_argv(cfg.recipe, recipe_overrides(cfg))
        argv = ["alexnet", "train", *flags, "--resume", "auto"]
        status = run_state(s.cfg, ctx.run_dir(s))
        record = dict(index=i, run=s.name, variant=s.variant, seed=s.seed, status=status)
        records.append({**record, "command": shlex.join(argv)})
    return records
