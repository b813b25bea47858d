"""Adaptive clipping: track a quantile of the update norms privately (Andrew et al. 2021).

Galen Andrew, Om Thakkar, H. Brendan McMahan, Swaroop Ramaswamy, "Differentially
Private Learning with Adaptive Clipping", NeurIPS 2021 (arXiv:1905.03871), Algorithm 1
with the geometric update. Each round, with the current clip ``C`` and ``m`` the
expected cohort size:

    b_i  = 1[ ||Delta_i|| <= C ]                         (client i was not clipped)
    b~   = clamp( (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2 , 0, 1 )
    C   <- C * exp( -eta * (b~ - gamma) )

``gamma`` is the target unclipped quantile (default 0.5, the median), ``eta`` the clip
learning rate (0.2) and ``sigma_b`` the count noise (``m / 20``); ``C`` starts at 0.1.
This follows tensorflow-privacy 0.9's ``QuantileEstimatorQuery`` exactly: a norm equal
to ``C`` counts as unclipped ("below"), and each indicator is shifted by -1/2 before
summing so that one client changes the count by at most 1/2 (sensitivity 1/2, so the
count is a Gaussian mechanism with noise multiplier ``2 sigma_b``). When every one of the
``m`` expected clients reports, ``b~ = (sum_i b_i + N(0, sigma_b^2)) / m`` as in the
paper; when ``n != m`` clients report the shift adds ``(1 - n/m) / 2``, as TF-privacy does.

Noise-budget split (Andrew et al. 2021, Section 3.1; TFF's
``adaptive_clip_noise_params``, used by ``DifferentiallyPrivateFactory.gaussian_adaptive``):
the round runs two Gaussian mechanisms on the same clients, the sum with multiplier
``z_Delta`` and the count with multiplier ``2 sigma_b``. Their composition is exactly one
Gaussian mechanism with ``z^-2 = z_Delta^-2 + (2 sigma_b)^-2`` (Mironov 2017; Dong et al.
2019), so to spend the budget of a single Gaussian with the requested ``z`` the update gets

    z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2),   which needs  z < 2 sigma_b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def default_clipped_count_stddev(expected_cohort: float) -> float:
    """``m / 20``: Andrew et al.'s (and TFF's) default count noise."""
    return 0.05 * float(expected_cohort)


def resolve_clipped_count_stddev(noise_multiplier: float, expected_cohort: float,
                                 clipped_count_stddev: float | None) -> float:
    """The count noise to use: ``None`` means ``m / 20``, or 0 when ``z == 0`` (as TFF).

    ``PrivacyConfig.clipped_count_stddev == 0`` should be passed as ``None``.
    """
    if clipped_count_stddev is None:
        return default_clipped_count_stddev(expected_cohort) if noise_multiplier > 0 else 0.0
    if clipped_count_stddev < 0:
        raise ValueError(f"clipped_count_stddev must be >= 0, got {clipped_count_stddev}")
    return float(clipped_count_stddev)


def split_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """Noise multiplier ``z_Delta`` for the update so that the round is as private as
    one Gaussian mechanism with multiplier ``noise_multiplier``.

    ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` (Andrew et al. 2021; TFF
    ``adaptive_clip_noise_params``). ``z == 0`` gives 0 (no privacy, no noise).

    Raises
    ------
    ValueError
        If ``z >= 2 sigma_b``: the count alone would already spend the whole budget.
    """
    z = float(noise_multiplier)
    if z < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {z}")
    if z == 0:
        return 0.0
    sb = float(clipped_count_stddev)
    if 2 * sb <= z:
        raise ValueError(
            f"clipped_count_stddev = {sb} is too small for noise_multiplier = {z}: adaptive "
            f"clipping needs 2 * clipped_count_stddev > noise_multiplier (here > {z / 2:g}). "
            f"Raise privacy.clipped_count_stddev (0 means expected cohort / 20), use a "
            f"larger cohort, or lower the noise multiplier.")
    return (z ** -2 - (2 * sb) ** -2) ** -0.5


def effective_noise_multiplier(update_noise_multiplier: float,
                               clipped_count_stddev: float) -> float:
    """Inverse of :func:`split_noise_multiplier`: ``(z_Delta^-2 + (2 sigma_b)^-2)^(-1/2)``."""
    zd, sb = float(update_noise_multiplier), float(clipped_count_stddev)
    if zd == 0 or sb == 0:
        return 0.0
    return (zd ** -2 + (2 * sb) ** -2) ** -0.5


@dataclass
class QuantileClipEstimator:
    """Geometric private quantile tracking of update norms (Andrew et al. 2021, Alg. 1).

    Parameters
    ----------
    clip_norm : float
        Current clip ``C`` (the state; starts at the initial clip, default 0.1).
    target_quantile : float
        ``gamma``: the fraction of clients that should end up unclipped.
    learning_rate : float
        ``eta``: ``C`` changes by at most a factor ``exp(eta)`` per round.
    clipped_count_stddev : float
        ``sigma_b``: std of the noise on the (centered) unclipped count.
    expected_cohort : float
        ``m``: the fixed denominator of the fraction.
    """

    clip_norm: float = 0.1
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    clipped_count_stddev: float = 0.0
    expected_cohort: float = 1.0

    def __post_init__(self) -> None:
        if not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")
        if not 0.0 <= self.target_quantile <= 1.0:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0, got {self.learning_rate}")
        if self.clipped_count_stddev < 0:
            raise ValueError(f"clipped_count_stddev must be >= 0, got {self.clipped_count_stddev}")
        if not self.expected_cohort > 0:
            raise ValueError(f"expected_cohort must be > 0, got {self.expected_cohort}")

    def noisy_unclipped_fraction(self, norms: Sequence[float],
                                 generator: np.random.Generator | None) -> tuple[float, float]:
        """``(b~, count_noise)`` for the current clip (see the module docstring)."""
        norms = np.asarray(norms, dtype=np.float64)
        centered = float(np.sum((norms <= self.clip_norm).astype(np.float64) - 0.5))
        noise = 0.0
        if self.clipped_count_stddev > 0:
            if generator is None:
                raise ValueError("count noise needs a generator")
            noise = float(generator.normal(0.0, self.clipped_count_stddev))
        frac = (centered + noise) / float(self.expected_cohort) + 0.5
        return min(1.0, max(0.0, frac)), noise

    def step(self, norms: Sequence[float],
             generator: np.random.Generator | None) -> dict[str, float]:
        """Update ``clip_norm`` from this round's (unclipped) norms; report what it did."""
        old = self.clip_norm
        frac, noise = self.noisy_unclipped_fraction(norms, generator)
        self.clip_norm = old * math.exp(-self.learning_rate * (frac - self.target_quantile))
        return {"noisy_unclipped_fraction": frac, "count_noise": noise,
                "clip_norm": old, "next_clip_norm": self.clip_norm}
