"""Write docs/experiments.md from the committed results under docs/results/NAME/ (result.json,
table.md, the PNG plots), so the page's numbers are exactly those of the result files.

Usage: python scripts/experiments_doc.py [--results docs/results] [--out docs/experiments.md]
Copy a finished experiment's OUT/result.json, OUT/table.md and OUT/*.png into
docs/results/NAME/ (no run directories, no weights), then run this script. A full-budget result
beside a quick one goes to docs/results/NAME-full/ and is shown under the quick one.
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

Results go to `--output-dir` (default `reproduce/NAME-BUDGET`). A run found there that was
trained with another config (another budget, say) is refused with its difference named, never
reused. `--family paper` runs `ablations`, `depth` (then conv2, conv3 and conv4 are each
removed), `retrieval` and `towers` on the 224 px network instead of the `small` family, with the
same recipe plus `paper-net`'s deviations: for ImageNet-scale data and a GPU, hours per run on
a CPU.

BUDGETS_TABLE

Times are for Fashion-MNIST on the machine named with each result (2 CPU cores); "estimated"
scales the quick budget's measured speed by the images a budget trains on (the quick budgets
ran while the machine was shared: at the ~3,800 training images/s of the full `retrieval` run
they would take about half as long).
"""


# (experiment, quick budget, full budget): what each trains and how long it took or will take
BUDGETS = [
    ("relu-tanh", "lr sweep 0.01/0.03/0.1 (150 steps each); 900 steps x 3 seeds: 12 min",
     "sweep of 5 rates (300 steps each); 4,700 steps (~10 epochs) x 5 seeds: ~1.7 h (estimated)"),
    ("ablations", "7 variants x 3 seeds, 6 epochs on 8,000 images: 6 min",
     "7 variants x 5 seeds, 15 epochs on all 60,000 images: ~3 h (estimated)"),
    ("depth", "2 variants x 3 seeds, as `ablations`: 2 min",
     "2 variants x 5 seeds, as `ablations`: ~55 min (estimated)"),
    ("retrieval", "3 seeds x 2 epochs: 3 min", "5 seeds x 10 epochs: 15 min"),
    ("paper-net", "a 100-step smoke run: 7 min",
     "12 epochs of the 224 px network, 1 seed: 3.2 h of training here, ~1.5 h on a quiet "
     "machine (~7.5 min an epoch)"),
    ("towers", "3 seeds x 3 epochs (colour data)", "5 seeds x 15 epochs (colour data)"),
]  # fmt: skip


def budgets_table() -> str:
    rows = ["| experiment | `quick` (default) | `full` (`--budget full`) |", "|---|---|---|"]
    rows += [f"| `{name}` | {quick} | {full} |" for name, quick, full in BUDGETS]
    return "\n".join(rows)


def section(name: str, folder: Path, *, title: str | None = None) -> list[str]:
    """One experiment's result folder as markdown (docs/results/NAME, or NAME-full under the
    quick one's section with `title`)."""
    lines = [title or f"## `{name}`", ""]
    result_path = folder / "result.json"
    if not result_path.is_file():
        return lines + ["Not run yet on this project's machine (see the note at the end).", ""]
    result = json.loads(result_path.read_text())
    claims = result["claim"] if isinstance(result["claim"], list) else [result["claim"]]
    for c in claims[:3] if title is None else []:
        lines += [f"> {c['words']} ({c['section']}; {c['paper_data']})", ""]
    if len(claims) > 3 and title is None:
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
    lines += [line.replace("](", f"](results/{folder.name}/") for line in table] + [""]
    for png in sorted(folder.glob("*.png")):
        lines += [f"![{folder.name} {png.stem}](results/{folder.name}/{png.name})", ""]
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
    lines = [INTRO.replace("BUDGETS_TABLE", budgets_table())]
    for name in ORDER:
        lines += section(name, Path(args.results) / name)
        full = Path(args.results) / f"{name}-full"
        if full.is_dir():
            lines += section(name, full, title=f"### `{name}`, full budget")
    if args.note:
        lines += ["## Still to come", "", args.note, ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
