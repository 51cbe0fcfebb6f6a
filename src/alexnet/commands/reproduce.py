"""`alexnet reproduce`: one of the paper's findings, trained over several seeds, with intervals."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands import argtypes as A
from alexnet.errors import UserError
from alexnet.experiments.common import FAMILIES, Context
from alexnet.experiments.registry import DEFAULT_SEEDS, FAMILIES_OF, get, names
from alexnet.experiments.runner import RunStopped


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce one of the paper's findings with several seeds and 95%% intervals",
        description="Train the runs that test one of the paper's claims (each an ordinary run "
        "under OUT/runs/, reused or resumed when the command is run again), then write "
        "OUT/result.json, OUT/table.md and plots, and print the table. Experiments: "
        + ", ".join(names()),
    )
    p.add_argument("name", choices=names(), metavar="NAME", help=" | ".join(names()))
    p.add_argument("--data", required=True, help="packed dataset directory (alexnet prepare)")
    p.add_argument(
        "--seeds",
        type=A.int_range(1, 100),
        default=None,
        help="seeds per variant, 1..100 (default: 3 quick, 5 full; paper-net 1)",
    )
    p.add_argument("--budget", choices=["quick", "full"], default="quick",
                   help="quick (minutes) or full (hours; see docs/experiments.md)")  # fmt: skip
    p.add_argument("--family", choices=FAMILIES, default=None,
                   help="the network: small (the paper's CIFAR-scale CNN, minutes; default) or "
                        "paper (the 224 px network, hours a run: for ImageNet-scale data); "
                        "relu-tanh is small only, paper-net paper only")  # fmt: skip
    p.add_argument("--output-dir", default=None,
                   help="results directory (default reproduce/NAME-BUDGET[-paper]); rerun with "
                        "the same one to resume")  # fmt: skip
    A.add_device(p)
    return p


def run(args: argparse.Namespace) -> int:
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
    default_out = Path("reproduce") / "-".join(
        [args.name, args.budget] + (["paper"] if family == "paper" and len(families) > 1 else [])
    )
    out = Path(args.output_dir or default_out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out}: is a file")
    quick, full = DEFAULT_SEEDS[args.name]
    seeds = args.seeds or (quick if args.budget == "quick" else full)
    ctx = Context(args.name, data, out, args.budget, seeds, args.device, family=family)
    ctx.say(f"reproduce {args.name}: budget {args.budget}, {seeds} seed(s), results in {out}")
    try:
        get(args.name).run(ctx)
    except RunStopped as exc:
        ctx.say(f"alexnet reproduce: {exc}")
        return 130
    return 0
