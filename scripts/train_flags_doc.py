"""Write the table of every `alexnet train` flag into docs/training.md, from `TrainConfig`.

Usage: python scripts/train_flags_doc.py [--check]

The table (between `<!-- flags: python scripts/train_flags_doc.py -->` and `<!-- /flags -->`)
gives each flag its values, what every recipe sets it to, side by side, and its help, all read
from the fields of `alexnet.train.config.TrainConfig`, so the page cannot drift from the code.
`--check` writes nothing and exits 1 if the page differs; tests/test_docs_flags.py checks the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from alexnet.commands import flag_of
from alexnet.train.config import CONFIG_FIELDS, RECIPES, default_of, option_of

PAGE = Path(__file__).resolve().parents[1] / "docs" / "training.md"
START, END = "<!-- flags: python scripts/train_flags_doc.py -->\n", "\n<!-- /flags -->"


def table() -> str:
    """Every `alexnet train` flag as a Markdown table."""
    names = " | ".join(RECIPES)
    rows = [f"| flag | values | {names} | what |", "|---|---|" + "---|" * len(RECIPES) + "---|"]
    for name in CONFIG_FIELDS:
        option, typ = option_of(name), str(CONFIG_FIELDS[name].type)
        flag = f"`{flag_of(name)}`"
        if typ.startswith("bool"):
            flag += f" / `--no-{flag_of(name)[2:]}`"
            values = "on / off"
        elif typ.startswith("dict"):
            values = "JSON object"
        else:
            values = option.kind.valid if option.kind is not None else "text"
        cells = []
        for recipe in RECIPES.values():
            value = recipe.values.get(name, default_of(name))
            cells.append("auto" if value is None else json.dumps(value).strip('"'))
        what = option.help.replace("|", "/") + (f" (auto: {option.auto})" if option.auto else "")
        rows.append(f"| {flag} | {values} | " + " | ".join(cells) + f" | {what} |")
    return "\n".join(rows)


def render(page: str) -> str:
    """`page` with its flags table replaced by the generated one."""
    start, end = page.index(START) + len(START), page.index(END)
    return page[:start] + table() + page[end:]


def main(argv: list[str]) -> int:
    text = PAGE.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in argv:
        if new != text:
            stale = f"{PAGE}: the flags table is stale: run python scripts/train_flags_doc.py"
            print(stale, file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
