"""An experiment's outcome: OUT/result.json (for programs) and OUT/table.md (for people).

A run that never reaches a threshold within its budget is data: its row holds the budget as a
lower bound and names the quantity in `censored`; a value None counts as `missing`, never
dropped. Only the fields of `PER_INVOCATION` differ between two gatherings of the same runs.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet.experiments import stats
from alexnet.runtime import cpu_name

FORMAT = 2
PER_INVOCATION = ("wall_s", "train_s", "runs_reused", "step_time")


@dataclass(frozen=True)
class Claim:
    """One finding of the paper and its test: a - b ("difference") or a / b ("ratio") of
    `quantity`, reproduced when its interval lies on the `direction` side ("less", "greater",
    "differ") of no effect; `numbers`: the paper's estimates, measured on `paper_data`."""

    key: str
    experiment: str
    section: str
    words: str  # the paper's words (quoted or closely paraphrased)
    quantity: str
    a: str
    b: str
    kind: str = "difference"
    direction: str = "less"
    numbers: dict[str, float] = field(default_factory=dict)
    paper_data: str = "ImageNet ILSVRC-2012"

    @property
    def null(self) -> float:
        """No effect: 0 for a difference, 1 for a ratio."""
        return 1.0 if self.kind == "ratio" else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "null": self.null}


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
    """One `runs` row: variant, seed, the measured numbers (or None), run_dir (relative to `out`
    when inside it); `censored`: the quantities whose value is a lower bound."""
    path = Path(run_dir)
    if out is not None and path.resolve().is_relative_to(Path(out).resolve()):
        path = path.resolve().relative_to(Path(out).resolve())
    bad = [k for k, v in measured.items() if not (v is None or _is_number(v))]
    bad += [f"{q} (censored needs its bound)" for q in censored if not _is_number(measured.get(q))]
    if bad:
        raise ValueError(f"measured quantities must be numbers or None: {bad}")
    row = {"variant": variant, "seed": int(seed), **measured, "run_dir": path.as_posix()}
    if censored:
        row["censored"] = sorted(set(censored))
    return row


def item_rows(quantity: str, values: dict[str, Sequence[float]]) -> list[dict[str, Any]]:
    """Rows of one model's values per item (test image, kernel), the item's index as the seed."""
    return [
        {"variant": variant, "seed": i, quantity: float(x)}
        for variant, xs in values.items()
        for i, x in enumerate(xs)
    ]


