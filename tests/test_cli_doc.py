"""docs/cli.md is exactly what scripts/cli_doc.py generates from the parsers (run in-process,
no subprocess), so the command-line reference cannot drift from the commands."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

from alexnet import cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"


def _script():
    spec = importlib.util.spec_from_file_location("cli_doc", ROOT / "scripts" / "cli_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli_doc = _script()


def test_the_committed_page_is_the_generated_one():
    assert PAGE.read_text(encoding="utf-8") == cli_doc.render(), (
        "docs/cli.md is out of date: run python scripts/cli_doc.py"
    )


def test_check_exits_1_with_one_line_while_the_page_is_stale(tmp_path, capsys):
    page = tmp_path / "cli.md"
    assert cli_doc.main(["--check", "--out", str(page)]) == 1  # missing
    page.write_text(cli_doc.render().replace("| `--amp` |", "| `--amq` |"), encoding="utf-8")
    assert cli_doc.main(["--check", "--out", str(page)]) == 1  # stale
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "run python scripts/cli_doc.py" in err
    assert cli_doc.main(["--out", str(page)]) == 0
    assert cli_doc.main(["--check", "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == cli_doc.render()


def test_help_texts_are_expanded_as_help_expands_them():
    """The page's help column is `--help`'s text: argparse's own expansion of every field."""
    for name, (sub, _) in cli_doc.sub_parsers().items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.help and action.help is not argparse.SUPPRESS:
                assert cli_doc.expand_help(action, sub.prog) == formatter._expand_help(action), (
                    name,
                    action.dest,
                )
    summary = " ".join(cli_doc.sub_parsers()["reproduce"][1].split())
    assert "95% intervals" in summary  # `%%` in the sub-command's help is one `%`
    assert "(default: auto)" in cli_doc.render()  # add_device's %(default)s


def test_every_table_row_has_its_cells():
    """`|` inside a cell is escaped: every row splits into exactly its columns."""
    text = PAGE.read_text(encoding="utf-8")
    lines = text.splitlines()
    width = 0
    for line, following in zip(lines, [*lines[1:], ""]):
        if not line.startswith("| "):
            continue
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        if following.startswith("|---"):  # a header row sets the table's width
            width = len(cells)
            assert following == "|" + "---|" * width
        assert len(cells) == width, line
    assert "relu-tanh \\| ablations" in text  # reproduce NAME's help, escaped
    assert "`RUN\\|auto`" in text  # train --resume's metavar, escaped in its code span


def test_sections_follow_the_command_order():
    text = PAGE.read_text(encoding="utf-8")
    assert re.findall(r"^## alexnet (\S+)$", text, flags=re.M) == cli.COMMANDS


def test_defaults_that_help_texts_quote_are_the_code_s():
    """Help texts that write a default out by hand (the parser cannot import the library that
    holds it) say the library's value."""
    from alexnet.data.decode import DEFAULT_MAX_PIXELS

    subs = cli_doc.sub_parsers()

    def help_of(command: str, flag: str) -> str:
        sub = subs[command][0]
        return next(a.help for a in sub._actions if flag in a.option_strings)

    assert f"{DEFAULT_MAX_PIXELS:,}" in help_of("prepare", "--max-pixels")
    serve = next(a for a in subs["serve"][0]._actions if "--max-pixels" in a.option_strings)
    assert f"({serve.default:,})" in serve.help
