"""The experiments' pictures (matplotlib, Agg, imported when first needed).

- `curves_plot`: Fig. 1 style, training error against epochs or steps; one line style per
  variant (solid ReLU, dashed tanh), every seed thin, the mean over seeds thick.
- `delta_bars`: each comparison's estimate with its 95% interval, the paper's number beside it.
- `scores_plot`: the two towers' conv1 colour-specificity scores (Fig. 3), histograms and a
  strip of the individual kernels.
Each writes one PNG of width_px x height_px and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import UserError
from alexnet.experiments.table import is_percent


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("experiment plots need matplotlib (pip install 'alexnet[viz]')") from None
    return plt


def _save(fig: Any, out: str | os.PathLike, dpi: int) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


@dataclass(frozen=True)
class Curve:
    """One run's curve: x (epochs or steps) and y (e.g. training error), same length."""

    variant: str
    seed: int
    x: Sequence[float]
    y: Sequence[float]


def mean_curve(curves: Sequence[Curve], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the curves' y on a common x grid over the range they all cover (linear interp)."""
    lo = max(float(np.min(c.x)) for c in curves)
    hi = min(float(np.max(c.x)) for c in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    ys = [np.interp(grid, np.asarray(c.x, float), np.asarray(c.y, float)) for c in curves]
    return grid, np.mean(ys, axis=0)


def curves_plot(
    out: str | os.PathLike,
    curves: Sequence[Curve],
    *,
    styles: Mapping[str, str] | None = None,
    xlabel: str = "epochs",
    ylabel: str = "training error rate",
    threshold: float | None = 0.25,
    title: str | None = None,
    width_px: int = 800,
    height_px: int = 560,
    dpi: int = 100,
) -> Path:
    """Fig. 1: every seed thin, the variant's mean thick; styles maps variant -> line style
    (default: "relu" solid, "tanh" dashed, others solid); a dotted line at `threshold`."""
    plt = _pyplot()
    styles = {"relu": "-", "tanh": "--", **(styles or {})}
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi))
    for i, variant in enumerate(dict.fromkeys(c.variant for c in curves)):
        group = [c for c in curves if c.variant == variant and len(c.x)]
        if not group:
            continue
        colour, ls = f"C{i}", styles.get(variant, "-")
        for c in group:
            ax.plot(c.x, c.y, ls, color=colour, lw=0.7, alpha=0.45)
        gx, gy = mean_curve(group)
        ax.plot(gx, gy, ls, color=colour, lw=2.5, label=f"{variant} (mean of {len(group)})")
    if threshold is not None:
        ax.axhline(threshold, color="gray", ls=":", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.legend()
    fig.tight_layout()
    return _save(fig, out, dpi)


def delta_bars(
    out: str | os.PathLike,
    comparisons: Sequence[dict[str, Any]],
    *,
    title: str | None = None,
    width_px: int = 900,
    height_px: int = 520,
    dpi: int = 100,
) -> Path:
    """Bars of the difference comparisons (result.json rows; ratios are left out) with 95%
    intervals, the paper's number as a hatched bar beside each; errors in percentage points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi))
    rows = [c for c in comparisons if c.get("kind", "difference") == "difference"
            and (c.get("estimate") is not None or c.get("paper") is not None)]  # fmt: skip
    pos = np.arange(len(rows))
    for i, c in enumerate(rows):
        scale = 100.0 if is_percent(c["quantity"]) else 1.0
        if c.get("estimate") is not None:
            est = scale * c["estimate"]
            err = None
            if c.get("ci95") is not None:
                lo, hi = (scale * v for v in c["ci95"])
                err = [[est - lo], [hi - est]]
            ours = "ours (95% interval)" in ax.get_legend_handles_labels()[1]
            ax.bar(i - 0.2, est, 0.4, yerr=err, capsize=4, color="C0",
                   label=None if ours else "ours (95% interval)")  # fmt: skip
        if c.get("paper") is not None:
            first = "paper" not in ax.get_legend_handles_labels()[1]
            ax.bar(i + 0.2, scale * c["paper"], 0.4, color="white", edgecolor="C1", hatch="//",
                   label="paper" if first else None)  # fmt: skip
    ax.axhline(0, color="black", lw=0.8)
    labels = [f"{c['b'] if c['a'] == 'full' else c['a']}: {c['quantity']}" for c in rows]
    labels = [  # one comparison against two of the paper's numbers: name each claim
        f"{label} ({c.get('claim')})" if labels.count(label) > 1 else label
        for label, c in zip(labels, rows)
    ]
    ax.set_xticks(pos, labels, fontsize=8, rotation=35, ha="right")
    ax.set(ylabel="difference (percentage points for errors)", title=title or "")
    if rows:
        ax.legend()
    fig.tight_layout()
    return _save(fig, out, dpi)


def scores_plot(
    out: str | os.PathLike,
    groups: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "colour specificity (share of energy off the gray axis)",
    title: str | None = None,
    width_px: int = 800,
    height_px: int = 560,
    dpi: int = 100,
) -> Path:
    """Histograms of each group's scores (top) and a strip of every kernel's score (bottom)."""
    plt = _pyplot()
    fig, (top, strip) = plt.subplots(
        2, 1, figsize=(width_px / dpi, height_px / dpi), height_ratios=(3, 1), sharex=True
    )
    bins = np.linspace(0.0, 1.0, 26)
    rng = np.random.default_rng(0)  # vertical jitter of the strip only
    for i, (name, scores) in enumerate(groups.items()):
        s = np.asarray(scores, float)
        top.hist(s, bins=bins, alpha=0.5, color=f"C{i}", label=f"{name} (n={s.size})")
        strip.scatter(s, i + rng.uniform(-0.2, 0.2, s.size), s=10, color=f"C{i}")
    strip.set_yticks(range(len(groups)), list(groups))
    top.set(ylabel="kernels", title=title or "")
    strip.set(xlabel=xlabel)
    top.legend()
    fig.tight_layout()
    return _save(fig, out, dpi)
