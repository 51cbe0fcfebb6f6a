"""The experiments' PNGs are written (experiments/plots.py); mean_curve against np.interp."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from alexnet.experiments import plots  # noqa: E402


def png_ok(path, size):
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        assert np.asarray(im.convert("L")).std() > 1  # something was drawn


def test_curves_plot(tmp_path):
    x = np.arange(1, 21)
    curves = {v: [(x, np.exp(-x / (3 if v == "relu" else 12)) + 0.01 * s) for s in range(3)]
              for v in ("relu", "tanh")}  # fmt: skip
    png_ok(plots.curves_plot(tmp_path / "fig1.png", curves), (800, 560))


def test_mean_curve_on_common_range():
    a = ([0, 1, 2, 3], [1.0, 0.5, 0.25, 0.0])
    b = ([1, 2.5], [0.7, 0.1])
    gx, gy = plots.mean_curve([a, b], points=4)
    assert gx[0] == 1 and gx[-1] == 2.5  # only where both seeds have data
    ref = (np.interp(gx, *a) + np.interp(gx, *b)) / 2
    assert gy == pytest.approx(ref)


def test_delta_bars(tmp_path):
    comps = [
        {"quantity": "top1_error", "a": "full", "b": "no-lrn", "estimate": -0.012,
         "ci95": [-0.02, -0.004], "paper": -0.014, "kind": "difference"},
        {"quantity": "top5_error", "a": "full", "b": "no-lrn", "estimate": None, "ci95": None,
         "paper": -0.012, "kind": "difference"},
        {"quantity": "steps", "a": "tanh", "b": "relu", "estimate": 5.0, "ci95": [4, 6],
         "paper": 6.0, "kind": "ratio"},
    ]  # fmt: skip
    png_ok(plots.delta_bars(tmp_path / "deltas.png", comps), (900, 520))


def test_scores_plot(tmp_path):
    rng = np.random.default_rng(0)
    groups = {"tower 1": rng.uniform(0, 0.3, 48), "tower 2": rng.uniform(0.4, 0.9, 48)}
    png_ok(plots.scores_plot(tmp_path / "sub" / "towers.png", groups), (800, 560))
