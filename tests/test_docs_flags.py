"""Every flag of every sub-command is named in the documentation (README.md or docs/*.md),
and every environment variable the code reads is too: generated from the parsers and the
source, so a new flag or variable without documentation fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from alexnet import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_flag_of_every_sub_command_is_documented():
    missing = []
    for name, sub in _subparsers().items():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help") or not flag.startswith("--"):
                    continue
                if not re.search(re.escape(flag) + r"(?![\w-])", DOCS):
                    missing.append(f"alexnet {name} {flag}")
    assert missing == [], "undocumented flags:\n" + "\n".join(missing)


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


def test_the_train_flags_table_is_the_configs_own():
    from alexnet.train.config import flags_markdown

    text = (ROOT / "docs" / "training.md").read_text()
    start = text.index("<!-- flags: python -m alexnet.train.config -->\n") + len(
        "<!-- flags: python -m alexnet.train.config -->\n"
    )
    assert text[start : text.index("\n<!-- /flags -->")] == flags_markdown()
