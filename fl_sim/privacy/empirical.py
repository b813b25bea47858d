"""The one-shot empirical epsilon estimate of Andrew et al. 2024 from canary cosines.

Andrew, Kairouz, Oh, Oprea, McMahan, Suriyakumar, "One-shot Empirical Privacy Estimation
for Federated Learning" (ICLR 2024). A run inserts ``k`` canary clients, each with a fixed
random unit direction; afterwards the cosine between each canary's direction and the final
model change is the test statistic. The cosine of a direction that was never inserted with
any fixed vector in ``d`` dimensions is asymptotically ``N(0, 1/d)`` (the paper's Sec. 4;
exact for a uniform direction up to O(1/d) in the variance), so that is the null
distribution. The cosines of the inserted canaries are fitted with a Gaussian
``N(mu, sigma^2)`` (sample mean and standard deviation), and the estimate is the epsilon,
at the run's delta, of the pair of Gaussians: the smallest ``eps >= 0`` with

    max(H_eps(P || Q), H_eps(Q || P)) <= delta,   H_eps(P || Q) = sup_S P(S) - e^eps Q(S),

i.e. the best of all tests between them (the likelihood-ratio sets, which for two
Gaussians of unequal variances are an interval or its complement, and a threshold when
the variances are equal). This is the paper's estimator for the final-model threat model.

Its confidence: the fitted (mu, sigma) come from ``k`` samples, so :func:`bootstrap`
resamples the inserted canaries with replacement and reports a percentile interval of the
estimate. That interval is about the estimator's sampling error only; the estimate itself
is a diagnostic of one run against one adversary (who knows the canary directions and sees
the final model), not a bound that holds with any stated probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

#: Estimates above this are reported as the cap (the Gaussians are then so far apart that
#: the exact value only says "nothing is private": z = 0 gives hundreds or infinity).
EPSILON_CAP = 100.0


@dataclass(frozen=True)
class Gaussian:
    mean: float
    std: float

    def __post_init__(self):
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"a Gaussian needs a finite mean and std > 0, got {self}")


def _log_mass(g: Gaussian, lo: float, hi: float) -> float:
    """``log P(lo < X < hi)`` for ``X ~ g`` (``lo`` may be -inf, ``hi`` +inf), stable in
    both tails: each side is computed from the tail it lies in."""
    a, b = (lo - g.mean) / g.std, (hi - g.mean) / g.std
    if a >= b:
        return -math.inf
    if a > 0:  # both in the upper tail: P(X > a) - P(X > b), from the sf side
        a, b = -b, -a
    la, lb = special.log_ndtr(a), special.log_ndtr(b)  # P(Z < b) - P(Z < a)
    if la == -math.inf:
        return float(lb)
    return float(lb + np.log1p(-np.exp(la - lb)))


def log_hockey_stick(p: Gaussian, q: Gaussian, eps: float) -> float:
    """``log H_eps(P || Q)``: ``log sup_S (P(S) - e^eps Q(S))`` (-inf when it is 0).

    The sup is attained on ``S = {x : log p(x) / q(x) > eps}``, and the log likelihood
    ratio of two Gaussians is the quadratic ``A x^2 + B x + C``.
    """
    A = 0.5 / q.std ** 2 - 0.5 / p.std ** 2
    B = p.mean / p.std ** 2 - q.mean / q.std ** 2
    C = (math.log(q.std / p.std) - 0.5 * (p.mean / p.std) ** 2 + 0.5 * (q.mean / q.std) ** 2
         - eps)
    if A == 0.0:
        if B == 0.0:
            return -math.inf  # the same distribution: P(S) - e^eps Q(S) <= 0
        t = -C / B
        sets = [(t, math.inf)] if B > 0 else [(-math.inf, t)]
    else:
        disc = B * B - 4.0 * A * C
        if disc <= 0.0:
            return -math.inf  # S is empty (A < 0) or everything (A > 0): H = max(0, 1 - e^eps)
        r = math.sqrt(disc)
        x1, x2 = sorted(((-B - r) / (2 * A), (-B + r) / (2 * A)))
        sets = [(x1, x2)] if A < 0 else [(-math.inf, x1), (x2, math.inf)]
    lp = special.logsumexp([_log_mass(p, lo, hi) for lo, hi in sets])
    lq = special.logsumexp([_log_mass(q, lo, hi) for lo, hi in sets])
    if lp == -math.inf:
        return -math.inf
    gap = eps + lq - lp  # H = P(S) (1 - e^(eps + log Q(S) - log P(S)))
    if gap >= 0:
        return -math.inf
    return float(lp + np.log1p(-np.exp(gap)))


def epsilon_two_gaussians(p: Gaussian, q: Gaussian, delta: float,
                          cap: float = EPSILON_CAP) -> float:
    """The epsilon of distinguishing ``p`` from ``q`` at ``delta`` (both directions), or
    ``cap`` when it is at least ``cap``."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    log_delta = math.log(delta)

    def excess(eps: float) -> float:  # decreasing in eps; its root is the answer
        return max(log_hockey_stick(p, q, eps), log_hockey_stick(q, p, eps)) - log_delta

    if excess(0.0) <= 0:
        return 0.0
    if excess(cap) > 0:
        return float(cap)
    # -inf values (H = 0) are finite for brentq's sign test only if replaced: H = 0 < delta.
    return float(optimize.brentq(lambda e: max(excess(e), -1e3), 0.0, cap, xtol=1e-10,
                                 rtol=1e-10))


def null_distribution(dim: int) -> Gaussian:
    """``N(0, 1/d)``: the cosine of a never-inserted random direction with the model change."""
    if dim < 2:
        raise ValueError(f"dimension must be >= 2, got {dim}")
    return Gaussian(0.0, dim ** -0.5)


def fit(cosines) -> Gaussian:
    """The Gaussian fit of the paper: sample mean and (unbiased) standard deviation."""
    x = np.asarray(cosines, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"fitting a Gaussian needs >= 2 cosines, got {x.size}")
    return Gaussian(float(x.mean()), float(x.std(ddof=1)))


def estimate(observed, dim: int, delta: float, cap: float = EPSILON_CAP) -> float:
    """epsilon_emp from the inserted canaries' cosines in a model of ``dim`` parameters
    (``cap`` when they have no spread at all: a point mass is infinitely far from the null)."""
    x = np.asarray(observed, dtype=np.float64)
    if x.size >= 2 and not x.std(ddof=1) > 0:
        return float(cap)
    return epsilon_two_gaussians(fit(x), null_distribution(dim), delta, cap)


def bootstrap(observed, dim: int, delta: float, generator: np.random.Generator,
              resamples: int = 1000, level: float = 0.95, cap: float = EPSILON_CAP
              ) -> tuple[float, float]:
    """Percentile interval of :func:`estimate` over ``resamples`` resamplings (with
    replacement) of the inserted canaries."""
    x = np.asarray(observed, dtype=np.float64)
    null = null_distribution(dim)
    values = []
    for _ in range(resamples):
        s = x[generator.integers(0, x.size, size=x.size)]
        sd = s.std(ddof=1)
        if not sd > 0:  # every draw the same canary: no spread to fit
            values.append(cap)
            continue
        values.append(epsilon_two_gaussians(Gaussian(float(s.mean()), float(sd)), null, delta, cap))
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
