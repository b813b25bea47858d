"""Calibrate the noise multiplier ``z`` to a target (epsilon, delta) over a number of rounds.

Finds the smallest ``z`` whose DP-FedAvg run (McMahan et al. 2018; adaptive clipping as in
Andrew et al. 2021 is charged the same ``z``) reaches ``epsilon <= target_epsilon`` at
``delta`` after ``rounds`` rounds. Epsilon comes from the same dp-accounting computation
as :class:`~fl_sim.privacy.accountant.PrivacyLedger` (so a calibrated run's ledger lands
on the target) and decreases monotonically in ``z`` for both accountants; the search
brackets the root by doubling/halving ``z``, then runs Brent's method (as dp-accounting's
``calibrate_dp_mechanism`` does, but through the ledger's per-``z`` RDP cache) and finally
steps to the private side of the root.

Tolerance: the returned ``z`` satisfies ``epsilon(z) <= target_epsilon`` and is within
``z_tol`` (default 1e-5, absolute) of the exact smallest such ``z``; for the parameters
used here that puts ``epsilon(z)`` within 1e-3 relative of the target (checked in
tests/unit/test_privacy_accountant.py).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from fl_sim.privacy.accountant import PrivacyLedger

Z_TOL = 1e-5


def calibrate_noise(target_epsilon: float, delta: float | None, rounds: int,
                    sampling: str, population: int, expected_cohort: float,
                    accountant: str = "rdp", z_tol: float = Z_TOL,
                    rdp_orders=None, pld_discretization: float | None = None) -> float:
    """Smallest noise multiplier with ``epsilon <= target_epsilon`` after ``rounds`` rounds.

    Parameters
    ----------
    target_epsilon : float
        > 0.
    delta : float or None
        Target delta; ``None`` or 0 means ``1 / population^1.1``.
    rounds : int
        Rounds the run will charge.
    sampling : {"fixed", "poisson"}
    population, expected_cohort :
        ``N`` and ``m`` (Poisson: ``q = m / N``; for a given ``q`` pass
        ``expected_cohort = q * population``).
    accountant : {"rdp", "pld"}
        PLD supports Poisson sampling only (dp-accounting 0.6).
    z_tol : float
        Absolute tolerance on ``z``.
    rdp_orders, pld_discretization :
        As for :class:`~fl_sim.privacy.accountant.PrivacyLedger` (use the ledger's).

    Raises
    ------
    ValueError
        Bad arguments, or an accountant that cannot account the sampling scheme.
    """
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    ledger = PrivacyLedger(population, expected_cohort, sampling, delta, rdp_orders=rdp_orders,
                           pld_discretization=pld_discretization)
    reason = ledger.unsupported_reason(accountant)
    if reason is not None:
        raise ValueError(f"cannot calibrate with accountant {accountant!r}: {reason}")

    def eps(z: float) -> float:
        return ledger.epsilon_if_next_round(z, accountant, rounds=rounds)

    return smallest_noise(eps, target_epsilon, z_tol)


def calibrate_tree_noise(target_epsilon: float, delta: float | None, rounds: int,
                         restart_rounds: int, population: int, z_tol: float = Z_TOL) -> float:
    """Smallest DP-FTRL node noise multiplier with ``epsilon <= target_epsilon`` after
    ``rounds`` rounds, the tree restarted every ``restart_rounds`` (RDP accountant,
    REPLACE_SPECIAL; fl_sim/privacy/tree_accountant.py). ``population`` only sets the
    default delta."""
    from fl_sim.privacy.tree_accountant import TreeLedger, tree_epsilon

    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    d = TreeLedger(population, 1, restart_rounds, delta).delta
    return smallest_noise(lambda z: tree_epsilon(z, rounds, restart_rounds, d),
                          target_epsilon, z_tol)


def smallest_noise(eps, target_epsilon: float, z_tol: float = Z_TOL) -> float:
    """The smallest ``z`` with ``eps(z) <= target_epsilon`` (``eps`` decreasing in ``z``),
    within ``z_tol`` and on the private side of the root."""
    # Explicit bracket [lo, hi] with eps(lo) > target >= eps(hi); z = 0 is never private.
    hi = 1.0
    while eps(hi) > target_epsilon:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"no noise multiplier <= 1e6 reaches epsilon {target_epsilon}")
    lo = hi / 2.0
    while eps(lo) <= target_epsilon and lo > 1e-6:
        hi, lo = lo, lo / 2.0

    # Brent's method on eps(z) - target, then step to the private side: the result has
    # eps(z) <= target and lies within z_tol of the exact root.
    gap = lambda z: eps(z) - target_epsilon  # noqa: E731
    if gap(hi) == 0:
        return float(hi)
    z = float(optimize.brentq(gap, lo, hi, xtol=z_tol / 2, rtol=4 * np.finfo(float).eps))
    while gap(z) > 0:
        z += z_tol / 2
    return z
