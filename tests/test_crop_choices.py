"""The test-time crop choices (paper §4.1: 1, 2 or 10 crops) are declared once, `TEST_CROPS`:
the commands offer exactly that tuple and the library checks against it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from alexnet import cli
from alexnet.commands import error_line
from alexnet.data import TEST_CROPS
from alexnet.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src" / "alexnet"
USERS = ["evaluate.py", "inference.py", "commands/__init__.py"]  # --crops is defined once there


def _crops_flag(command: str) -> argparse.Action:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in subparsers.choices[command]._actions if "--crops" in a.option_strings)


@pytest.mark.parametrize("command", ["eval", "predict", "serve"])
def test_crops_flags_offer_the_one_tuple(command):
    assert _crops_flag(command).choices is TEST_CROPS


@pytest.mark.parametrize("path", USERS)
def test_crop_choices_are_not_spelled_out_again(path):
    text = (SRC / path).read_text()
    assert not re.search(r"[(\[]1, 2, 10[)\]]", text), f"{path} spells out TEST_CROPS"
    assert "TEST_CROPS" in text


def test_library_refuses_crops_outside_test_crops():
    from alexnet.evaluate import make_eval_transform

    pre = {"crop_size": 32, "resize": None, "normalize": "none", "out_channels": 3}
    with pytest.raises(ValueError, match="1, 2, 10, got 3"):
        make_eval_transform(pre, None, 3)
    from alexnet.inference import Predictor

    with pytest.raises(UserError, match=r"^crops 5: must be one of 1, 2, 10$") as caught:
        Predictor("never-read.safetensors", crops=5)
    assert error_line(caught.value) == "--crops 5: must be one of 1, 2, 10"  # the CLI's words
