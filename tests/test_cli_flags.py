"""Every numeric / device flag of every sub-command, generated from the parsers: a bad value is
refused at parse time with exit 2 and one line; a good one never gives a traceback."""

from __future__ import annotations

import argparse
import math

import pytest

from alexnet import cli, values
from alexnet.commands import device, from_kind

VALUES = ["0", "-1", "nan", "1e30"]
NUMERIC = {int, float}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("alexnet has no sub-commands")


def _kind(action: argparse.Action) -> str | None:
    if action.type in NUMERIC:
        return "plain " + action.type.__name__  # an unchecked range: the test below fails it
    return getattr(action.type, "kind", None)


def _required_argv(sub: argparse.ArgumentParser, tmp) -> list[str]:
    """Missing paths for every required argument, so that a valid value fails cleanly after
    parsing (exit 2 from a UserError) instead of doing work."""
    argv: list[str] = []
    for action in sub._actions:
        missing = str(tmp / f"missing-{action.dest}")
        if not action.option_strings:
            if action.dest not in ("help",) and action.nargs != "?":
                argv.append(str(list(action.choices)[0]) if action.choices else missing)
        elif action.required:
            argv += [action.option_strings[0], missing]
    return argv


def _cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for name, sub in _subparsers().items():
        for action in sub._actions:
            kind = _kind(action)
            if kind is None or not action.option_strings:
                continue
            flag = action.option_strings[-1]
            values = ["gpu", "cuda:x", "auto"] if kind.startswith("device") else VALUES
            cases += [(name, flag, kind, v) for v in values]
    return cases


CASES = _cases()


def _valid(sub: argparse.ArgumentParser, flag: str, value: str) -> bool:
    action = next(a for a in sub._actions if flag in a.option_strings)
    try:
        parsed = action.type(value) if action.type else value
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    if action.choices is not None and parsed not in action.choices:
        return False
    return not (isinstance(parsed, float) and not math.isfinite(parsed))


def test_every_numeric_flag_has_a_checked_type():
    plain = [(n, f) for n, f, kind, _ in CASES if kind.startswith("plain")]
    plain = sorted(set(plain))
    # the choice flags (--crops {1,2,10}) may keep type=int: their choices are the range
    subs = _subparsers()
    unchecked = [
        (n, f)
        for n, f in plain
        if next(a for a in subs[n]._actions if f in a.option_strings).choices is None
    ]
    assert unchecked == [], f"numeric flags without a range: {unchecked}"
    assert len({n for n, *_ in CASES}) >= 8  # the test really walked the sub-commands


@pytest.mark.parametrize("name,flag,kind,value", CASES)
def test_flag_value(name, flag, kind, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = _subparsers()[name]
    argv = [name, *_required_argv(sub, tmp_path), flag, value]
    try:
        rc = cli.main(argv)
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if _valid(sub, flag, value):
        # accepted: it then stops on the missing input with one line, or succeeds
        assert rc in (0, 1, 2), err
    else:
        assert rc == 2, err
        assert len(lines) == 1, err
        assert flag in lines[0] and f"alexnet {name}" in lines[0], lines[0]


def test_device_messages_list_the_valid_forms():
    with pytest.raises(argparse.ArgumentTypeError, match="auto, cpu, cuda, cuda:N or mps"):
        device("gpu")
    assert device("cuda:1") == "cuda:1"


@pytest.mark.parametrize(
    "kind,good,bad",
    [
        (values.UNIT_INTERVAL_OPEN_TOP, ["0", "0.5", "0.999"], ["1", "2", "-0.1", "nan", "inf"]),
        (values.POSITIVE, ["1e-9", "1e30"], ["0", "-1", "nan", "-inf", "inf"]),
        (values.NONNEGATIVE, ["0", "5e-4"], ["-1e-9", "nan"]),
        (values.POSITIVE_INT, ["1", "128"], ["0", "-1", "1.5", "nan", "1e30"]),
        (values.NONNEGATIVE_INT, ["0", "7"], ["-1", "x"]),
        (values.FACTOR, ["0.1", "0.5"], ["0", "1", "1.5"]),
        (values.DEVICE, ["auto", "cpu", "mps", "cuda", "cuda:12"], ["gpu", "cuda:", "cpu:0", ""]),
        (values.DEVICE_PAIR, ["cpu,cpu", "cuda:0,cuda:1"], ["auto,cpu", "cpu", "cpu,cpu,cpu"]),
    ],
)
def test_argument_types_parse_with_the_values_kinds(kind, good, bad):
    typ = from_kind(kind)
    for text in good:
        typ(text)
        assert kind.problem(kind.parse(text)) is None
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            typ(text)
        assert "\n" not in str(info.value) and kind.valid in str(info.value)


def test_weight_decay_nan_names_weight_decay(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--data", "x", "--output-dir", "y", "--weight-decay", "nan"])
    assert exc.value.code == 2
    assert "--weight-decay" in capsys.readouterr().err


def test_unavailable_mps_is_one_line(capsys):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code = cli.main(["eval", "--data", "x", "--weights", "y", "--device", "mps"])
    err = capsys.readouterr().err
    assert code == 2 and "MPS is not available" in err and len(err.strip().splitlines()) == 1
