"""Every argument of every sub-command is documented in its own command's section of
docs/cli.md (a row of that command's table: `alexnet eval --split` listed only under another
command does not count), with a help text; every environment variable the code reads is named
in the documentation (README.md or docs/*.md). Generated from the parsers and the source, so a
new flag or variable without documentation fails here."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

from alexnet import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
CLI_MD = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _listed(action: argparse.Action) -> bool:
    """Every argument but -h / --help (documented once for all) and hidden ones."""
    return not isinstance(action, argparse._HelpAction) and action.help is not argparse.SUPPRESS


def _sections(text: str) -> dict[str, str]:
    """{NAME: the text of its `## alexnet NAME` section} of a docs/cli.md text."""
    parts = re.split(r"^## alexnet (\S+)[ \t]*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _argument_cells(section: str) -> list[str]:
    """The code spans of the first (argument) column of every table row of a section."""
    names = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| argument |"):
            first = re.split(r"(?<!\\)\|", line)[1]
            names += re.findall(r"`([^`]+)`", first)
    return names


def undocumented(text: str, subparsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """`alexnet NAME ARG` for every option string (and positional) of every sub-command that
    is not in the argument column of its own command's section of `text` (docs/cli.md)."""
    sections = _sections(text)
    missing = []
    for name, sub in subparsers.items():
        listed = _argument_cells(sections.get(name, ""))
        for action in filter(_listed, sub._actions):
            if action.option_strings:
                missing += [f"alexnet {name} {flag}" for flag in action.option_strings
                            if flag not in listed]  # fmt: skip
                continue
            shown = action.metavar or action.dest  # e.g. SRC in `[SRC]`, IMAGE in `IMAGE ...`
            if action.choices is not None and action.metavar is None:
                shown = "{" + ",".join(map(str, action.choices)) + "}"
            word = re.compile(r"(?<![\w-])" + re.escape(shown) + r"(?![\w-])")
            if not any(word.search(cell) for cell in listed):
                missing.append(f"alexnet {name} {shown}")
    return missing


def test_every_argument_of_every_sub_command_is_in_its_own_section_of_cli_md():
    missing = undocumented(CLI_MD, _subparsers())
    assert missing == [], (
        "arguments not in their command's section of docs/cli.md (python scripts/cli_doc.py "
        "regenerates it):\n" + "\n".join(missing)
    )


def test_a_flag_missing_from_its_own_section_is_caught():
    """The check fails on a page without a flag's row, even when the flag is named elsewhere
    on the page (in another command's table or in prose), and on a page without a section."""
    subs = _subparsers()
    assert "alexnet eval --split" not in undocumented(CLI_MD, subs)
    doctored = re.sub(r"^\| `--split` .*\n", "", _sections(CLI_MD)["eval"], flags=re.M)
    assert doctored != _sections(CLI_MD)["eval"]
    text = CLI_MD.replace(_sections(CLI_MD)["eval"], doctored + "Mentions --split in prose.\n")
    assert "--split" in _sections(text)["eval"] and "`--split`" in _sections(text)["features"]
    assert undocumented(text, subs) == ["alexnet eval --split"]
    # a positional, and one spelling of a two-spelling flag
    text = CLI_MD.replace("| `IMAGE [IMAGE ...]` |", "| `IMAGES` |")
    assert undocumented(text, subs) == ["alexnet predict IMAGE"]
    text = CLI_MD.replace("| `--amp`, `--no-amp` |", "| `--amp` |")
    assert undocumented(text, subs) == ["alexnet train --no-amp"]
    # a whole section gone: every argument of that command
    text = CLI_MD.replace("## alexnet export\n", "## export\n")
    assert "alexnet export --json" in undocumented(text, subs)


def test_every_argument_has_a_help_text():
    missing = [
        f"alexnet {name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in _subparsers().items()
        for action in filter(_listed, sub._actions)
        if not (action.help or "").strip()
    ]
    assert missing == [], f"arguments without a help text: {missing}"


def test_every_environment_variable_read_is_documented():
    names = set()
    for path in (ROOT / "src" / "alexnet").rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"environ(?:\.get)?\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']", text))
        names |= set(re.findall(r"environ\[[\"']([A-Z][A-Z0-9_]+)[\"']\]", text))
        names |= set(re.findall(r"getenv\(\s*[\"']([A-Z][A-Z0-9_]+)[\"']", text))
    # torchrun's and the system's own variables are theirs to document
    theirs = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "HOME",
              "TORCH_HOME", "XDG_CACHE_HOME", "TORCHELASTIC_RESTART_COUNT",
              "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_USE_AGENT_STORE", "PATH",
              "TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"}  # fmt: skip
    missing = sorted(n for n in names - theirs if n not in DOCS)
    assert missing == [], f"undocumented environment variables: {missing}"


def test_the_train_flags_table_is_the_configs_own(capsys):
    spec = importlib.util.spec_from_file_location(
        "train_flags_doc", ROOT / "scripts" / "train_flags_doc.py"
    )
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    assert doc.main(["--check"]) == 0, capsys.readouterr().err
    text = doc.PAGE.read_text(encoding="utf-8")
    stale = text.replace(doc.table(), doc.table().replace("on / off", "yes / no"))
    assert stale != text and doc.render(stale) == text  # a stale table is written anew
