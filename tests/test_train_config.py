"""`TrainConfig` is the one source of every training fact (paper §4-§5 defaults, recipes).

Generated from the dataclass: every field declares its range or choices; every out-of-range
value is refused in one line by `make_config`, by `fit` (a config built by hand) and by the
command line, before any work; the CLI has a flag for every field, with the field's choices;
`--print-config` prints the recipe whole; the code that uses a value checks it with the same
declaration (the plateau schedule's patience).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest

from alexnet import cli
from alexnet.commands import error_line, flag_of
from alexnet.errors import UserError
from alexnet.train.config import (
    CONFIG_FIELDS,
    RECIPES,
    TrainConfig,
    check_config,
    make_config,
    option_of,
    print_config,
)
from alexnet.values import Choice, FloatRange, IntRange, Pattern


def _bad_values(name: str) -> list:
    """Values outside field `name`'s declaration: below and above its range, NaN, infinity,
    a huge number where the range is bounded, a wrong type, a wrong choice."""
    f, kind = CONFIG_FIELDS[name], option_of(name).kind
    typ = str(f.type)
    if typ.startswith("bool"):
        return ["yes", 1]
    if typ.startswith("dict"):
        return ["{}", [1, 2]]
    if isinstance(kind, IntRange):
        bad = [1.5, "3", True, math.nan]
        bad += [kind.lo - 1] if kind.lo is not None else []
        bad += [kind.hi + 1, 10**30] if kind.hi is not None else []
        return bad
    if isinstance(kind, FloatRange):
        bad = [math.nan, math.inf, -math.inf, "0.1"]
        if kind.lo is not None:
            bad += [kind.lo] if kind.lo_open else [kind.lo - 1.0]
        if kind.hi is not None:
            bad += [kind.hi, 1e30] if kind.hi_open else [kind.hi + 1.0, 1e30]
        return bad
    if isinstance(kind, Choice):
        return ["no-such-choice", 99, None]
    if isinstance(kind, Pattern):
        return ["gpu", "cuda:x", 3]
    return [3, ["a"]] if kind is None and typ.startswith("str") else []


CASES = [(name, value) for name in CONFIG_FIELDS for value in _bad_values(name)]


def test_every_field_declares_its_values_and_help():
    for name in CONFIG_FIELDS:
        option = option_of(name)
        assert option.help and option.group, name
        typ = str(CONFIG_FIELDS[name].type)
        if typ.startswith(("int", "float")):
            assert option.kind is not None, f"{name}: a number without a declared range"
    assert len(CASES) > 4 * len(CONFIG_FIELDS) // 2


@pytest.mark.parametrize(("name", "value"), CASES)
def test_make_config_refuses_every_out_of_range_value_in_one_line(name, value):
    with pytest.raises(UserError) as exc:
        check_config(dataclasses.replace(make_config("fast"), **{name: value}))
    message = str(exc.value)  # Python names the field; the command line names its flag
    assert "\n" not in message and message.startswith(f"{name}: "), message
    assert error_line(exc.value) == flag_of(name) + message.removeprefix(name)
    if value is not None:  # None given to make_config means "not given": the recipe's value
        with pytest.raises(UserError):
            make_config(value) if name == "recipe" else make_config("fast", **{name: value})


def test_fit_refuses_a_hand_built_config_before_any_work(tmp_path):
    from alexnet.train.loop import fit

    good = make_config("fast", data=str(tmp_path / "nodata"), output_dir=str(tmp_path / "run"))
    for name, value in CASES:
        with pytest.raises(UserError) as exc:
            fit(dataclasses.replace(good, **{name: value}))
        message = str(exc.value)
        assert message.startswith(f"{name}: ") and "\n" not in message, (name, value, message)
    assert not (tmp_path / "run").exists()


def _train_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_the_command_line_has_a_flag_for_every_field_with_its_choices():
    actions = {a.dest: a for a in _train_parser()._actions}
    for name in CONFIG_FIELDS:
        assert name in actions, f"no flag for {name}"
        assert flag_of(name) in actions[name].option_strings
        kind = option_of(name).kind
        if isinstance(kind, Choice):
            assert list(actions[name].choices) == list(kind.options), name


# values a command line can spell, for the fields whose values are declared (not free text)
CLI_CASES = [
    (n, v)
    for n, v in CASES
    if isinstance(v, int | float) and not isinstance(v, bool) and option_of(n).kind is not None
]


@pytest.mark.parametrize(("name", "value"), CLI_CASES)
def test_the_command_line_refuses_the_same_values(name, value, capsys):
    argv = ["train", "--data", "D", "--output-dir", "R", flag_of(name), str(value)]
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_help_shows_what_each_recipe_sets(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # --epochs and --batch-size, from RECIPES
    assert "(paper 90, torchvision 90, fast 6, ablation 90, finetune 10)" in text
    assert "(paper 128, torchvision 32, fast 256, ablation 128, finetune 64)" in text


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_print_config_prints_the_whole_recipe(recipe, capsys):
    assert cli.main(["train", "--recipe", recipe, "--print-config"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    cfg = make_config(recipe)
    assert len(lines) == len(CONFIG_FIELDS)
    assert lines == print_config(cfg).splitlines()
    shown = dict(line.split(None, 1) for line in lines)
    assert shown["epochs"] == str(cfg.epochs) and shown["recipe"] == f'"{recipe}"'


def test_the_config_checks_the_schedule_patience():
    with pytest.raises(UserError, match="^plateau_patience: "):
        make_config("paper", plateau_patience=0)
    assert option_of("plateau_patience").kind.problem(1) is None


def test_recipes_are_complete_configs_that_pass_their_own_checks():
    for name, recipe in RECIPES.items():
        cfg = make_config(name)
        assert isinstance(cfg, TrainConfig) and cfg.recipe == name
        assert set(recipe.values) <= set(CONFIG_FIELDS)
        for model, options in recipe.model_options.items():
            assert model in option_of("model").kind.options and options


def test_print_config_shows_the_options_the_model_is_built_with():
    shown = print_config(make_config("ablation", model_options={"dropout": 0.3}))
    line = next(x for x in shown.splitlines() if x.startswith("model_options"))
    # the recipe's small-family options (not visible in the field itself), the user's on top
    assert '"towers": 2' in line and '"hidden": 256' in line and '"dropout": 0.3' in line
