"""A run's `alexnet train` command line, rendered from its config (`reproduce --plan`).

`alexnet train` has one flag per `TrainConfig` field: `--` + the field's name with `_` -> `-`
(`batch_size` -> `--batch-size`), booleans as `--x` / `--no-x`, dict fields (`model_options`,
`init_like`) as JSON. `train_argv(cfg)` writes the fields in which `cfg` differs from its
recipe's defaults that way, so `alexnet train ARGV` resolves to `cfg` again (a test parses the
rendered line with the real parser). `resume` is left out: the caller adds `--resume auto`
(start the run, or continue it from its checkpoint) where it wants one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from alexnet.train.config import TrainConfig, make_config

NOT_RENDERED = ("resume",)


def flag(name: str) -> str:
    """The `alexnet train` flag of a config field."""
    return "--" + name.replace("_", "-")


def _render(name: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag(name) if value else "--no-" + name.replace("_", "-")]
    if isinstance(value, dict):
        return [flag(name), json.dumps(value, separators=(",", ":"))]
    if isinstance(value, float):
        return [flag(name), repr(value)]
    return [flag(name), str(value)]


def train_argv(cfg: TrainConfig) -> list[str]:
    """The `alexnet train` arguments of `cfg`: --recipe when not paper, then every field that
    differs from that recipe's value, in the dataclass's order (ValueError for a field that the
    command line cannot set back to None)."""
    base = make_config(cfg.recipe)
    argv = [] if cfg.recipe == "paper" else ["--recipe", cfg.recipe]
    for f in dataclasses.fields(TrainConfig):
        value, default = getattr(cfg, f.name), getattr(base, f.name)
        if f.name in NOT_RENDERED or f.name == "recipe" or value == default:
            continue
        if value is None:
            raise ValueError(f"{f.name}: None cannot be given on the command line ({default!r})")
        argv += _render(f.name, value)
    return argv
