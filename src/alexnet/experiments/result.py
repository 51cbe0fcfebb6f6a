"""An experiment's outcome: OUT/result.json (for programs) and OUT/table.md (for people).

result.json holds: format (2), experiment, claim (the paper's words and numbers with the
section; a list when the experiment tests several), dataset, budget, runs (one row per training
run or measurement: variant, seed, the measured quantities, run_dir, and `censored`: the
quantities whose value is only a lower bound), summary (per variant and quantity: n, mean,
ci95, and `censored` / `missing` counts when there are any; always `summarize(runs)`, so it
can be recomputed from the file), comparisons (quantity, a, b, estimate, ci95, paired,
reproduced, and the kind, direction, the paper's number, the claim key and a note saying why a
claim is not testable), machine, torch, commit and wall_s; experiments add fields (notes,
family, train_s, runs_reused, ...).

Censoring: a run that never reaches a threshold within its budget is data, not a gap. Its row
holds the budget as the value and names the quantity in `censored` (the true value is at least
that); summaries count it (n stays the number of seeds) and mark their mean as a lower bound
with an open upper end; comparisons compute the interval with the bound and open the side that
censoring leaves unknown (`stats.censored_interval`), and add a paired sign test that counts
every pair whose order is known (`stats.paired_sign_test`). table.md writes such values ">=".
A value that is missing (None, not censored) is counted as `missing`, never silently dropped.

`PER_INVOCATION` names the fields that describe one invocation rather than the runs' files
(wall time, the runs' training time, how many runs were reused, measured step times): two
invocations that gather the same finished runs write results equal in every other field.
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
from alexnet.experiments.table import table_markdown
from alexnet.fileio import atomic_write_text
from alexnet.runtime import cpu_name

RESULT = "result.json"
TABLE = "table.md"
FORMAT = 2  # 1 (no field): censored values were None and left out
FIELDS = (
    "format",
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
NOT_QUANTITIES = ("variant", "seed", "run_dir", "censored")
PER_INVOCATION = ("wall_s", "train_s", "runs_reused", "step_time")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def run_row(
    variant: str,
    seed: int,
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    censored: Sequence[str] = (),
    **measured: float | None,
) -> dict[str, Any]:
    """One `runs` row: variant, seed, the measured quantities, run_dir (relative to `out` when
    it lies inside it, so a result directory can be moved); `censored` names quantities whose
    value is a lower bound (the run's budget: the threshold was not reached within it)."""
    path = Path(run_dir)
    if out is not None and path.resolve().is_relative_to(Path(out).resolve()):
        path = path.resolve().relative_to(Path(out).resolve())
    bad = [k for k, v in measured.items() if not (v is None or _is_number(v)) or k in FIELDS]
    if bad:
        raise ValueError(f"measured quantities must be numbers or None: {bad}")
    unbounded = [q for q in censored if not _is_number(measured.get(q))]
    if unbounded:
        raise ValueError(f"a censored quantity needs its bound as the value: {unbounded}")
    row = {"variant": variant, "seed": int(seed), **measured, "run_dir": path.as_posix()}
    if censored:
        row["censored"] = sorted(set(censored))
    return row


def is_censored(run: dict[str, Any], quantity: str) -> bool:
    """Is this row's value of `quantity` a lower bound (right-censored)?"""
    return quantity in run.get("censored", ())


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
    """Per variant and quantity: n (rows with a value, censored ones included at their bound),
    mean, ci95; `censored` (values that are lower bounds: the mean is then a lower bound and
    the interval's upper end None) and `missing` (rows whose value is None) when non-zero. A
    quantity that none of a variant's rows has is not summarized for that variant."""
    out = []
    for variant in variants(runs):
        rows = [r for r in runs if r["variant"] == variant]
        for q in quantities(runs):
            present = [r for r in rows if q in r]
            values = [float(r[q]) for r in present if _is_number(r[q])]
            missing = len(present) - len(values)
            if not present:
                continue
            entry: dict[str, Any] = {"variant": variant, "quantity": q, "n": len(values),
                                     "mean": None, "ci95": None}  # fmt: skip
            if values:
                entry.update(_n_mean_ci(stats.mean_ci(values)))
            censored = sum(is_censored(r, q) for r in present)
            if censored:
                entry["censored"] = censored
                if entry["ci95"] is not None:
                    entry["ci95"] = [entry["ci95"][0], None]
            if missing:
                entry["missing"] = missing
            out.append(entry)
    return out


def _n_mean_ci(e: stats.Estimate) -> dict[str, Any]:
    j = e.to_json()
    return {"n": j["n"], "mean": j["estimate"], "ci95": j["ci95"]}


def _by_seed(
    runs: Sequence[dict[str, Any]], variant: str, quantity: str
) -> dict[int, tuple[float, bool]]:
    """seed -> (value, censored) of one variant's rows that have a value."""
    found: dict[int, tuple[float, bool]] = {}
    for r in runs:
        if r["variant"] == variant and _is_number(r.get(quantity)):
            if r["seed"] in found:
                raise ValueError(f"variant {variant!r} has seed {r['seed']} twice")
            found[r["seed"]] = (float(r[quantity]), is_censored(r, quantity))
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
    is not testable here, or when there is no interval (fewer than 2 values). Censored values
    (the module docstring) make the interval one-sided and add a paired sign test; `missing`
    counts the seeds of a or b left out for lack of a value.
    """
    xa, xb = _by_seed(runs, a, quantity), _by_seed(runs, b, quantity)
    if paired:
        seeds = sorted(set(xa) & set(xb))
        va, vb = [xa[s] for s in seeds], [xb[s] for s in seeds]
    else:
        va, vb = list(xa.values()), list(xb.values())
    asked = {r["seed"] for r in runs if r["variant"] in (a, b) and quantity in r}
    row = _comparison([v for v, _ in va], [v for v, _ in vb], quantity, a, b, paired=paired,
                      kind=kind, direction=direction, paper=paper, claim=claim, note=note,
                      a_censored=[c for _, c in va], b_censored=[c for _, c in vb])  # fmt: skip
    used = set(seeds) if paired else set(xa) | set(xb)
    if asked - used:
        row["missing"] = len(asked - used)
    return row


def compare_per_item(
    a_values: Sequence[float],
    b_values: Sequence[float],
    quantity: str,
    a: str,
    b: str,
    *,
    over: str,
    paired: bool = True,
    direction: str = "less",
    claim: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A difference over items other than seeds (e.g. the test images of one model: 0/1 errors
    with 1 and with 10 crops, paired; or the conv1 kernels of two towers, unpaired): the same
    comparison row as `compare`, with `over` naming the items. Its interval covers the
    sampling of those items, not the seeds'."""
    row = _comparison(list(a_values), list(b_values), quantity, a, b, paired=paired,
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
    a_censored: Sequence[bool] = (),
    b_censored: Sequence[bool] = (),
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
    ca, cb = any(a_censored), any(b_censored)
    if ca or cb:
        row.update(_censoring(va, vb, list(a_censored), list(b_censored), paired, direction))
        row["ci95"] = stats.censored_interval(e.ci95, ca, cb)
        if ca and cb and note is None:
            row["note"] = note = "values censored in both variants: the estimate has no bound"
    if note is None:
        row["reproduced"] = stats.reproduced(row["ci95"], direction, 1.0 if ratio else 0.0)
    return row


def _censoring(
    va: list[float],
    vb: list[float],
    ca: list[bool],
    cb: list[bool],
    paired: bool,
    direction: str,
) -> dict[str, Any]:
    """The censoring fields of a comparison row: how many values of a and b are lower bounds,
    which way the estimate is bounded, and (paired) the sign test over the seeds."""
    bound = "lower" if any(ca) and not any(cb) else "upper" if any(cb) and not any(ca) else None
    fields: dict[str, Any] = {"censored": {"a": sum(ca), "b": sum(cb)}, "estimate_bound": bound}
    if paired:
        fields["sign_test"] = stats.paired_sign_test(va, vb, ca, cb, direction).to_json()
    return fields


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
        "format": FORMAT,
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
