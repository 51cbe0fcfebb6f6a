"""Write docs/experiments.md from the committed results under docs/results/NAME/ (result.json,
table.md, the PNG plots), so the page's numbers are exactly those of the result files.

Usage: python scripts/experiments_doc.py [--results docs/results] [--out docs/experiments.md]
Copy a finished experiment's OUT/result.json, OUT/table.md and OUT/*.png into
docs/results/NAME/ (no run directories, no weights), then run this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ["relu-tanh", "ablations", "depth", "retrieval", "paper-net", "towers"]
INTRO = """# The paper's findings, reproduced

Each experiment is one command, `alexnet reproduce NAME --data DIR [--seeds N] [--budget
quick|full]`: it trains its variants as ordinary runs (resumable: rerun the same command after
an interruption and finished runs are reused), then writes `OUT/result.json`, `OUT/table.md`
and plots. Numbers are means over seeds with 95% intervals (Student t; a paired bootstrap for
ratios); two variants with the same seed start from the same weights in every layer they share
and see the same data order, so their comparison is paired. "Reproduced" means the interval
lies on the paper's side of zero (or of 1 for a ratio); "not testable here" says why.

The paper measured its effects on ImageNet with the 224 px network, trained for days. Here the
quick budget trains the paper's CIFAR-scale CNN family (`small`) on Fashion-MNIST (28 px,
grayscale, 10 classes) for minutes: such a run can test the *direction* of a claim, rarely its
size, and a claim that does not reproduce here is reported as such, with its numbers.
`make experiments` runs the quick budget of every experiment. Everything below was generated
by `scripts/experiments_doc.py` from the result files in `docs/results/`.
"""


def section(name: str, folder: Path) -> list[str]:
    lines = [f"## `{name}`", ""]
    result_path = folder / "result.json"
    if not result_path.is_file():
        return lines + ["Not run yet on this project's machine (see the note at the end).", ""]
    result = json.loads(result_path.read_text())
    claims = result["claim"] if isinstance(result["claim"], list) else [result["claim"]]
    for c in claims[:3]:
        lines += [f"> {c['words']} ({c['section']}; {c['paper_data']})", ""]
    if len(claims) > 3:
        lines += [f"(and {len(claims) - 3} more claims in the table)", ""]
    lines += [
        "```bash",
        f"alexnet reproduce {name} --data data/fashion-mnist --budget {result['budget']} "
        f"--seeds {len({r['seed'] for r in result['runs']})}",
        "```",
        "",
        f"Dataset {result['dataset']}; budget `{result['budget']}`; {_times(result)} on "
        f"{result['machine']}; torch {result['torch']}, commit `{result['commit']}`.",
        "",
    ]
    table = (folder / "table.md").read_text().strip().splitlines()
    if table and table[0].startswith("#"):
        table = table[1:]
    lines += [line.replace("](", f"](results/{name}/") for line in table] + [""]
    for png in sorted(folder.glob("*.png")):
        lines += [f"![{name} {png.stem}](results/{name}/{png.name})", ""]
    return lines


def _times(result: dict) -> str:
    """The invocation's wall time, and the runs' training time where runs were reused."""
    wall = f"wall time {result['wall_s'] / 60:.1f} min"
    if result.get("runs_reused") and result.get("train_s"):
        return f"{wall} (runs reused; their training took {result['train_s'] / 60:.1f} min)"
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="docs/results")
    p.add_argument("--out", default="docs/experiments.md")
    p.add_argument("--note", default="", help="a closing note (what is still running, and why)")
    args = p.parse_args()
    lines = [INTRO]
    for name in ORDER:
        lines += section(name, Path(args.results) / name)
    if args.note:
        lines += ["## Still to come", "", args.note, ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
