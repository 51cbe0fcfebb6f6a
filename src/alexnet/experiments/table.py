"""table.md, an experiment's result for people: the paper's claims, per-variant means with
their intervals, the comparisons with the verdicts, the sign tests of censored comparisons, a
step-time measurement, the notes and the machine.

Quantities whose name contains "error", "gap" or "agreement" are fractions, shown in percent
(differences in percentage points, "pts"); ratios with an x; a value that is only a bound
(censored data, `alexnet.experiments.result`) as ">= v", an interval's unbounded end as +inf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PERCENT_WORDS = ("error", "gap", "agreement")


def is_percent(quantity: str) -> bool:
    """Is the quantity a fraction shown in percent (errors, gaps, agreements)?"""
    return any(word in quantity for word in PERCENT_WORDS)


def fmt_value(
    quantity: str, value: float | None, *, delta: bool = False, kind: str = "", bound: str = ""
) -> str:
    """A value for people: errors in percent (differences in points), ratios with a x;
    bound "lower" / "upper": the value is a bound (censored data), written ">= v" / "<= v"."""
    if value is None:
        return "-"
    if kind == "ratio":
        text = f"{value:.2f}x"
    elif is_percent(quantity):
        text = f"{100 * value:+.2f} pts" if delta else f"{100 * value:.2f}%"
    else:
        text = f"{value:+.4g}" if delta else f"{value:.4g}"
    return {"lower": ">= ", "upper": "<= "}.get(bound, "") + text


def fmt_ci(quantity: str, ci: Sequence[float | None] | None, kind: str = "") -> str:
    """[lo, hi]; an end that censoring leaves unbounded (None) is written +inf (or -inf; 0 for
    a ratio) with an open bracket."""
    if ci is None:
        return "-"

    def end(v: float | None, upper: bool) -> str:
        if v is None:
            return "+inf" if upper else ("0" if kind == "ratio" else "-inf")
        if kind == "ratio":
            return f"{v:.2f}"
        return f"{100 * v:.2f}" if is_percent(quantity) else f"{v:.4g}"

    left = "(" if ci[0] is None else "["
    right = ")" if ci[1] is None else "]"
    return f"{left}{end(ci[0], False)}, {end(ci[1], True)}{right}"


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


def _counts(entry: dict[str, Any]) -> str:
    """ ", 1 censored, 2 missing" for a summary or comparison entry (empty when none)."""
    censored = entry.get("censored", 0)
    if isinstance(censored, dict):
        censored = sum(censored.values())
    parts = [f"{censored} censored"] if censored else []
    parts += [f"{entry['missing']} missing"] if entry.get("missing") else []
    return "".join(f", {p}" for p in parts)


def table_markdown(result: dict[str, Any]) -> str:
    """table.md: the paper's claims, per-variant means with intervals, the comparisons, the
    censored comparisons' sign tests, a step-time measurement, the notes, the machine."""
    claims = _claims(result)
    lines = [f"# {result['experiment']}: {result['dataset']}, budget {result['budget']}", ""]
    for c in claims:
        lines.append(f"- **{c.get('section', '')}** ({c.get('key', '')}): {c.get('words', '')}")
    lines += ["", "| variant | quantity | n | mean | 95% interval |", "|---|---|---|---|---|"]
    for s in result["summary"]:
        q = s["quantity"]
        mean = fmt_value(q, s["mean"], bound="lower" if s.get("censored") else "")
        lines.append(
            f"| {s['variant']} | {q} | {s['n']}{_counts(s)} | {mean} | {fmt_ci(q, s['ci95'])} |"
        )
    lines += ["", *_comparison_table(result["comparisons"], claims)]
    lines += _sign_tests(result["comparisons"]) + _step_time(result.get("step_time"))
    lines += ["", _footer(result), ""]
    if result.get("notes"):
        lines += [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(lines)


def _comparison_table(comparisons: list[dict[str, Any]], claims: list[dict[str, Any]]):
    data = {c.get("key"): c.get("paper_data", "") for c in claims}
    lines = ["| comparison | ours | 95% interval | paper | reproduced? |", "|---|---|---|---|---|"]
    for c in comparisons:
        q, kind = c["quantity"], c.get("kind", "difference")
        op = "/" if kind == "ratio" else "-"
        pairing = "paired" if c["paired"] else "unpaired"
        by = f" {c['over']}" if c.get("over") else ""
        what = f"{q}: {c['a']} {op} {c['b']} ({pairing}, n={c.get('n')}{by}{_counts(c)})"
        paper = fmt_value(q, c.get("paper"), delta=True, kind=kind)
        if c.get("paper") is not None and data.get(c.get("claim")):
            paper += f" on {data[c.get('claim')]}"
        ours = fmt_value(q, c["estimate"], delta=True, kind=kind, bound=c.get("estimate_bound"))
        ci = fmt_ci(q, c["ci95"], kind)
        lines.append(f"| {what} | {ours} | {ci} | {paper} | {_verdict(c)} |")
    return lines


def _sign_tests(comparisons: list[dict[str, Any]]) -> list[str]:
    """One line per comparison with censored values: its sign test over the seeds."""
    lines = []
    for c in comparisons:
        t = c.get("sign_test")
        if not t:
            continue
        side = {"greater": "one-sided", "less": "one-sided"}.get(t["direction"], "two-sided")
        n_a, n_b = c["censored"]["a"], c["censored"]["b"]
        lines.append(
            f"- {c['quantity']}, {c['a']} vs {c['b']}: {n_a} value(s) of {c['a']} and {n_b} of "
            f"{c['b']} are lower bounds (the threshold not reached within the budget); sign "
            f"test over the seeds: {c['a']} > {c['b']} in {t['greater']}, < in {t['less']}, "
            f"tied {t['ties']}, order unknown {t['unknown']}; {side} p = {t['p_value']:.3g}."
        )
    return [""] + lines if lines else []


def _step_time(st: dict[str, Any] | None) -> list[str]:
    """The step-time measurement (relu-tanh): ms per step per variant, their ratio, and the
    seconds to each threshold that the steps imply."""
    if not st:
        return []
    lines = ["", f"Step time ({st['method']}):", "",
             "| variant | ms per step | 95% interval |", "|---|---|---|"]  # fmt: skip
    for name, v in st["variants"].items():
        lines.append(f"| {name} | {v['ms']:.2f} | {fmt_ci('ms', v['ci95'])} |")
    r = st["ratio"]
    lines += ["", f"Step time {r['a']} / {r['b']}: {fmt_value('', r['estimate'], kind='ratio')} "
              f"{fmt_ci('', r['ci95'], 'ratio')}."]  # fmt: skip
    for quantity, per_variant in st.get("time_to", {}).items():
        words = ", ".join(f"{k} {v:.1f} s" for k, v in per_variant.items())
        lines.append(f"Mean {quantity} x step time: {words}.")
    return lines


def _footer(result: dict[str, Any]) -> str:
    text = (f"Machine: {result['machine']}; torch {result['torch']}; commit {result['commit']}; "
            f"wall time {result['wall_s']:.0f} s")  # fmt: skip
    if result.get("train_s"):
        text += f"; the runs' training time {result['train_s']:.0f} s"
    if result.get("runs_reused"):
        total = result.get("runs_planned") or len({r["run_dir"] for r in result["runs"]})
        text += (f"; {result['runs_reused']} of {total} runs were reused from an earlier "
                 "invocation (the wall time covers this one)")  # fmt: skip
    return text + "."
