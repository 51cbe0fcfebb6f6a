"""Training configuration (paper §4-§5 by default): `TrainConfig`, whose fields declare their
type, allowed values, help and `--help` group (`alexnet train`'s flags are generated from them),
and `resolve`, the one place a run's config is decided. No torch: the command line imports it."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.data import AUGMENT_MODES, NORMALIZE_MODES, TEST_CROPS
from alexnet.errors import Param, UserError
from alexnet.models.registry import MODEL_NAMES
from alexnet.rundir import RunDir
from alexnet.train.recipes import RECIPES, recipe_defaults, recipe_model_options
from alexnet.train.schedules import SCHEDULES
from alexnet.values import (
    DEVICE,
    DEVICE_PAIR,
    FACTOR,
    NONNEGATIVE,
    NONNEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT_INTERVAL_OPEN_TOP,
    Choice,
    FloatRange,
    IntRange,
    Kind,
)

RESUME_AUTO = "auto"  # --resume auto: start RUN when it holds no checkpoint, else continue it


# Models measured faster in channels-last on a CPU (training, batch 64, 2 cores): torchvision's
# 73.0 -> 79.7 img/s; the paper model 81.3 -> 81.6 (its fused LRN/pool kernels run NCHW).
CHANNELS_LAST_ON_CPU = ("torchvision",)


@dataclass(frozen=True)
class Option:
    """How a `TrainConfig` field is given and checked: `kind` its allowed values (None: free
    text or a JSON object), `auto` what None means (when allowed), `group` its --help section."""

    kind: Kind | None
    help: str
    group: str
    auto: str | None = None


def _opt(default: Any, kind: Kind | None, help: str, group: str, auto: str | None = None) -> Any:
    option = Option(kind, help, group, auto)
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"option": option})
    return field(default=default, metadata={"option": option})


_RUN, _MODEL, _TUNE, _OPT, _AUG, _EVAL, _MECH = (
    "data and run",
    "model",
    "fine-tuning (paper §6)",
    "optimization (paper §5)",
    "augmentation and normalization (paper §2, §4.1)",
    "evaluation (paper §4.1)",
    "run mechanics",
)


@dataclass
class TrainConfig:
    """One training run. The defaults are the paper's recipe (§4-§5)."""

    data: str = _opt("", None, "packed dataset directory (from `alexnet prepare`)", _RUN)
    output_dir: str = _opt("", None, "run directory to write (RUN)", _RUN)
    recipe: str = _opt(
        "paper", Choice(tuple(RECIPES)), "named hyper-parameter set (see --print-config)", _RUN
    )
    resume: str | None = _opt(
        None, None, "continue the run in RUN from its checkpoint; `--resume auto` with "
        "--output-dir RUN starts RUN when it holds no checkpoint and continues it when it does "
        "(one command line for the first start and every torchrun restart)", _RUN,
    )  # fmt: skip
    model: str = _opt("paper", Choice(MODEL_NAMES), "the network", _MODEL)
    model_options: dict[str, Any] = _opt(
        {}, None, 'options for the model builder, a JSON object, e.g. \'{"init": "caffe"}\'', _MODEL
    )
    init_from: str | None = _opt(
        None, None, "start from these weights: a weights file, run directory, Hugging Face-style "
        "folder or name (torchvision); the model, its options and the input normalization are "
        "the weights', the last layer is re-made when the data's classes differ", _TUNE,
        auto="random initialization",
    )  # fmt: skip
    freeze: str | None = _opt(
        None, None, "keep layers fixed: `features` (every conv layer) or a layer name as "
        "`alexnet summary` lists it (that layer and every one before it)", _TUNE,
        auto="train every layer",
    )  # fmt: skip
    head_lr_factor: float = _opt(
        1.0, POSITIVE, "the last layer learns at --lr x this (a new last layer, faster)", _TUNE
    )
    epochs: int = _opt(90, POSITIVE_INT, "number of epochs", _OPT)
    batch_size: int = _opt(
        128, POSITIVE_INT, "images per step per process (global batch: x WORLD_SIZE)", _OPT
    )
    lr: float = _opt(0.01, POSITIVE, "peak / initial learning rate", _OPT)
    momentum: float = _opt(0.9, UNIT_INTERVAL_OPEN_TOP, "SGD momentum", _OPT)
    weight_decay: float = _opt(5e-4, NONNEGATIVE, "L2 weight decay", _OPT)
    nesterov: bool = _opt(False, None, "Nesterov momentum", _OPT)
    label_smoothing: float = _opt(
        0.0, UNIT_INTERVAL_OPEN_TOP, "cross-entropy label smoothing", _OPT
    )
    schedule: str = _opt("plateau", Choice(SCHEDULES), "learning-rate schedule", _OPT)
    lr_factor: float = _opt(0.1, FACTOR, "plateau/step: multiply the rate by this", _OPT)
    plateau_patience: int = _opt(
        3, POSITIVE_INT, "plateau: validations without improvement before a reduction (ours)", _OPT
    )
    plateau_threshold: float = _opt(
        0.0, NONNEGATIVE, "plateau: an improvement must exceed this (error, a fraction)", _OPT
    )
    max_reductions: int = _opt(3, NONNEGATIVE_INT, "plateau: at most this many reductions", _OPT)
    lr_step_size: int = _opt(30, POSITIVE_INT, "step: epochs between reductions", _OPT)
    warmup_epochs: float | None = _opt(
        0.0, NONNEGATIVE, "cosine: linear warm-up epochs, shorter than the run", _OPT,
        auto="a sixth of --epochs, at most 1",
    )  # fmt: skip
    augment: str = _opt(
        "paper", Choice(AUGMENT_MODES), "random crops + flips (paper) or RandomResizedCrop", _AUG
    )
    flip: bool = _opt(True, None, "random horizontal flips", _AUG)
    lighting_std: float = _opt(
        0.1, NONNEGATIVE, "fancy-PCA lighting: std of each alpha, 0 disables", _AUG
    )
    pad: int | None = _opt(
        None, NONNEGATIVE_INT, "zero padding before random crops", _AUG,
        auto="crop/8 when the images are already the crop size, else 0",
    )  # fmt: skip
    resize: int | None = _opt(
        None, IntRange(8, 4096), "resize images on the device first", _AUG,
        auto="crop x 256/224 when the images are far from the crop size",
    )  # fmt: skip
    normalize: str = _opt(
        "mean_image", Choice(NORMALIZE_MODES), "input normalization (paper §2: the mean image)",
        _AUG,
    )  # fmt: skip
    eval_crops: int = _opt(
        1, Choice(TEST_CROPS), "crops of the per-epoch validation: 1, 2 (+ mirror) or 10", _EVAL
    )
    test_crops: int = _opt(
        10, Choice(TEST_CROPS), "crops of the final evaluation in RUN/eval.json", _EVAL
    )
    val_limit: int = _opt(
        0, NONNEGATIVE_INT, "validate on the first N validation images (0: all)", _EVAL
    )
    train_eval: int = _opt(
        0, NONNEGATIVE_INT, "eval.json also holds the error on the first N training images "
        "(evaluation mode, the test crops): the train side of a train-test gap", _EVAL,
    )  # fmt: skip
    seed: int = _opt(0, IntRange(0, 2**63 - 1), "random seed", _MECH)
    workers: int = _opt(
        0, IntRange(0, 1024), "loader threads (0: load in the training thread)", _MECH
    )
    device: str = _opt("auto", DEVICE, "the device (torchrun: cuda = cuda:LOCAL_RANK)", _MECH)
    amp: bool = _opt(False, None, "bf16 autocast", _MECH)
    channels_last: bool | None = _opt(
        None, None, "channels-last memory format", _MECH,
        auto=f"on a CPU for {', '.join(CHANNELS_LAST_ON_CPU)}'s model, where it measured faster",
    )  # fmt: skip
    compile: bool = _opt(False, None, "torch.compile the model", _MECH)
    tf32: bool = _opt(
        True, None, "CUDA: TF32 matmuls and convolutions (10-bit mantissa products, fp32 sums; "
        "cuDNN's default for convolutions); off: full fp32", _MECH,
    )  # fmt: skip
    deterministic: bool = _opt(False, None, "torch.use_deterministic_algorithms", _MECH)
    checkpoint_every: int = _opt(
        0, NONNEGATIVE_INT, "also checkpoint every N steps (0: at epoch ends and on signals)",
        _MECH,
    )  # fmt: skip
    on_nan: str = _opt(
        "stop", Choice(("stop", "skip")), "a non-finite loss stops the run or skips the step",
        _MECH,
    )  # fmt: skip
    model_parallel: str | None = _opt(
        None, DEVICE_PAIR, "the paper's two towers on two devices (§3.2)", _MECH,
        auto="one device",
    )  # fmt: skip
    max_steps: int = _opt(
        0, NONNEGATIVE_INT, "stop after this many steps in total, with weights (0: no limit)",
        _MECH,
    )  # fmt: skip
    train_limit: int = _opt(
        0, NONNEGATIVE_INT, "train on the first N training images (0: all)", _MECH
    )
    log_every: int = _opt(
        0, NONNEGATIVE_INT, "every N steps, log training loss and error to RUN/steps.jsonl",
        _MECH,
    )  # fmt: skip
    dist_timeout: float = _opt(
        300.0, FloatRange(1.0, 86400.0), "torchrun: seconds a collective or the rendezvous of "
        "the process group may wait for a peer before this process exits (a dead or hung peer "
        "ends the job, never hangs it)", _MECH,
    )  # fmt: skip
    init_like: dict[str, Any] | None = _opt(
        None, None, "experiments: every tensor shared (by name and shape) with the model built "
        "with these options and the same seed starts from that model's value (a JSON object)",
        _MECH, auto="no pairing",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_config(self)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_of(name: str) -> Any:
    """The dataclass default of field `name` (a fresh {} for the dict fields)."""
    f = CONFIG_FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def option_of(name: str) -> Option:
    """The `Option` declared with field `name` of `TrainConfig`."""
    return CONFIG_FIELDS[name].metadata["option"]


CONFIG_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def make_config(recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The config `alexnet train` builds from the same values (`resume` among the overrides)."""
    return resolve(recipe, overrides.pop("resume", None), overrides)


def resolve(recipe: str | None, resume: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """A run's config: the base (recipe `recipe`, default paper; with `resume`, RUN,
    RUN/checkpoint.pt or "auto" when `output_dir` holds a checkpoint: RUN's saved config), the
    overrides that are not None on top, `data`, `output_dir` and `resume` absolute."""
    if resume is not None and not isinstance(resume, str | Path):
        raise UserError(Param("resume"), f": {resume!r} is not a run directory (or {RESUME_AUTO})")
    values = {k: v for k, v in overrides.items() if v is not None}
    for name in ("data", "output_dir"):
        if values.get(name) and isinstance(values[name], str):
            values[name] = str(Path(values[name]).expanduser().resolve())
    if resume == RESUME_AUTO:
        if not values.get("output_dir"):
            raise UserError(
                Param("resume"),
                f" {RESUME_AUTO} needs ",
                Param("output_dir"),
                " RUN (the run to continue)",
            )
        resume = values["output_dir"] if RunDir(values["output_dir"]).has_checkpoint() else None
    if not resume:
        base = recipe_defaults(recipe or "paper")
        if values.get("init_from"):
            base.update(_from_weights(values))
        return _checked({**base, **values, "resume": None})
    run, saved = _run_to_resume(str(resume))
    if recipe is not None and recipe != saved.get("recipe"):
        raise UserError(
            f"{run.config}: the run used recipe {saved.get('recipe')!r}; recipe {recipe!r} "
            "cannot change on resume (override single values instead)"
        )
    if values.get("output_dir", str(run.path)) != str(run.path):
        raise UserError(
            Param("resume"),
            f" {resume} continues that run in place; ",
            Param("output_dir"),
            f" {overrides['output_dir']} is another directory (to branch a run, copy it first: "
            f"cp -r {run.path} {overrides['output_dir']}, then ",
            Param("resume"),
            f" {overrides['output_dir']})",
        )
    if "data" not in values and not (Path(saved.get("data", "")) / "header.json").is_file():
        raise UserError(
            f"{run.config}: the run's data {saved.get('data')!r} is not a packed dataset (from "
            "this directory); point the run at its data with ",
            Param("data"),
            " DIR",
        )
    known = {k: v for k, v in saved.items() if k in CONFIG_FIELDS}
    return _checked({**known, **values, "resume": str(run.path)})


def _from_weights(values: dict[str, Any]) -> dict[str, Any]:
    """What the weights of `--init-from` decide (their model, its options under the given
    ones, their normalization); a different `--model` is refused."""
    from alexnet.train.finetune import weights_config  # reads the weights: torch

    decided = weights_config(str(values["init_from"]))
    if values.get("model", decided["model"]) != decided["model"]:
        raise UserError(
            Param("init_from"),
            f" {values['init_from']}: weights of model {decided['model']!r}, not ",
            Param("model"),
            f" {values['model']!r} (leave ",
            Param("model"),
            " out)",
        )
    decided["model_options"] = {**decided["model_options"], **values.get("model_options", {})}
    return decided


def _run_to_resume(resume: str) -> tuple[RunDir, dict[str, Any]]:
    """The run (absolute) that `--resume` names (a run directory or its checkpoint) and the
    config it saved."""
    path = Path(resume).expanduser().resolve()
    if not path.exists():
        raise UserError(Param("resume"), f" {resume}: no such run directory")
    run = RunDir(path.parent if path.is_file() and path.name == RunDir.CHECKPOINT else path)
    if not run.has_checkpoint() or not run.config.is_file():
        raise UserError(
            Param("resume"),
            f" {resume}: not a run directory (no {RunDir.CHECKPOINT} and {RunDir.CONFIG}); "
            "start a new run with ",
            Param("data"),
            " DIR ",
            Param("output_dir"),
            " RUN",
        )
    try:
        return run, dict(json.loads(run.config.read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{run.config}: cannot read the run's configuration ({exc})") from None


def _checked(values: dict[str, Any]) -> TrainConfig:
    unknown = set(values) - set(CONFIG_FIELDS)
    if unknown:
        raise UserError(f"unknown config fields: {', '.join(sorted(unknown))}")
    return TrainConfig(**values)


def resolve_channels_last(cfg: TrainConfig, device_type: str) -> bool:
    """--channels-last as given, else the measured default: on for CHANNELS_LAST_ON_CPU models
    on a CPU, off elsewhere (on CUDA give --channels-last explicitly, with --amp)."""
    if cfg.channels_last is not None:
        return bool(cfg.channels_last)
    return device_type == "cpu" and cfg.model in CHANNELS_LAST_ON_CPU


def _field_problem(name: str, value: Any) -> str | None:
    f = CONFIG_FIELDS[name]
    option: Option = f.metadata["option"]
    if value is None:
        return None if option.auto is not None or f.default is None else "is not set"
    typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if typ.startswith("bool") and not isinstance(value, bool):
        return f"{value!r} is not true or false"
    if typ.startswith("dict") and not isinstance(value, dict):
        return f"{value!r} is not a JSON object"
    if typ.startswith("str") and option.kind is None and not isinstance(value, str):
        return f"{value!r} is not a text"
    return option.kind.problem(value) if option.kind is not None else None


def check_config(cfg: TrainConfig) -> None:
    """Check every field against its declared kind; UserError naming the field, one line."""
    for name in CONFIG_FIELDS:
        reason = _field_problem(name, getattr(cfg, name))
        if reason:
            raise UserError(Param(name), f": {reason}")
    if cfg.schedule == "cosine" and (cfg.warmup_epochs or 0.0) >= cfg.epochs:
        raise UserError(
            Param("warmup_epochs"),
            f" {cfg.warmup_epochs:g} is not shorter than ",
            Param("epochs"),
            f" {cfg.epochs}: the learning rate would end at its peak, never decayed; give fewer "
            "warm-up epochs",
        )
    if cfg.model_parallel is not None and cfg.model != "paper":
        raise UserError(
            Param("model_parallel"),
            " splits the paper's two towers: use ",
            Param("model"),
            " paper",
        )


def config_json(cfg: TrainConfig, **extra: Any) -> str:
    """RUN/config.json: the resolved config, `extra` and the versions the run uses."""
    import numpy  # heavy: only when a run is written, never for the command line's parser
    import torch

    try:
        version = importlib.metadata.version("alexnet")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    versions = {
        "alexnet": version,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": str(torch.version.cuda),
    }
    return json.dumps({"config": cfg.to_json(), "versions": versions, **extra}, indent=2)


def print_config(cfg: TrainConfig) -> str:
    """Every field of `cfg` with its value, one per line (what `--print-config` shows)."""
    width = max(len(n) for n in CONFIG_FIELDS)
    lines = []
    for name in CONFIG_FIELDS:
        value, option = getattr(cfg, name), option_of(name)
        shown = json.dumps(value)
        if value is None and option.auto:
            shown += f"  (automatic: {option.auto})"
        if name == "model_options":  # what the model is built with: the recipe's, then these
            built = {**recipe_model_options(cfg.recipe, cfg.model), **value}
            shown += f"  (the {cfg.model} model is built with {json.dumps(built)}"
            shown += ", and the data's input size and channels)" if cfg.model == "small" else ")"
        lines.append(f"{name.ljust(width)}  {shown}")
    return "\n".join(lines)
