"""Small statistics for the benchmarks: rank correlations (scipy, the optional ``bench`` extra), ranks
and spreads.  Pure functions of plain number lists, unit-tested on hand-computed values."""
from __future__ import annotations

import itertools
import math
from typing import Dict, Sequence

import numpy as np

from .errors import CydasError


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - depends on the environment
        raise CydasError("the benchmark statistics need scipy: pip install -e .[bench]") from None
    return stats


def _pair(x: Sequence[float], y: Sequence[float]):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise CydasError(f"rank correlation needs two equal-length lists, got {x.shape} and {y.shape}")
    return x, y


def _finite(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else float("nan")


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """Kendall's tau-b (ties counted as in scipy) and its two-sided p-value; NaN when undefined
    (fewer than 2 items, or a constant list)."""
    x, y = _pair(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"tau": float("nan"), "p": float("nan")}
    r = _scipy_stats().kendalltau(x, y)
    return {"tau": _finite(r.statistic), "p": _finite(r.pvalue)}


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> Dict[str, float]:
    """Spearman's rho (average ranks for ties) and its two-sided p-value; NaN when undefined."""
    x, y = _pair(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p": float("nan")}
    r = _scipy_stats().spearmanr(x, y)
    return {"rho": _finite(r.statistic), "p": _finite(r.pvalue)}


def rank_among(value: float, others: Sequence[float]) -> Dict[str, float]:
    """Where ``value`` stands among ``others`` (higher is better): ``rank`` = 1 + the number of others
    strictly better (1 = best), ``of`` = len(others) + 1, and ``beaten`` = the share of others strictly
    worse plus half the share of ties (a percentile: 1.0 beats them all, 0.5 is the median)."""
    others = np.asarray(others, dtype=np.float64)
    better, worse = int((others > value).sum()), int((others < value).sum())
    ties = len(others) - better - worse
    beaten = (worse + 0.5 * ties) / len(others) if len(others) else float("nan")
    return {"rank": better + 1, "of": len(others) + 1, "beaten": beaten}


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}


def seed_spread(acc: Sequence[Sequence[float]]) -> Dict[str, float]:
    """Seed-to-seed noise of standalone accuracies ``acc[item][seed]`` next to the spread between items.

    ``mean_abs_diff``: mean over items and seed pairs of |acc_a - acc_b|; ``within_std``: root mean of
    the per-item sample variances over seeds (the noise of one training); ``between_std``: sample std
    of the per-item means over seeds (the signal plus the noise left in a mean); ``signal_std``: the
    items' own spread, ``sqrt(max(0, between^2 - within^2 / seeds))`` (one-way random-effects ANOVA);
    ``reliability``: ``signal^2 / between^2``, the share of the seed means' variance that is the items'
    (0: their order is the seeds'; it bounds how well any predictor can rank them)."""
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise CydasError(f"seed spread needs items x seeds with >= 2 seeds, got shape {a.shape}")
    diffs = [abs(row[i] - row[j]) for row in a for i, j in itertools.combinations(range(a.shape[1]), 2)]
    within = float(np.sqrt(a.var(axis=1, ddof=1).mean()))
    between = float(a.mean(axis=1).std(ddof=1)) if len(a) > 1 else 0.0
    signal_var = max(0.0, between ** 2 - within ** 2 / a.shape[1])
    return {"mean_abs_diff": float(np.mean(diffs)), "within_std": within, "between_std": between,
            "signal_std": float(np.sqrt(signal_var)), "reliability": signal_var / between ** 2 if between > 0 else 0.0,
            "items": int(a.shape[0]), "seeds": int(a.shape[1])}


def mean_difference(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    """``mean(b) - mean(a)`` with Welch's t-test (unequal variances) for it: ``diff``, ``t``, ``p``
    (two-sided) and the Welch-Satterthwaite ``df``; t, p and df NaN when undefined (fewer than 2
    values a side, or no variance on either side)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(y.mean() - x.mean()) if x.size and y.size else float("nan")
    nan = {"diff": diff, "t": float("nan"), "p": float("nan"), "df": float("nan")}
    if x.size < 2 or y.size < 2:
        return nan
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if vx + vy == 0:
        return nan
    r = _scipy_stats().ttest_ind(y, x, equal_var=False)
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    return {"diff": diff, "t": _finite(r.statistic), "p": _finite(r.pvalue), "df": float(df)}


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (log-space sums; no scipy): how likely ``k`` or more right
    answers of ``n`` are at chance ``p``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
            + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))
