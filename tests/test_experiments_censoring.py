"""Right-censored runs (a threshold not reached within the budget) are data, never dropped:
the sign test against scipy's binomial test, the one-sided intervals, summaries that keep n,
the table's ">=", and relu-tanh's measurement of a run that does not reach 10%."""

import json

import numpy as np
import pytest

from alexnet.experiments import relu_tanh, stats
from alexnet.experiments import result as R
from alexnet.experiments.runner import Context
from alexnet.train.config import make_config

sps = pytest.importorskip("scipy.stats")  # the independent reference (a dev dependency)

BUDGET = 900.0  # steps: the value of a censored run


def rows():
    """relu-tanh's committed quick result (steps to 10%): tanh seed 2 never got there."""
    relu = [838.33, 678.5, 656.0]
    tanh = [590.0, 777.5, None]
    out = []
    for seed, (r, t) in enumerate(zip(relu, tanh)):
        out.append(R.run_row("relu", seed, f"runs/relu-seed{seed}", steps_to_10=r))
        censored = ["steps_to_10"] if t is None else []
        out.append(R.run_row("tanh", seed, f"runs/tanh-seed{seed}", censored=censored,
                             steps_to_10=BUDGET if t is None else t))  # fmt: skip
    return out


@pytest.mark.parametrize("greater,less", [(4, 1), (5, 0), (2, 3), (0, 0), (3, 3)])
@pytest.mark.parametrize("direction", ["greater", "less", "differ"])
def test_sign_test_matches_scipy_binomtest(greater, less, direction):
    a = [2.0] * greater + [0.0] * less + [1.0]  # one tie, left out
    b = [1.0] * (greater + less + 1)
    t = stats.paired_sign_test(a, b, [False] * len(a), [False] * len(a), direction)
    assert [t[k] for k in ("greater", "less", "ties", "unknown")] == [greater, less, 1, 0]
    n = greater + less
    alternative = {"greater": "greater", "less": "less", "differ": "two-sided"}[direction]
    # scipy tests the count of a > b; "less" is the count of a < b being large
    ref = 1.0 if n == 0 else sps.binomtest(greater, n, 0.5, alternative=alternative).pvalue
    assert t["p_value"] == pytest.approx(ref, rel=1e-12)


def test_sign_test_orders_censored_pairs_it_can():
    # a censored at 900 (true >= 900) beats b = 700; against b = 950 (observed) the order is
    # unknown; both censored: unknown; b censored at 900 against a = 500: a < b
    t = stats.paired_sign_test([900, 900, 900, 500], [700, 950, 900, 900],
                               [True, True, True, False], [False, False, True, True])  # fmt: skip
    assert [t[k] for k in ("greater", "less", "ties", "unknown")] == [1, 1, 0, 2]


def test_censored_interval_opens_the_unknown_side():
    assert stats.censored_interval((0.7, 1.2), True, False) == [0.7, None]
    assert stats.censored_interval((0.7, 1.2), False, True) == [None, 1.2]
    assert stats.censored_interval((0.7, 1.2), True, True) == [None, None]
    assert stats.reproduced([1.1, None], "greater", 1.0) is True  # lower bound above 1
    assert stats.reproduced([None, 1.2], "greater", 1.0) is False  # unbounded below
    assert stats.reproduced([None, 0.9], "less", 1.0) is True


def test_summary_keeps_every_seed_and_marks_the_bound(tmp_path):
    runs = rows()
    (tanh,) = [s for s in R.summarize(runs) if s["variant"] == "tanh"]
    values = [590.0, 777.5, BUDGET]
    lo, _ = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert tanh["n"] == 3 and tanh["censored"] == 1  # never n = 2
    assert tanh["mean"] == pytest.approx(np.mean(values))  # a lower bound of the mean
    assert tanh["ci95"][0] == pytest.approx(lo) and tanh["ci95"][1] is None

    c = R.compare(runs, "steps_to_10", "tanh", "relu", relu_tanh.CLAIM)  # a ratio, "greater"
    relu = [838.33, 678.5, 656.0]
    assert c["n"] == 3 and c["censored"] == {"a": 1, "b": 0}
    assert c["estimate"] == pytest.approx(np.mean(values) / np.mean(relu))
    assert c["estimate_bound"] == "lower" and c["ci95"][1] is None
    # the lower end: the paired percentile bootstrap of the values at the bound
    idx = np.random.default_rng(stats.SEED).integers(0, 3, (stats.RESAMPLES, 3))
    boot = np.asarray(values)[idx].mean(1) / np.asarray(relu)[idx].mean(1)
    assert c["ci95"][0] == pytest.approx(np.percentile(boot, 2.5))
    assert c["reproduced"] is False  # the lower bound of tanh / relu is below 1
    # tanh slower in seed 1 (777.5 vs 678.5) and seed 2 (>= 900 vs 656), faster in seed 0
    assert c["sign_test"]["greater"] == 2 and c["sign_test"]["less"] == 1
    assert c["sign_test"]["p_value"] == pytest.approx(sps.binomtest(2, 3, 0.5, "greater").pvalue)

    res = Context("relu-tanh", None, tmp_path).finish(relu_tanh.CLAIM, runs, [c], [])
    assert json.loads((tmp_path / "result.json").read_text())["summary"] == R.summarize(runs)
    table = R.table_markdown(res)
    assert "| tanh | steps_to_10 | 3, 1 censored | >= 755.8 | [" in table
    assert ">= 1.04x" in table and ", +inf)" in table
    assert "1 value(s) of tanh and 0 of relu are lower bounds" in table


def test_censored_on_both_sides_is_not_testable():
    runs = rows() + [R.run_row("relu", 3, "r3", censored=["steps_to_10"], steps_to_10=BUDGET),
                     R.run_row("tanh", 3, "t3", steps_to_10=400.0)]  # fmt: skip
    c = R.compare(runs, "steps_to_10", "tanh", "relu", relu_tanh.CLAIM)  # a ratio, "greater"
    assert c["ci95"] == [None, None] and c["reproduced"] is None and "no bound" in c["note"]


def test_a_run_that_never_reaches_a_threshold_is_censored_at_its_steps():
    cfg = make_config("paper", max_steps=40, log_every=10)
    # training error 0.5, 0.3, 0.2, 0.15: 25% is crossed between steps 20 and 30, 10% never
    records = [{"step": 10 * (i + 1), "epoch": i, "train_top1_error": e, "time": i}
               for i, e in enumerate([0.5, 0.3, 0.2, 0.15])]  # fmt: skip
    measured, censored = relu_tanh.measure(records, cfg)
    assert measured["steps_to_25"] == pytest.approx(20 + 10 * (0.3 - 0.25) / (0.3 - 0.2))
    assert censored == ["steps_to_10"] and measured["steps_to_10"] == 40.0
    assert "seconds_to_10" not in measured  # wall-clock seconds measure the load, not the net
    row = R.run_row("tanh", 0, "r", censored=censored, **measured)
    assert R.is_censored(row, "steps_to_10") and not R.is_censored(row, "steps_to_25")
    with pytest.raises(ValueError, match="bound"):
        R.run_row("tanh", 0, "r", censored=["steps_to_10"], steps_to_10=None)
