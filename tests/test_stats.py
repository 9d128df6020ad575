"""The benchmark statistics on fixed numbers, against values worked by hand."""
import math

import pytest

pytest.importorskip("scipy")

from cydas_chain.core import stats  # noqa: E402


def test_one_discordant_pair():
    # x = 1..5, y swaps the last two: of the C(5,2) = 10 pairs only (4,5) is discordant, so
    # tau = (concordant - discordant) / pairs = (9 - 1) / 10 = 0.8.  Rank differences d = 0,0,0,-1,1:
    # rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / (5 * 24) = 0.9.
    x, y = [1, 2, 3, 4, 5], [10, 20, 30, 50, 40]
    assert stats.kendall_tau(x, y)["tau"] == pytest.approx(0.8)
    assert stats.spearman_rho(x, y)["rho"] == pytest.approx(0.9)
    # exact two-sided p of tau = 0.8 with n = 5: permutations with <= 1 discordant pair are 1 + 4 = 5
    # of 120 (the Mahonian numbers 1, 4, ...), doubled for both tails: 10 / 120 = 1/12.
    assert stats.kendall_tau(x, y)["p"] == pytest.approx(1 / 12)


def test_reversed_and_undefined():
    # every pair discordant: tau = -1; d = 4,2,0,-2,-4: rho = 1 - 6 * 40 / 120 = -1
    assert stats.kendall_tau([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])["tau"] == pytest.approx(-1.0)
    assert stats.spearman_rho([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    assert math.isnan(stats.kendall_tau([1, 2, 3], [7, 7, 7])["tau"])  # a constant list ranks nothing
    assert math.isnan(stats.spearman_rho([1], [2])["rho"])


def test_rank_among():
    # 97.0 among 95, 98, 96, 97.5: two are better (98, 97.5), so rank 3 of 5; it beats 2 of 4 = 0.5
    r = stats.rank_among(97.0, [95, 98, 96, 97.5])
    assert (r["rank"], r["of"], r["beaten"]) == (3, 5, 0.5)
    # a tie counts half: 96 among 96, 95, 99 beats 1 + 0.5 of 3
    r = stats.rank_among(96.0, [96, 95, 99])
    assert (r["rank"], r["of"]) == (2, 4) and r["beaten"] == pytest.approx(0.5)
    assert stats.rank_among(100.0, [1, 2])["rank"] == 1


def test_mean_std_and_seed_spread():
    # mean of 1, 2, 3 is 2; sample std sqrt(((1)^2 + 0 + 1^2) / 2) = 1
    assert stats.mean_std([1, 2, 3]) == {"mean": 2.0, "std": 1.0, "n": 3}
    # items (90, 92) and (95, 94): |diffs| 2 and 1 -> 1.5; per-item variances 2 and 0.5 -> within
    # sqrt(1.25); item means 91 and 94.5 -> between std |94.5 - 91| / sqrt(2)
    s = stats.seed_spread([[90, 92], [95, 94]])
    assert s["mean_abs_diff"] == pytest.approx(1.5)
    assert s["within_std"] == pytest.approx(math.sqrt(1.25))
    assert s["between_std"] == pytest.approx(3.5 / math.sqrt(2))
    # signal: between^2 - within^2 / 2 = 6.125 - 0.625 = 5.5 of the means' variance 6.125
    assert s["signal_std"] == pytest.approx(math.sqrt(5.5)) and s["reliability"] == pytest.approx(5.5 / 6.125)
    flat = stats.seed_spread([[90, 92], [92, 90]])  # same means: all of it is seed noise
    assert flat["signal_std"] == 0.0 and flat["reliability"] == 0.0


def test_mean_difference_welch():
    # a = 1, 2, 3 (mean 2, variance 1), b = 4, 6, 8 (mean 6, variance 4): diff 4, squared standard
    # error 1/3 + 4/3 = 5/3, t = 4 / sqrt(5/3); Welch-Satterthwaite df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    d = stats.mean_difference([1, 2, 3], [4, 6, 8])
    assert d["diff"] == pytest.approx(4.0) and d["t"] == pytest.approx(4 / math.sqrt(5 / 3))
    assert d["df"] == pytest.approx(50 / 17)
    from scipy.stats import t as student_t
    assert d["p"] == pytest.approx(2 * student_t.sf(4 / math.sqrt(5 / 3), 50 / 17))
    assert 0.04 < d["p"] < 0.07  # t 3.10 on ~2.9 df: between the 5% (3.18 at df 3) and 10% points
    assert stats.mean_difference([4, 6, 8], [1, 2, 3])["t"] == pytest.approx(-d["t"])  # b - a: the sign flips
    undefined = stats.mean_difference([1, 1], [2, 2])  # no variance on either side
    assert undefined["diff"] == 1.0 and math.isnan(undefined["p"])
    assert math.isnan(stats.mean_difference([1], [2, 3])["t"])


def test_binomial_upper_tail_by_hand():
    from cydas_chain.core.stats import binomial_upper_tail

    assert binomial_upper_tail(2, 2, 0.5) == pytest.approx(0.25)
    assert binomial_upper_tail(1, 3, 0.5) == pytest.approx(7 / 8)
    assert binomial_upper_tail(0, 5, 0.1) == 1.0 and binomial_upper_tail(6, 5, 0.1) == 0.0
    # 3 or more right of 10 at chance 0.1: 1 - (P0 + P1 + P2)
    exact = 1 - sum(math.comb(10, i) * 0.1 ** i * 0.9 ** (10 - i) for i in range(3))
    assert binomial_upper_tail(3, 10, 0.1) == pytest.approx(exact, rel=1e-12)
    assert binomial_upper_tail(200, 1000, 0.1) < 1e-20  # far above chance
