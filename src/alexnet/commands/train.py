"""`alexnet train`: train (or resume) AlexNet on a packed dataset with a named recipe. Every flag
is generated from a `TrainConfig` field; a flag left out keeps the recipe's value (or the run's).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from alexnet.commands import flag_of, from_kind
from alexnet.errors import UserError
from alexnet.train.config import (
    CONFIG_FIELDS,
    RECIPES,
    RESUME_AUTO,
    Option,
    TrainConfig,
    default_of,
    option_of,
    print_config,
    resolve,
)


def _recipe_values(name: str) -> str:
    """What each recipe sets `name` to, e.g. "paper 90, torchvision 90, fast 6"."""
    default = default_of(name)
    values = {r: r_.values.get(name, default) for r, r_ in RECIPES.items()}
    if name in ("model", "normalize"):  # the weights of --init-from decide these
        values["finetune"] = "the weights'"
    if len({json.dumps(v) for v in values.values()}) == 1:
        return "" if default in ("", None, {}) else f"default {_shown(default)}"
    return ", ".join(f"{r} {_shown(v)}" for r, v in values.items())


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "automatic" if value is None else str(value)


def _help(name: str, option: Option) -> str:
    """The field's help; its valid values; what each recipe sets; its automatic rule."""
    text, values = option.help, _recipe_values(name)
    if option.kind is not None and option.kind.kind != "choice":
        text += f"; {option.kind.valid}"
    return (
        text
        + (f" ({values})" if values else "")
        + (f" [automatic: {option.auto}]" if option.auto else "")
    )


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train AlexNet on a packed dataset (paper, torchvision or fast recipe)",
        description="Train AlexNet on a dataset packed by `alexnet prepare`. Every recipe value "
        "can be overridden by its flag; (paper 90, fast 6) says what each recipe sets. Resume "
        "a stopped run with --resume RUN; under torchrun --max-restarts use --output-dir RUN "
        f"--resume {RESUME_AUTO}, the same command line for the first start and every restart.",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    metavar = {"data": "DIR", "output_dir": "RUN", "init_from": "WEIGHTS", "freeze": "LAYER"}
    for name, f in CONFIG_FIELDS.items():
        option = option_of(name)
        if option.group not in groups:
            groups[option.group] = p.add_argument_group(option.group)
        add, flag, text = groups[option.group].add_argument, flag_of(name), _help(name, option)
        kind = option.kind.kind if option.kind is not None else None
        if name == "recipe":
            about = "; ".join(f"{r}: {x.about}" for r, x in RECIPES.items())
            about = f"named hyper-parameter set (default paper). {about}"
            add("--recipe", choices=list(RECIPES), default=None, help=about)
            about = "print the resolved config (every field) and exit without training"
            add("--print-config", action="store_true", help=about)
        elif name == "resume":
            add("--resume", metavar=f"RUN|{RESUME_AUTO}", help=option.help)
        elif str(f.type).startswith("bool"):
            add(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif str(f.type).startswith("dict"):
            add(flag, type=_json_object, metavar="JSON", default=None, help=text)
        elif kind == "choice":
            choices = list(option.kind.options)  # type: ignore[union-attr]
            add(flag, type=type(choices[0]), choices=choices, default=None, help=text)
        elif kind is not None:
            add(flag, type=from_kind(option.kind), default=None, help=text)
        else:
            add(flag, metavar=metavar.get(name), default=None, help=text)
    return p


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line (flags left out are None: not given)."""
    return {
        name: getattr(args, name)
        for name in CONFIG_FIELDS
        if name not in ("recipe", "resume") and getattr(args, name, None) is not None
    }


def config_of(args: argparse.Namespace) -> TrainConfig:
    """The run's config from the parsed command line (`alexnet.train.config.resolve`)."""
    overrides = overrides_of(args)
    given = overrides.get("data") and overrides.get("output_dir")
    if not (args.resume or given or args.print_config):
        raise UserError("train needs --data DIR and --output-dir RUN (or --resume RUN)")
    return resolve(args.recipe, args.resume, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    if args.print_config:
        print(print_config(cfg))
        return 0
    from alexnet.train import loop  # torch: imported only when a run starts

    return loop.fit(cfg).exit_status
