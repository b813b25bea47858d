"""fl_sim.stats against scipy's t-distribution, t-tests and NumPy references."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from fl_sim import stats

# Every reference below computes the same closed-form quantity through a different code
# path (scipy's own interval routines, token-level NumPy sums), so agreement is up to
# float64 rounding of a few dozen operations: rel=1e-9 holds on any CPU.
TOL = 1e-9


def test_t_interval_matches_scipy():
    x = [0.151, 0.162, 0.149, 0.170, 0.158]
    got = stats.t_interval(x)
    lo, hi = sps.t.interval(0.95, df=len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert got["n"] == 5
    assert got["mean"] == pytest.approx(np.mean(x), rel=TOL)
    assert got["sd"] == pytest.approx(np.std(x, ddof=1), rel=TOL)
    assert got["ci_low"] == pytest.approx(lo, rel=TOL) and got["ci_high"] == pytest.approx(hi, rel=TOL)
    assert got["ci_half_width"] == pytest.approx((hi - lo) / 2, rel=TOL)


def test_t_interval_other_confidence_and_missing_values():
    got = stats.t_interval([1.0, None, 2.0, float("nan"), 4.0], confidence=0.9)
    lo, hi = sps.t.interval(0.9, df=2, loc=np.mean([1, 2, 4]), scale=sps.sem([1, 2, 4]))
    assert got["n"] == 3 and got["values"] == [1.0, 2.0, 4.0]
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((lo, hi), rel=TOL)


def test_one_value_has_no_interval():
    got = stats.t_interval([0.2])
    assert got["mean"] == 0.2 and got["sd"] is None and got["ci_low"] is None
    assert stats.t_interval([])["mean"] is None


def test_paired_difference_matches_scipy_ttest_rel():
    a = np.array([0.171, 0.166, 0.180, 0.175])
    b = np.array([0.160, 0.158, 0.171, 0.161])
    got = stats.paired_difference(a, b)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert got["differences"] == pytest.approx(list(a - b), rel=TOL)
    assert got["mean"] == pytest.approx(np.mean(a - b), rel=TOL)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high), rel=TOL)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)
    assert got["verdict"] == "better"


def test_paired_difference_verdicts():
    assert stats.paired_difference([1, 2, 3], [2, 3, 4.5])["verdict"] == "worse"
    assert stats.paired_difference([1, 2, 3], [1.1, 1.9, 3.05])["verdict"] == "no significant difference"
    # Lower is better (perplexity): A below B everywhere is the better model.
    assert stats.paired_difference([90, 95, 97], [100, 104, 108],
                                   higher_is_better=False)["verdict"] == "better"
    one = stats.paired_difference([0.2], [0.1])
    assert one["mean"] == pytest.approx(0.1) and one["ci_low"] is None and "n < 2" in one["verdict"]
    with pytest.raises(ValueError, match="as many values"):
        stats.paired_difference([1, 2], [1])


def test_paired_difference_skips_unfinished_pairs():
    got = stats.paired_difference([0.3, None, 0.5, 0.4], [0.1, 0.2, None, 0.3])
    assert got["n"] == 2 and got["differences"] == pytest.approx([0.2, 0.1])


def test_welch_difference_matches_scipy():
    a = [0.171, 0.166, 0.180, 0.175, 0.169]
    b = [0.150, 0.158, 0.171]
    got = stats.welch_difference(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert got["mean"] == pytest.approx(np.mean(a) - np.mean(b), rel=TOL)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ci.low, ci.high), rel=TOL)
    assert got["df"] == pytest.approx(ref.df, rel=TOL)
    assert got["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)


def test_format_difference_reads_as_the_issue_asks():
    d = {"mean": 0.012, "ci_half_width": 0.006, "confidence": 0.95, "n": 3, "verdict": "better"}
    assert stats.format_difference("SI-CIFG", "CIFG", d, ".3f") == \
        "SI-CIFG − CIFG: +0.012 ± 0.006 (95% CI, n = 3): better"
    assert stats.format_mean({"mean": 0.1, "ci_half_width": None}) == "0.1000"


def _token_level_cluster_se(hits, owner):
    """Cluster-robust (CR1) SE of the intercept of hit ~ 1, from per-token data."""
    x = np.asarray(hits, dtype=np.float64)
    n = x.size
    resid = x - x.mean()
    groups = np.unique(owner)
    meat = sum(resid[owner == g].sum() ** 2 for g in groups)
    g = len(groups)
    # statsmodels' default CR1 factor is G/(G-1) * (N-1)/(N-K); with K = 1 regressor the
    # second factor is 1. Bread (X'X)^-1 = 1/N on both sides.
    return math.sqrt(g / (g - 1) * meat) / n


def test_clustered_se_matches_the_token_level_sandwich():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 60, size=40)
    owner = np.repeat(np.arange(40), sizes)
    p_client = rng.uniform(0.05, 0.3, size=40)   # clients differ: the point of clustering
    hits = rng.random(owner.size) < p_client[owner]
    per_h = np.bincount(owner, weights=hits)
    per_n = np.bincount(owner)
    assert stats.clustered_ratio_se(per_h, per_n) == pytest.approx(
        _token_level_cluster_se(hits, owner), rel=TOL)


def test_clustered_se_with_singleton_clusters_is_the_binomial_se():
    hits = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=float)
    p = hits.mean()
    assert stats.clustered_ratio_se(hits, np.ones_like(hits)) == pytest.approx(
        math.sqrt(p * (1 - p) / (len(hits) - 1)), rel=TOL)
    assert stats.clustered_ratio_se([3.0], [10.0]) is None
    assert stats.clustered_ratio_se([1.0, 2.0, 0.0], [4.0, 5.0, 0.0]) == pytest.approx(
        stats.clustered_ratio_se([1.0, 2.0], [4.0, 5.0]))


def test_clustered_se_agrees_with_a_bootstrap_over_clients():
    rng = np.random.default_rng(1)
    g = 200
    sizes = rng.integers(5, 80, size=g)
    p_client = rng.beta(2, 10, size=g)
    hits = rng.binomial(sizes, p_client).astype(float)
    se = stats.clustered_ratio_se(hits, sizes)
    boot = rng.integers(0, g, size=(20000, g))
    ratios = hits[boot].sum(1) / sizes[boot].sum(1)
    # The bootstrap SD estimates the same linearized SE up to (i) Monte Carlo error,
    # sd/sqrt(2B) ~ 0.5% at B = 20000, (ii) the G/(G-1) factor (0.25% at G = 200) and
    # (iii) the ratio's nonlinearity, O(1/G). 5% covers all three with margin.
    assert ratios.std(ddof=1) == pytest.approx(se, rel=0.05)


def test_band_is_the_pointwise_t_interval():
    curves = [[0.1, 0.2, 0.3], [0.12, 0.18, 0.33], [0.11, 0.21, 0.29]]
    mean, lo, hi = stats.band(curves)
    for j in range(3):
        ref = stats.t_interval([c[j] for c in curves])
        assert (mean[j], lo[j], hi[j]) == pytest.approx((ref["mean"], ref["ci_low"], ref["ci_high"]), rel=TOL)
    m1, l1, h1 = stats.band([[1.0, 2.0]])
    assert list(l1) == list(m1) == list(h1) == [1.0, 2.0]
