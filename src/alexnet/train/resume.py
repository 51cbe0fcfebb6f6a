"""A resumed run's config: the run's saved config with explicit overrides layered on top.

`alexnet train --resume RUN --epochs 120` and `fit(resume_config("RUN", epochs=120))` (or
`make_config(resume="RUN", epochs=120)`) build the same config: RUN/config.json's values, then
every override that is not None; `resume` and `output_dir` are RUN itself (absolute), so the
run continues in place. The recipe cannot change on resume (override single values instead).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alexnet.errors import UserError
from alexnet.rundir import RunDir
from alexnet.train.config import (
    RESUME_AUTO,
    TrainConfig,
    config_from_json,
    config_from_values,
    make_config,
)


def run_to_resume(resume: str | Path) -> Path:
    """The run directory that `--resume` names: a run directory or its checkpoint file."""
    path = Path(resume)
    if not path.exists():
        raise UserError(f"--resume {resume}: no such run directory")
    run_dir = path if path.is_dir() else path.parent
    run = RunDir(run_dir)
    if path.is_file() and path.name != RunDir.CHECKPOINT:
        raise UserError(f"--resume {resume}: not a run directory or its {RunDir.CHECKPOINT}")
    if not run.has_checkpoint() or not run.config.is_file():
        raise UserError(
            f"--resume {resume}: not a run directory (no {RunDir.CHECKPOINT} and "
            f"{RunDir.CONFIG}); start a new run with --data DIR --output-dir RUN"
        )
    return run_dir


def saved_config(run_dir: str | Path) -> dict[str, Any]:
    """The "config" object of RUN/config.json (UserError naming the file when unreadable)."""
    path = RunDir(Path(run_dir)).config
    try:
        return dict(json.loads(path.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the run's configuration ({exc})") from None


def resume_config(run: str | Path, *, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """RUN's saved config with every override that is not None; `recipe`, when given, must be
    the run's. `data` given is used as is; otherwise the saved data must still be a packed
    dataset (the error says how to point the run at moved data)."""
    run_dir = run_to_resume(run)
    path = RunDir(run_dir).config
    saved = saved_config(run_dir)
    if recipe is not None and recipe != saved.get("recipe"):
        raise UserError(
            f"{path}: the run used recipe {saved.get('recipe')!r}; recipe {recipe!r} cannot "
            "change on resume (override single values instead)"
        )
    output_dir = overrides.pop("output_dir", None)
    if output_dir and Path(output_dir).resolve() != run_dir.resolve():
        raise UserError(
            f"--resume {run} continues that run in place; --output-dir {output_dir} is another "
            f"directory (to branch a run, copy it first: cp -r {run_dir} {output_dir}, then "
            f"--resume {output_dir})"
        )
    values = config_from_json(saved).to_json()
    values.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("data") is None and not (Path(values["data"]) / "header.json").is_file():
        raise UserError(
            f"{path}: the run's data {values['data']!r} is not a packed dataset (from this "
            "directory); point the run at its data with --data DIR"
        )
    values["resume"] = values["output_dir"] = str(run_dir.resolve())
    return config_from_values(values)


def command_line_config(
    recipe: str | None, resume: str | None, overrides: dict[str, Any]
) -> TrainConfig:
    """The config of `alexnet train`: a new run from the recipe (default paper) and the flags;
    `--resume RUN`: `resume_config`; `--resume auto` (with --output-dir RUN): a new run when RUN
    holds no checkpoint, else `resume_config` of RUN with the same flags (so one command line
    serves the first start and every torchrun restart)."""
    if resume == RESUME_AUTO:
        run_dir = overrides.get("output_dir")
        if not run_dir:
            raise UserError(f"--resume {RESUME_AUTO} needs --output-dir RUN (the run to continue)")
        if RunDir(Path(run_dir)).has_checkpoint():
            return resume_config(run_dir, recipe=recipe, **overrides)
        return make_config(recipe or "paper", **overrides)
    if resume:
        return resume_config(resume, recipe=recipe, **overrides)
    return make_config(recipe or "paper", **overrides)
