"""Intervals over seeds against scipy.stats on fixed numbers (experiments/stats.py)."""

import numpy as np
import pytest

from alexnet.experiments import stats

sps = pytest.importorskip("scipy.stats")  # the independent reference (a dev dependency)

A = [0.412, 0.398, 0.431, 0.405, 0.420]
B = [0.428, 0.409, 0.440, 0.425, 0.433]


@pytest.mark.parametrize("df", [1, 2, 3.7, 4, 9, 29, 200])
@pytest.mark.parametrize("p", [0.975, 0.5, 0.9, 0.025, 0.999])
def test_t_quantile_matches_scipy(p, df):
    assert stats.t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-12)
    assert stats.t_cdf(1.3, df) == pytest.approx(sps.t.cdf(1.3, df), rel=1e-10)


def test_mean_ci_matches_scipy():
    e = stats.mean_ci(A)
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert e.estimate == pytest.approx(np.mean(A))
    assert e.ci95 == pytest.approx((lo, hi), rel=1e-9)
    assert e.n == 5


def test_paired_diff_matches_scipy_ttest_rel():
    e = stats.paired_diff_ci(A, B)
    ref = sps.ttest_rel(A, B).confidence_interval(0.95)
    assert e.estimate == pytest.approx(np.mean(np.subtract(A, B)))
    assert e.ci95 == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert e.ci95[1] < 0  # B is higher on every seed: the paired interval excludes 0
    assert stats.reproduced(e.ci95, "less") is True


def test_welch_matches_scipy():
    b = B[:4] + [0.5, 0.39]  # unequal sizes and variances
    e = stats.welch_diff_ci(A, b)
    ref = sps.ttest_ind(A, b, equal_var=False).confidence_interval(0.95)
    assert e.estimate == pytest.approx(np.mean(A) - np.mean(b))
    assert e.ci95 == pytest.approx((ref.low, ref.high), rel=1e-9)
    assert e.n == 11


def test_paired_beats_unpaired_when_seeds_share_noise():
    seed_noise = np.array([0.03, -0.02, 0.05, -0.04, 0.01])
    a, b = 0.40 + seed_noise, 0.41 + seed_noise + [0.001, -0.001, 0.0, 0.001, -0.001]
    paired, welch = stats.paired_diff_ci(a, b), stats.welch_diff_ci(a, b)
    assert paired.ci95[1] < 0 < welch.ci95[1]


def test_identical_variants_contain_zero():
    paired = stats.paired_diff_ci(A, A)
    assert paired.ci95[0] <= 0 <= paired.ci95[1]
    assert stats.reproduced(paired.ci95, "less") is False
    ratio = stats.paired_ratio_ci(A, A)
    assert ratio.ci95[0] <= 1 <= ratio.ci95[1]
    assert stats.reproduced(stats.welch_diff_ci(A, A).ci95, "differ") is False


def test_single_seed_gives_no_interval():
    assert stats.mean_ci([0.3]).ci95 is None
    assert stats.paired_diff_ci([0.3], [0.4]).ci95 is None
    assert stats.welch_diff_ci([0.3], [0.4, 0.5]).ci95 is None
    assert stats.ratio_ci([3.0], [1.0]).ci95 is None
    assert stats.paired_ratio_ci([3.0], [1.0]).estimate == 3.0
    assert stats.reproduced(None, "greater", 1.0) is None


def test_ratio_bootstrap_against_a_float64_reference():
    a, b = [6.1, 5.2, 7.3, 6.0], [1.0, 1.1, 0.9, 1.2]
    e = stats.ratio_ci(a, b)
    assert e.estimate == pytest.approx(np.mean(a) / np.mean(b))
    rng = np.random.default_rng(stats.SEED)  # the documented recipe, written out again
    xa = np.asarray(a)[rng.integers(0, 4, (stats.RESAMPLES, 4))].mean(1)
    yb = np.asarray(b)[rng.integers(0, 4, (stats.RESAMPLES, 4))].mean(1)
    assert e.ci95 == pytest.approx(tuple(np.percentile(xa / yb, [2.5, 97.5])))
    lo, hi = e.ci95
    assert min(a) / max(b) <= lo < e.estimate < hi <= max(a) / min(b)
    assert stats.reproduced(e.ci95, "greater", null=1.0) is True


def test_paired_ratio_agrees_with_scipy_bootstrap():
    a, b = np.array([6.1, 5.2, 7.3, 6.0, 6.6]), np.array([1.0, 1.1, 0.9, 1.2, 1.05])
    e = stats.paired_ratio_ci(a, b)
    ref = sps.bootstrap(
        (a, b), lambda x, y: x.mean() / y.mean(), paired=True, vectorized=False,
        method="percentile", n_resamples=4000, rng=np.random.default_rng(1),
    ).confidence_interval  # fmt: skip
    assert e.ci95 == pytest.approx((ref.low, ref.high), rel=0.03)


def test_bad_inputs():
    with pytest.raises(ValueError):
        stats.paired_diff_ci([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        stats.mean_ci([])
    with pytest.raises(ValueError):
        stats.mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError):
        stats.reproduced((0, 1), "sideways")


def test_reproduced_directions():
    assert stats.reproduced((-0.02, -0.01), "less") is True
    assert stats.reproduced((-0.02, 0.01), "less") is False
    assert stats.reproduced((1.5, 9.0), "greater", 1.0) is True
    assert stats.reproduced((0.5, 0.9), "differ", 1.0) is True
    assert stats.reproduced((0.5, 1.1), "differ", 1.0) is False
