"""Statistics over seeds (one value per run): an `Estimate` with its 95% interval (None for
n = 1). Differences pair by seed (t interval; Welch's unpaired), ratios of means use a
percentile bootstrap seeded with SEED (reproducible to the bit). Student's t is computed here
(incomplete beta): no scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, NamedTuple

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0
DIRECTIONS = ("less", "greater", "differ")


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its 95% interval (None when n < 2), n values and the method."""

    estimate: float
    ci95: tuple[float, float] | None
    n: int
    method: str

    def to_json(self) -> dict[str, Any]:
        ci = None if self.ci95 is None else [float(self.ci95[0]), float(self.ci95[1])]
        return {"estimate": float(self.estimate), "ci95": ci, "n": self.n, "method": self.method}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (real, > 0) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (bisection on `t_cdf`)."""
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _values(values: Sequence[float], name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name}: no values")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: every value must be finite, got {x.tolist()}")
    return x


def _pairs(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal counts, got {x.size} and {y.size}")
    return x, y


def _t_interval(x: np.ndarray, method: str) -> Estimate:
    mean, n = float(x.mean()), int(x.size)
    if n < 2:
        return Estimate(mean, None, n, method)
    half = t_quantile(0.5 + LEVEL / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(mean, (mean - half, mean + half), n, method)


def mean_ci(values: Sequence[float]) -> Estimate:
    """Mean of one value per seed and its Student t 95% interval."""
    return _t_interval(_values(values), "t")


def paired_diff_ci(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a_i - b_i) over seeds i, t interval of the differences."""
    x, y = _pairs(a, b)
    return _t_interval(x - y, "paired t")


def welch_diff_ci(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b), Welch's t interval (None unless both have n >= 2); n = len(a) + len(b)."""
    x, y = _values(a, "a"), _values(b, "b")
    diff, n = float(x.mean() - y.mean()), int(x.size + y.size)
    if x.size < 2 or y.size < 2:
        return Estimate(diff, None, n, "welch t")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Estimate(diff, (diff, diff), n, "welch t")
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = t_quantile(0.5 + LEVEL / 2, df) * se
    return Estimate(diff, (diff - half, diff + half), n, "welch t")


def _bootstrap(a: Sequence[float], b: Sequence[float], paired: bool) -> Estimate:
    """mean(a) / mean(b) and its percentile bootstrap interval: the seeds resampled with their
    pairs (`paired`), else a and b independently."""
    x, y = _pairs(a, b) if paired else (_values(a, "a"), _values(b, "b"))
    if np.any(y <= 0):
        raise ValueError(f"b: a ratio of means needs positive values, got {y.tolist()}")
    ratio = float(x.mean() / y.mean())
    n, method = (x.size, "paired bootstrap") if paired else (x.size + y.size, "bootstrap")
    if x.size < 2 or y.size < 2:
        return Estimate(ratio, None, int(n), method)
    rng = np.random.default_rng(SEED)
    xi = rng.integers(0, x.size, (RESAMPLES, x.size))
    yi = xi if paired else rng.integers(0, y.size, (RESAMPLES, y.size))
    lo, hi = np.percentile(x[xi].mean(1) / y[yi].mean(1), [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return Estimate(ratio, (float(lo), float(hi)), int(n), method)


def ratio_ci(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) / mean(b), percentile bootstrap with a and b resampled independently."""
    return _bootstrap(a, b, paired=False)


def paired_ratio_ci(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) / mean(b), paired percentile bootstrap (seeds resampled with their pairs)."""
    return _bootstrap(a, b, paired=True)


def censored_interval(
    ci: tuple[float, float] | None, a_censored: bool, b_censored: bool
) -> list[float | None] | None:
    """The interval of a - b (or a / b) with right-censored values: a larger true a can only
    raise the estimate (the upper end becomes None), a larger true b only lower it."""
    if ci is None:
        return None
    lo, hi = float(ci[0]), float(ci[1])
    return [None if b_censored else lo, None if a_censored else hi]


def _binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2.0**n


def paired_sign_test(
    a: Sequence[float],
    b: Sequence[float],
    a_censored: Sequence[bool],
    b_censored: Sequence[bool],
    direction: str = "greater",
) -> dict[str, Any]:
    """Exact sign test of a_i against b_i with right-censored values (true value >= bound): the
    pairs with a > b, a < b, tied, of unknown order, and the binomial p-value (one-sided in
    `direction`, two-sided for "differ") over the pairs whose order is known and not tied."""
    greater = less = ties = unknown = 0
    for x, y, cx, cy in zip(a, b, a_censored, b_censored, strict=True):
        if cx and cy or (cx and y > x) or (cy and x > y):
            unknown += 1
        elif cx or cy:
            greater, less = greater + cx, less + cy
        else:
            greater, less, ties = greater + (x > y), less + (x < y), ties + (x == y)
    n = greater + less
    if direction == "differ":
        p = min(1.0, 2.0 * _binomial_tail(max(greater, less), n))
    else:
        p = _binomial_tail(greater if direction == "greater" else less, n)
    counts = dict(greater=greater, less=less, ties=ties, unknown=unknown)
    return {**counts, "p_value": float(p), "direction": direction}


def reproduced(ci: Sequence[float | None] | None, direction: str, null: float = 0.0) -> bool | None:
    """Does the whole interval lie on the `direction` side ("less", "greater", "differ": either)
    of `null`? None without an interval; an end None is unbounded."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if ci is None:
        return None
    lo = -math.inf if ci[0] is None else float(ci[0])
    hi = math.inf if ci[1] is None else float(ci[1])
    return {"less": hi < null, "greater": lo > null, "differ": hi < null or lo > null}[direction]


class Permutation(NamedTuple):
    """Two-sided permutation test of mean(a) - mean(b)."""

    difference: float
    p_value: float
    method: str


def permutation_test(a: Sequence[float], b: Sequence[float]) -> Permutation:
    """Exact (every split of the pooled values) up to RESAMPLES splits, else RESAMPLES random
    ones; scipy.stats.permutation_test's conventions (two-sided: twice the smaller tail, ties
    within 100 eps, p = (count + 1) / (RESAMPLES + 1) when random)."""
    x, y = _values(a, "a"), _values(b, "b")
    pooled, na, nb = np.concatenate([x, y]), x.size, y.size
    observed = x.mean() - y.mean()
    if math.comb(na + nb, na) <= RESAMPLES:
        groups = np.array(list(combinations(range(na + nb), na)))
        method, adjust = "exact permutation", 0
    else:
        perm = np.random.default_rng(SEED).permuted(
            np.tile(np.arange(na + nb), (RESAMPLES, 1)), axis=1
        )
        groups, method, adjust = perm[:, :na], f"permutation ({RESAMPLES} resamples)", 1
    sa = pooled[groups].sum(1)
    null = sa / na - (pooled.sum() - sa) / nb
    gamma = abs(observed) * 100 * np.finfo(np.float64).eps
    less = (np.count_nonzero(null <= observed + gamma) + adjust) / (null.size + adjust)
    greater = (np.count_nonzero(null >= observed - gamma) + adjust) / (null.size + adjust)
    return Permutation(float(observed), float(min(1.0, 2.0 * min(less, greater))), method)
