"""An experiment's outcome: OUT/result.json (for programs) and OUT/table.md (for people).

result.json holds exactly: experiment, claim (the paper's words and numbers with the section;
a list when the experiment tests several), dataset, budget, runs (one row per training run or
measurement: variant, seed, the measured quantities, run_dir), summary (per variant and
quantity: n, mean, ci95; always `summarize(runs)`, so it can be recomputed from the file),
comparisons (quantity, a, b, estimate, ci95, paired, reproduced, and the kind, direction, the
paper's number, the claim key and a note saying why a claim is not testable), machine, torch,
commit and wall_s.
Quantities whose name contains "error", "gap" or "agreement" are fractions; table.md shows
them in percent (differences in percentage points, "pts").
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alexnet.experiments import stats
from alexnet.experiments.claims import Claim
from alexnet.fileio import atomic_write_text
from alexnet.runtime import cpu_name

RESULT = "result.json"
TABLE = "table.md"
FIELDS = (
    "experiment",
    "claim",
    "dataset",
    "budget",
    "runs",
    "summary",
    "comparisons",
    "machine",
    "torch",
    "commit",
    "wall_s",
)
NOT_QUANTITIES = ("variant", "seed", "run_dir")
PERCENT_WORDS = ("error", "gap", "agreement")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_row(
    variant: str,
    seed: int,
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    **measured: float | None,
) -> dict[str, Any]:
    """One `runs` row: variant, seed, the measured quantities, run_dir (relative to `out` when
    it lies inside it, so a result directory can be moved)."""
    path = Path(run_dir)
    if out is not None and path.resolve().is_relative_to(Path(out).resolve()):
        path = path.resolve().relative_to(Path(out).resolve())
    bad = [k for k, v in measured.items() if not (v is None or _is_number(v)) or k in FIELDS]
    if bad:
        raise ValueError(f"measured quantities must be numbers or None: {bad}")
    return {"variant": variant, "seed": int(seed), **measured, "run_dir": path.as_posix()}


def quantities(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The measured quantities of `runs`: numeric fields other than seed, in order of appearance."""
    names: dict[str, None] = {}
    for run in runs:
        for key, value in run.items():
            if key not in NOT_QUANTITIES and (_is_number(value) or value is None):
                names.setdefault(key, None)
    return list(names)