def is_censored(run: dict[str, Any], quantity: str) -> bool:
    """Is this row's value of `quantity` a lower bound (right-censored)?"""
    return quantity in run.get("censored", ())


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant and quantity: n (censored values at their bound), mean and t interval;
    `censored` (the mean is then a lower bound, the interval open above) and `missing` (rows
    whose value is None) when non-zero."""
    quantities = dict.fromkeys(
        k
        for r in runs
        for k, v in r.items()
        if k not in ("variant", "seed", "run_dir", "censored") and (v is None or _is_number(v))
    )
    out = []
    for variant in dict.fromkeys(str(r["variant"]) for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        for q in quantities:
            present = [r for r in rows if q in r]
            if not present:
                continue
            values = [float(r[q]) for r in present if _is_number(r[q])]
            entry: dict[str, Any] = {"variant": variant, "quantity": q, "n": len(values)}
            e = stats.mean_ci(values).to_json() if values else {"estimate": None, "ci95": None}
            entry.update(mean=e["estimate"], ci95=e["ci95"])
            censored = sum(is_censored(r, q) for r in present)
            if censored:
                entry["censored"] = censored
                entry["ci95"] = entry["ci95"] and [entry["ci95"][0], None]
            if len(present) > len(values):
                entry["missing"] = len(present) - len(values)
            out.append(entry)
    return out


def compare(
    runs: Sequence[dict[str, Any]],
    quantity: str,
    a: str,
    b: str,
    claim: Claim,
    *,
    paired: bool = True,
    direction: str | None = None,
    note: str | None = None,
    over: str | None = None,
) -> dict[str, Any]:
    """The `comparisons` row of variant a against b on `quantity`, over the seeds both have
    (`paired`) or all: a - b or mean(a) / mean(b) as the claim's kind says, its interval
    (one-sided where censored values leave an end unknown, then with a sign test), and whether
    it lies on the `direction` side (default the claim's) of no effect. `missing` counts the
    seeds left out for lack of a value; `over` names the items when they are not seeds."""
    seeds: dict[str, dict[int, tuple[float, bool]]] = {a: {}, b: {}}
    for r in runs:
        if r["variant"] in seeds and _is_number(r.get(quantity)):
            if r["seed"] in seeds[r["variant"]]:
                raise ValueError(f"variant {r['variant']!r} has seed {r['seed']} twice")
            seeds[r["variant"]][r["seed"]] = (float(r[quantity]), is_censored(r, quantity))
    used = set(seeds[a]) & set(seeds[b]) if paired else set(seeds[a]) | set(seeds[b])
    pa, pb = ([x[s] for s in sorted(used) if s in x] for x in (seeds[a], seeds[b]))
    (va, ca), (vb, cb) = ([[v for v, _ in p], [c for _, c in p]] for p in (pa, pb))
    kind, direction = claim.kind, direction or claim.direction
    row: dict[str, Any] = dict(
        quantity=quantity,
        a=a,
        b=b,
        estimate=None,
        ci95=None,
        paired=paired,
        reproduced=None,
        kind=kind,
        n=0,
        direction=direction,
        paper=claim.numbers.get(quantity),
        claim=claim.key,
        note=note,
    )
    if not va or not vb:
        row["note"] = note or f"no {'seed with both' if paired else 'values for the'} variants"
    else:
        if paired:
            estimate = stats.paired_ratio_ci if kind == "ratio" else stats.paired_diff_ci
        else:
            estimate = stats.ratio_ci if kind == "ratio" else stats.welch_diff_ci
        e = estimate(va, vb).to_json()
        row.update(estimate=e["estimate"], ci95=e["ci95"], n=e["n"])
        if any(ca) or any(cb):
            bound = None if any(ca) and any(cb) else "lower" if any(ca) else "upper"
            row.update(censored={"a": sum(ca), "b": sum(cb)}, estimate_bound=bound)
            if paired:
                row["sign_test"] = stats.paired_sign_test(va, vb, ca, cb, direction)
            row["ci95"] = stats.censored_interval(e["ci95"], any(ca), any(cb))
            if bound is None and note is None:
                row["note"] = note = "values censored in both variants: the estimate has no bound"
        if note is None:
            row["reproduced"] = stats.reproduced(row["ci95"], direction, claim.null)
    if over:
        row["over"] = over
    if asked := {r["seed"] for r in runs if r["variant"] in (a, b) and quantity in r} - used:
        row["missing"] = len(asked)
    return row


def machine() -> str:
    """CPU model and core count, plus the CUDA device when one is visible."""
    text = f"{cpu_name()}, {os.cpu_count()} cores"
    return text + (f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "")


def git_commit() -> str:
    """`git rev-parse --short HEAD` of the repository holding this package, else "unknown"."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (done.returncode == 0 and done.stdout.strip()) or "unknown"


def is_percent(quantity: str) -> bool:
    """Is the quantity a fraction shown in percent (errors, gaps, agreements)?"""
    return any(word in quantity for word in ("error", "gap", "agreement"))


def fmt_value(
    quantity: str, value: float | None, *, delta: bool = False, kind: str = "", bound: str = ""
) -> str:
    """Errors in percent (differences in points), ratios with an x; a bound ("lower" /
    "upper") written ">= v" / "<= v"."""
    if value is None:
        return "-"
    if kind == "ratio":
        text = f"{value:.2f}x"
    elif is_percent(quantity):
        text = f"{100 * value:+.2f} pts" if delta else f"{100 * value:.2f}%"
    else:
        text = f"{value:+.4g}" if delta else f"{value:.4g}"
    return {"lower": ">= ", "upper": "<= "}.get(bound or "", "") + text


def fmt_ci(quantity: str, ci: Sequence[float | None] | None, kind: str = "") -> str:
    """[lo, hi]; an end None (censoring) is +inf (-inf, 0 for a ratio) with an open bracket."""
    if ci is None:
        return "-"
    ends = []
    for v, unbounded in zip(ci, ("0" if kind == "ratio" else "-inf", "+inf")):
        if v is None:
            ends.append(unbounded)
        elif kind == "ratio":
            ends.append(f"{v:.2f}")
        else:
            ends.append(f"{100 * v:.2f}" if is_percent(quantity) else f"{v:.4g}")
    return f"{'(' if ci[0] is None else '['}{ends[0]}, {ends[1]}{')' if ci[1] is None else ']'}"


def _counts(entry: dict[str, Any]) -> str:
    """ ", 1 censored, 2 missing" for a summary or comparison entry (empty when none)."""
    censored = entry.get("censored", 0)
    censored = sum(censored.values()) if isinstance(censored, dict) else censored
    parts = [f"{censored} censored"] if censored else []
    parts += [f"{entry['missing']} missing"] if entry.get("missing") else []
    return "".join(f", {p}" for p in parts)


def table_markdown(result: dict[str, Any]) -> str:
    """table.md: the claims, per-variant means, the comparisons, sign tests, step times, the
    machine, the notes."""
    claims = result["claim"] if isinstance(result["claim"], list) else [result["claim"]]
    lines = [f"# {result['experiment']}: {result['dataset']}, budget {result['budget']}", ""]
    lines += [f"- **{c['section']}** ({c['key']}): {c['words']}" for c in claims]
    lines += ["", "| variant | quantity | n | mean | 95% interval |", "|---|---|---|---|---|"]
    for s in result["summary"]:
        q = s["quantity"]
        mean = fmt_value(q, s["mean"], bound="lower" if s.get("censored") else "")
        lines.append(
            f"| {s['variant']} | {q} | {s['n']}{_counts(s)} | {mean} | {fmt_ci(q, s['ci95'])} |"
        )
    data = {c["key"]: c.get("paper_data", "") for c in claims}
    lines += [
        "",
        "| comparison | ours | 95% interval | paper | reproduced? |",
        "|---|---|---|---|---|",
    ]
    for c in result["comparisons"]:
        q, kind = c["quantity"], c.get("kind", "difference")
        by = f" {c['over']}" if c.get("over") else ""
        what = (
            f"{q}: {c['a']} {'/' if kind == 'ratio' else '-'} {c['b']} "
            f"({'paired' if c['paired'] else 'unpaired'}, n={c.get('n')}{by}{_counts(c)})"
        )
        paper = fmt_value(q, c.get("paper"), delta=True, kind=kind)
        if c.get("paper") is not None and data.get(c.get("claim")):
            paper += f" on {data[c.get('claim')]}"
        ours = fmt_value(q, c["estimate"], delta=True, kind=kind, bound=c.get("estimate_bound"))
        why = c.get("note") or (
            "one seed, no interval" if c.get("estimate") is not None else "no data"
        )
        verdict = {True: "yes", False: "no"}.get(c["reproduced"], f"not testable here: {why}")
        lines.append(f"| {what} | {ours} | {fmt_ci(q, c['ci95'], kind)} | {paper} | {verdict} |")
    tests = [_sign_test(c) for c in result["comparisons"] if c.get("sign_test")]
    lines += [""] * bool(tests) + tests + _step_time(result.get("step_time"))
    lines += ["", _footer(result), ""]
    if result.get("notes"):
        lines += [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def _sign_test(c: dict[str, Any]) -> str:
    """A censored comparison's sign test over the seeds, in words."""
    t, a, b = c["sign_test"], c["a"], c["b"]
    side = "two-sided" if t["direction"] == "differ" else "one-sided"
    return (
        f"- {c['quantity']}, {a} vs {b}: {c['censored']['a']} value(s) of {a} and "
        f"{c['censored']['b']} of {b} are lower bounds (the threshold not reached within the "
        f"budget); sign test over the seeds: {a} > {b} in {t['greater']}, < in {t['less']}, "
        f"tied {t['ties']}, order unknown {t['unknown']}; {side} p = {t['p_value']:.3g}."
    )


def _step_time(st: dict[str, Any] | None) -> list[str]:
    """relu-tanh's step times: ms per step per variant, their ratio, seconds to each threshold."""
    if not st:
        return []
    lines = [
        "",
        f"Step time ({st['method']}):",
        "",
        "| variant | ms per step | 95% interval |",
        "|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['ms']:.2f} | {fmt_ci('ms', v['ci95'])} |" for k, v in st["variants"].items()
    ]
    r = st["ratio"]
    lines += [
        "",
        f"Step time {r['a']} / {r['b']}: {fmt_value('', r['estimate'], kind='ratio')} "
        f"{fmt_ci('', r['ci95'], 'ratio')}.",
    ]
    for quantity, per_variant in st.get("time_to", {}).items():
        words = ", ".join(f"{k} {v:.1f} s" for k, v in per_variant.items())
        lines.append(f"Mean {quantity} x step time: {words}.")
    return lines


def _footer(result: dict[str, Any]) -> str:
    text = (
        f"Machine: {result['machine']}; torch {result['torch']}; commit {result['commit']}; "
        f"wall time {result['wall_s']:.0f} s"
    )
    if result.get("train_s"):
        text += f"; the runs' training time {result['train_s']:.0f} s"
    if result.get("runs_reused"):
        total = result.get("runs_planned") or len({r["run_dir"] for r in result["runs"]})
        text += (
            f"; {result['runs_reused']} of {total} runs were reused from an earlier "
            "invocation (the wall time covers this one)"
        )
    return text + "."
