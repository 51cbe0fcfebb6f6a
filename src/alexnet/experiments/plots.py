"""The experiments' pictures, one PNG each (matplotlib, imported when first drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.experiments.result import is_percent
from alexnet.viz import _pyplot, save_figure


def _figure(width_px: int, height_px: int, rows: int = 1) -> tuple[Any, Any]:
    """A figure of width_px x height_px and its axes (`rows` > 1: stacked, 3:1, one x axis)."""
    ratios = (3, *[1] * (rows - 1)) if rows > 1 else None
    size = (width_px / 100, height_px / 100)
    return _pyplot().subplots(rows, 1, figsize=size, height_ratios=ratios, sharex=True)


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, 100)
    return out


Curve = tuple[Sequence[float], Sequence[float]]  # one run's x (epochs) and y, the same length


def mean_curve(curves: Sequence[Curve], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The curves' mean y on a grid over the x range they all cover (linear interpolation)."""
    lo, hi = max(float(np.min(x)) for x, _ in curves), min(float(np.max(x)) for x, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    return grid, np.mean([np.interp(grid, np.asarray(x, float), y) for x, y in curves], axis=0)


def curves_plot(out: Path, curves: Mapping[str, Sequence[Curve]], title: str = "") -> Path:
    """Fig. 1: training error per epoch of each variant's runs, every seed thin, the mean thick
    (tanh dashed), a dotted line at 25%."""
    fig, ax = _figure(800, 560)
    for i, (variant, runs) in enumerate(curves.items()):
        group = [(x, y) for x, y in runs if len(x)]
        style = "--" if variant == "tanh" else "-"
        for x, y in group:
            ax.plot(x, y, style, color=f"C{i}", lw=0.7, alpha=0.45)
        if group:
            gx, gy = mean_curve(group)
            ax.plot(gx, gy, style, color=f"C{i}", lw=2.5, label=f"{variant} (mean of {len(group)})")
    ax.axhline(0.25, color="gray", ls=":", lw=1)
    ax.set(xlabel="epochs", ylabel="training error rate", title=title)
    ax.legend()
    return _save(fig, out)


def delta_bars(out: Path, comparisons: Sequence[dict[str, Any]]) -> Path:
    """The difference comparisons' estimates with their 95% intervals, each beside the paper's
    number (hatched); errors in percentage points."""
    fig, ax = _figure(900, 520)
    rows = [
        c
        for c in comparisons
        if c.get("kind", "difference") == "difference"
        and (c.get("estimate") is not None or c.get("paper") is not None)
    ]
    for i, c in enumerate(rows):
        scale = 100.0 if is_percent(c["quantity"]) else 1.0
        if c.get("estimate") is not None:
            est, ci = scale * c["estimate"], c.get("ci95")
            err = None if ci is None else [[est - scale * ci[0]], [scale * ci[1] - est]]
            ours = "ours (95% interval)"
            ax.bar(i - 0.2, est, 0.4, yerr=err, capsize=4, color="C0", label=ours)
        if c.get("paper") is not None:
            style = dict(color="white", edgecolor="C1", hatch="//", label="paper")
            ax.bar(i + 0.2, scale * c["paper"], 0.4, **style)
    ax.axhline(0, color="black", lw=0.8)
    names = [f"{c['b'] if c['a'] == 'full' else c['a']}: {c['quantity']}" for c in rows]
    names = [f"{n} ({c.get('claim')})" if names.count(n) > 1 else n for n, c in zip(names, rows)]
    ax.set_xticks(np.arange(len(rows)), names, fontsize=8, rotation=35, ha="right")
    ax.set(ylabel="difference (percentage points for errors)")
    if rows:
        legend = dict(zip(*reversed(ax.get_legend_handles_labels())))  # each label once
        ax.legend(legend.values(), legend.keys())
    return _save(fig, out)


def scores_plot(out: Path, groups: Mapping[str, Sequence[float]]) -> Path:
    """Fig. 3: histograms of each group's kernel scores (top), every kernel's score (bottom)."""
    fig, (top, strip) = _figure(800, 560, rows=2)
    rng = np.random.default_rng(0)  # vertical jitter of the strip only
    for i, (name, scores) in enumerate(groups.items()):
        s = np.asarray(scores, float)
        top.hist(
            s,
            bins=np.linspace(0.0, 1.0, 26),
            alpha=0.5,
            color=f"C{i}",
            label=f"{name} (n={s.size})",
        )
        strip.scatter(s, i + rng.uniform(-0.2, 0.2, s.size), s=10, color=f"C{i}")
    strip.set_yticks(range(len(groups)), list(groups))
    top.set(ylabel="kernels")
    strip.set(xlabel="colour specificity (share of energy off the gray axis)")
    top.legend()
    return _save(fig, out)