def variants(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Variant names in order of first appearance."""
    return list(dict.fromkeys(str(r["variant"]) for r in runs))


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant and quantity: n (runs with a value; None values are left out), mean, ci95."""
    out = []
    for variant in variants(runs):
        rows = [r for r in runs if r["variant"] == variant]
        for q in quantities(runs):
            values = [float(r[q]) for r in rows if _is_number(r.get(q))]
            if not values:
                continue
            e = stats.mean_ci(values)
            out.append({"variant": variant, "quantity": q, **_n_mean_ci(e)})
    return out


def _n_mean_ci(e: stats.Estimate) -> dict[str, Any]:
    j = e.to_json()
    return {"n": j["n"], "mean": j["estimate"], "ci95": j["ci95"]}


def _by_seed(runs: Sequence[dict[str, Any]], variant: str, quantity: str) -> dict[int, float]:
    found: dict[int, float] = {}
    for r in runs:
        if r["variant"] == variant and _is_number(r.get(quantity)):
            if r["seed"] in found:
                raise ValueError(f"variant {variant!r} has seed {r['seed']} twice")
            found[r["seed"]] = float(r[quantity])
    return found


def compare(
    runs: Sequence[dict[str, Any]],
    quantity: str,
    a: str,
    b: str,
    *,
    paired: bool = True,
    kind: str = "difference",
    direction: str = "less",
    paper: float | None = None,
    claim: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Compare variant a with b on `quantity`: a - b ("difference") or mean(a) / mean(b) ("ratio").

    Paired: only seeds that both variants have, matched by seed (paired t or paired bootstrap);
    unpaired: Welch or an independent bootstrap. `reproduced` is None when `note` says the claim
    is not testable here, or when there is no interval (fewer than 2 values).
    """
    xa, xb = _by_seed(runs, a, quantity), _by_seed(runs, b, quantity)
    if paired:
        seeds = sorted(set(xa) & set(xb))
        va, vb = [xa[s] for s in seeds], [xb[s] for s in seeds]
    else:
        va, vb = list(xa.values()), list(xb.values())
    return _comparison(va, vb, quantity, a, b, paired=paired, kind=kind, direction=direction,
                       paper=paper, claim=claim, note=note)  # fmt: skip


def compare_per_item(
    a_values: Sequence[float],
    b_values: Sequence[float],
    quantity: str,
    a: str,
    b: str,
    *,
    over: str,
    direction: str = "less",
    claim: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A paired difference over items other than seeds (e.g. the test images of one model:
    0/1 errors with 1 and with 10 crops): the same comparison row as `compare`, with `over`
    naming the items. Its interval covers the test set's sampling, not the seeds'."""
    row = _comparison(list(a_values), list(b_values), quantity, a, b, paired=True,
                      kind="difference", direction=direction, paper=None, claim=claim,
                      note=note)  # fmt: skip
    return {**row, "over": over}


def _comparison(
    va: list[float],
    vb: list[float],
    quantity: str,
    a: str,
    b: str,
    *,
    paired: bool,
    kind: str,
    direction: str,
    paper: float | None,
    claim: str | None,
    note: str | None,
) -> dict[str, Any]:
    """The comparison row of values already matched (paired) or not: estimate, interval, verdict."""
    row: dict[str, Any] = {
        "quantity": quantity,
        "a": a,
        "b": b,
        "estimate": None,
        "ci95": None,
        "paired": paired,
        "reproduced": None,
        "kind": kind,
        "n": 0,
        "direction": direction,
        "paper": paper,
        "claim": claim,
        "note": note,
    }
    if not va or not vb:
        row["note"] = note or f"no {'seed with both' if paired else 'values for the'} variants"
        return row
    ratio = kind == "ratio"
    if paired:
        e = (stats.paired_ratio_ci if ratio else stats.paired_diff_ci)(va, vb)
    else:
        e = (stats.ratio_ci if ratio else stats.welch_diff_ci)(va, vb)
    j = e.to_json()
    row.update(estimate=j["estimate"], ci95=j["ci95"], n=j["n"])
    if note is None:
        row["reproduced"] = stats.reproduced(e.ci95, direction, 1.0 if ratio else 0.0)
    return row


def compare_claim(
    runs: Sequence[dict[str, Any]],
    claim: Claim,
    quantity: str | None = None,
    *,
    paired: bool = True,
    note: str | None = None,
) -> dict[str, Any]:
    """`compare` with the claim's variants, kind, direction and the paper's number."""
    q = quantity or claim.quantity
    return compare(
        runs,
        q,
        claim.a,
        claim.b,
        paired=paired,
        kind=claim.kind,
        direction=claim.direction,
        paper=claim.numbers.get(q),
        claim=claim.key,
        note=note,
    )


def machine() -> str:
    """CPU model and core count (logical CPUs), plus the CUDA device when one is visible."""
    model = cpu_name()
    text = f"{model}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text


def git_commit() -> str:
    """`git rev-parse --short HEAD` of the repository holding this package, else "unknown"."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def build_result(
    experiment: str,
    claim: Claim | Sequence[Claim] | dict[str, Any] | list[dict[str, Any]],
    dataset: str,
    budget: str,
    runs: Sequence[dict[str, Any]],
    comparisons: Sequence[dict[str, Any]],
    wall_s: float,
) -> dict[str, Any]:
    """The result.json object, with `summary` computed from `runs`."""
    for i, run in enumerate(runs):
        missing = [k for k in ("variant", "seed", "run_dir") if k not in run]
        if missing:
            raise ValueError(f"runs[{i}] lacks {', '.join(missing)}")
    if isinstance(claim, Claim):
        claim_json: Any = claim.to_json()
    elif isinstance(claim, dict):
        claim_json = claim
    else:
        claim_json = [c.to_json() if isinstance(c, Claim) else c for c in claim]
    runs = [dict(r) for r in runs]
    return {
        "experiment": experiment,
        "claim": claim_json,
        "dataset": dataset,
        "budget": budget,
        "runs": runs,
        "summary": summarize(runs),
        "comparisons": [dict(c) for c in comparisons],
        "machine": machine(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "wall_s": round(float(wall_s), 3),
    }


def write_result(out: str | os.PathLike, result: dict[str, Any]) -> tuple[Path, Path]:
    """Write OUT/result.json and OUT/table.md atomically; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    atomic_write_text(out / RESULT, text)
    table = table_markdown(result)
    atomic_write_text(out / TABLE, table)
    return out / RESULT, out / TABLE


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    """Read a result.json (a directory means DIR/result.json)."""
    p = Path(path)
    return json.loads((p / RESULT if p.is_dir() else p).read_text())


# ------------------------------------------------------------------ the people's table
def is_percent(quantity: str) -> bool:
    """Is the quantity a fraction shown in percent (errors, gaps, agreements)?"""
    return any(word in quantity for word in PERCENT_WORDS)


def fmt_value(quantity: str, value: float | None, *, delta: bool = False, kind: str = "") -> str:
    """A value for people: errors in percent (differences in points), ratios with a x."""
    if value is None:
        return "-"
    if kind == "ratio":
        return f"{value:.2f}x"
    if is_percent(quantity):
        return f"{100 * value:+.2f} pts" if delta else f"{100 * value:.2f}%"
    return f"{value:+.4g}" if delta else f"{value:.4g}"


def fmt_ci(quantity: str, ci: Sequence[float] | None, kind: str = "") -> str:
    if ci is None:
        return "-"
    if kind == "ratio":
        return f"[{ci[0]:.2f}, {ci[1]:.2f}]"
    if is_percent(quantity):
        return f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _verdict(c: dict[str, Any]) -> str:
    if c["reproduced"] is True:
        return "yes"
    if c["reproduced"] is False:
        return "no"
    why = c.get("note") or ("one seed, no interval" if c.get("estimate") is not None else "no data")
    return f"not testable here: {why}"


def _claims(result: dict[str, Any]) -> list[dict[str, Any]]:
    claim = result.get("claim")
    return claim if isinstance(claim, list) else [claim] if isinstance(claim, dict) else []


def table_markdown(result: dict[str, Any]) -> str:
    """table.md: the paper's claims, per-variant means with intervals, the comparisons."""
    claims = _claims(result)
    lines = [f"# {result['experiment']}: {result['dataset']}, budget {result['budget']}", ""]
    for c in claims:
        lines.append(f"- **{c.get('section', '')}** ({c.get('key', '')}): {c.get('words', '')}")
    lines += ["", "| variant | quantity | n | mean | 95% interval |", "|---|---|---|---|---|"]
    for s in result["summary"]:
        q = s["quantity"]
        lines.append(
            f"| {s['variant']} | {q} | {s['n']} | {fmt_value(q, s['mean'])} "
            f"| {fmt_ci(q, s['ci95'])} |"
        )
    data = {c.get("key"): c.get("paper_data", "") for c in claims}
    lines += [
        "",
        "| comparison | ours | 95% interval | paper | reproduced? |",
        "|---|---|---|---|---|",
    ]
    for c in result["comparisons"]:
        q, kind = c["quantity"], c.get("kind", "difference")
        op = "/" if kind == "ratio" else "-"
        pairing = "paired" if c["paired"] else "unpaired"
        by = f" {c['over']}" if c.get("over") else ""
        what = f"{q}: {c['a']} {op} {c['b']} ({pairing}, n={c.get('n')}{by})"
        paper = fmt_value(q, c.get("paper"), delta=True, kind=kind)
        if c.get("paper") is not None and data.get(c.get("claim")):
            paper += f" on {data[c.get('claim')]}"
        lines.append(
            f"| {what} | {fmt_value(q, c['estimate'], delta=True, kind=kind)} "
            f"| {fmt_ci(q, c['ci95'], kind)} | {paper} | {_verdict(c)} |"
        )
    lines += [
        "",
        f"Machine: {result['machine']}; torch {result['torch']}; commit "
        f"{result['commit']}; wall time {result['wall_s']:.0f} s"
        + (
            f"; the runs' training time {result['train_s']:.0f} s."
            if result.get("train_s")
            else "."
        ),
        "",
    ]
    return "\n".join(lines)
