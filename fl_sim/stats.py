"""Statistics for ranking runs: t-intervals over seeds, paired differences, clustered errors.

One seed ranks nothing: two models trained with the same seed see the same client split,
sampling and data order, so the seed-to-seed spread of a metric is the noise a comparison
must beat. This module holds the few formulas every table, summary and ``fl-sim compare``
uses, so they agree:

- :func:`t_interval`: mean, sample standard deviation and a Student-t confidence interval
  over seeds;
- :func:`paired_difference`: the per-seed difference of two models and its t-interval,
  with a plain-words verdict;
- :func:`welch_difference`: the same for two groups whose seeds do not pair (Welch);
- :func:`clustered_ratio_se`: the standard error of an accuracy (hits / targets) when the
  targets come in clusters (the tokens of one evaluation client are not independent);
- :func:`band`: a mean curve and its pointwise t-interval, for plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no significant difference"


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return arr[np.isfinite(arr)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """Mean, sample sd (ddof = 1) and the two-sided Student-t interval of the mean.

    ``None`` and non-finite values are left out (a seed that did not finish). With fewer
    than two values the spread and interval are ``None``: one seed has no error bar.

    Returns
    -------
    dict
        ``n``, ``mean``, ``sd``, ``sem``, ``ci_low``, ``ci_high``, ``ci_half_width``,
        ``confidence``, ``values``.
    """
    x = _clean(values)
    n = int(x.size)
    out = {"n": n, "mean": float(x.mean()) if n else None, "sd": None, "sem": None,
           "ci_low": None, "ci_high": None, "ci_half_width": None, "confidence": confidence,
           "values": [float(v) for v in x]}
    if n >= 2:
        sd = float(x.std(ddof=1))
        sem = sd / math.sqrt(n)
        half = float(sps.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
        out.update(sd=sd, sem=sem, ci_low=out["mean"] - half, ci_high=out["mean"] + half,
                   ci_half_width=half)
    return out


def verdict(ci_low: float | None, ci_high: float | None, higher_is_better: bool = True) -> str:
    """'better' / 'worse' when the interval of A - B excludes 0, else no significant difference."""
    if ci_low is None or ci_high is None:
        return "not enough seeds for a verdict (n < 2)"
    if ci_low > 0:
        return BETTER if higher_is_better else WORSE
    if ci_high < 0:
        return WORSE if higher_is_better else BETTER
    return NO_DIFFERENCE


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
                      higher_is_better: bool = True) -> dict:
    """A - B seed by seed (``a[i]`` and ``b[i]`` share seed i), with its t-interval.

    The pairing removes what the two models share for a given seed (the evaluation
    clients, the sampled cohorts, the data order), so the interval is usually much
    narrower than the difference of two independent means.

    Returns
    -------
    dict
        :func:`t_interval` of the differences (``differences`` instead of ``values``),
        plus ``p_value`` (two-sided paired t-test, ``None`` below two pairs or with zero
        spread) and ``verdict``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired difference needs as many values in a ({len(a)}) as in b ({len(b)})")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None
             and math.isfinite(x) and math.isfinite(y)]
    diffs = [x - y for x, y in pairs]
    out = t_interval(diffs, confidence)
    out["differences"] = out.pop("values")
    out["p_value"] = None
    if len(diffs) >= 2 and out["sd"]:
        out["p_value"] = float(sps.ttest_rel([p[0] for p in pairs], [p[1] for p in pairs]).pvalue)
    out["verdict"] = verdict(out["ci_low"], out["ci_high"], higher_is_better)
    return out


def welch_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = CONFIDENCE,
                     higher_is_better: bool = True) -> dict:
    """mean(A) - mean(B) for unpaired groups: Welch's t-interval (unequal variances).

    For runs whose seeds do not match one to one (different machines, different seed
    lists). Needs two values per group; otherwise the interval is ``None``.
    """
    x, y = _clean(a), _clean(b)
    out = {"n_a": int(x.size), "n_b": int(y.size), "confidence": confidence,
           "mean": float(x.mean() - y.mean()) if x.size and y.size else None,
           "ci_low": None, "ci_high": None, "ci_half_width": None, "df": None, "p_value": None}
    if x.size >= 2 and y.size >= 2:
        va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
        se = math.sqrt(va + vb)
        if se > 0:
            df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
            half = float(sps.t.ppf(0.5 + confidence / 2, df)) * se
            out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half, ci_half_width=half,
                       df=float(df), p_value=float(sps.ttest_ind(x, y, equal_var=False).pvalue))
    out["verdict"] = verdict(out["ci_low"], out["ci_high"], higher_is_better)
    return out


def format_difference(label_a: str, label_b: str, d: dict, fmt: str = ".4f") -> str:
    """'SI-CIFG − CIFG: +0.0120 ± 0.0060 (95% CI, n = 3): better'."""
    n = d.get("n", min(d.get("n_a", 0), d.get("n_b", 0)))
    if d.get("mean") is None:
        return f"{label_a} − {label_b}: no finished pairs"
    head = f"{label_a} − {label_b}: {d['mean']:+{fmt}}"
    if d.get("ci_half_width") is None:
        return f"{head} (n = {n}): {d['verdict']}"
    pct = f"{100 * d['confidence']:g}%"
    return f"{head} ± {d['ci_half_width']:{fmt}} ({pct} CI, n = {n}): {d['verdict']}"


def format_mean(s: dict, fmt: str = ".4f") -> str:
    """'0.1234 ± 0.0056' (mean ± 95% half-width), or the single value for one seed."""
    if s.get("mean") is None:
        return "-"
    if s.get("ci_half_width") is None:
        return format(s["mean"], fmt)
    return f"{s['mean']:{fmt}} ± {s['ci_half_width']:{fmt}}"


def clustered_ratio_se(hits: Sequence[float], counts: Sequence[float]) -> float | None:
    """Standard error of ``sum(hits) / sum(counts)`` with one cluster per entry.

    ``hits[c]`` and ``counts[c]`` are cluster ``c``'s correct predictions and targets
    (one cluster per evaluation client). This is the cluster-robust (sandwich) standard
    error of the intercept of ``hit ~ 1`` over tokens, with the usual G / (G - 1)
    small-sample factor (CR1, as in Stata and statsmodels)::

        p = H / N,  se = sqrt(G / (G - 1) * sum_c (h_c - p n_c)^2) / N

    Clusters without targets add nothing. ``None`` with fewer than two clusters.
    """
    h = np.asarray(hits, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    keep = n > 0
    h, n = h[keep], n[keep]
    g = h.size
    if g < 2:
        return None
    total = n.sum()
    p = h.sum() / total
    return float(math.sqrt(g / (g - 1) * np.sum((h - p * n) ** 2)) / total)


def band(curves: Sequence[Sequence[float]], confidence: float = CONFIDENCE
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pointwise mean and t-interval of equally long curves (one per seed).

    Returns ``(mean, low, high)``; with one curve ``low`` and ``high`` equal the mean.
    """
    y = np.asarray(curves, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"expected a non-empty [seeds, points] array, got shape {y.shape}")
    mean = y.mean(axis=0)
    if y.shape[0] < 2:
        return mean, mean.copy(), mean.copy()
    half = sps.t.ppf(0.5 + confidence / 2, y.shape[0] - 1) * y.std(axis=0, ddof=1) / math.sqrt(y.shape[0])
    return mean, mean - half, mean + half
