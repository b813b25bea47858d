"""The one-shot empirical privacy audit: the two-Gaussian epsilon against closed forms and
dp-accounting, and the canary clients' insertion into the clipped sum against NumPy."""

import math

import dp_accounting
import numpy as np
import pytest
from scipy import integrate, optimize, stats

from fl_sim.privacy import DPAggregator
from fl_sim.privacy.canaries import CanaryClients, audit, flatten
from fl_sim.privacy.empirical import (EPSILON_CAP, Gaussian, bootstrap, epsilon_two_gaussians,
                                      estimate)
from fl_sim.seeding import rng


def analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle & Wang 2018 (Thm. 8): N(mu, 1) vs N(0, 1) is (eps, delta)-DP iff
    Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu) <= delta; solved independently here."""
    def f(e):
        return stats.norm.cdf(mu / 2 - e / mu) - math.exp(e) * stats.norm.cdf(-mu / 2 - e / mu) - delta
    return optimize.brentq(f, 0.0, 500.0, xtol=1e-12)


@pytest.mark.parametrize("mu", [0.3, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("delta", [1e-2, 1e-5, 1e-9])
def test_equal_variances_match_the_analytic_gaussian_mechanism(mu, delta):
    ref = analytic_gaussian_epsilon(mu, delta)
    # Scale invariance: the cosines live at std 1/sqrt(d), so test at that scale too.
    s = 1 / math.sqrt(20000)
    for scale in (1.0, s):
        got = epsilon_two_gaussians(Gaussian(mu * scale, scale), Gaussian(0.0, scale), delta)
        # Both are root finds to 1e-10..1e-12 of smooth functions; 1e-7 relative leaves room
        # for the normal tails' float64 rounding at delta = 1e-9.
        assert got == pytest.approx(ref, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("mu", [0.5, 2.0])
def test_equal_variances_match_dp_accounting_pld(mu):
    delta = 1e-5
    pld = dp_accounting.pld.privacy_loss_distribution.from_gaussian_mechanism(
        standard_deviation=1 / mu, value_discretization_interval=1e-5)
    ref = pld.get_epsilon_for_delta(delta)
    # The PLD discretises the privacy loss pessimistically by 1e-5 per step: it may sit
    # above the exact value by about that, never below by more than float rounding.
    got = epsilon_two_gaussians(Gaussian(mu, 1.0), Gaussian(0.0, 1.0), delta)
    assert ref - 1e-6 <= got + 1e-9 and got <= ref + 1e-9
    assert got == pytest.approx(ref, abs=1e-3)


def hockey_stick_by_quadrature(p, q, eps):
    def f(x):
        return max(stats.norm.pdf(x, p.mean, p.std) - math.exp(eps) * stats.norm.pdf(x, q.mean, q.std), 0.0)
    lo = min(p.mean - 40 * p.std, q.mean - 40 * q.std)
    hi = max(p.mean + 40 * p.std, q.mean + 40 * q.std)
    return integrate.quad(f, lo, hi, points=[p.mean, q.mean], limit=1000, epsabs=1e-13)[0]


@pytest.mark.parametrize("p, q", [(Gaussian(0.3, 1.3), Gaussian(0.0, 1.0)),
                                  (Gaussian(2.0, 0.8), Gaussian(0.0, 1.0)),
                                  (Gaussian(1.0, 1.05), Gaussian(0.0, 1.0))])
@pytest.mark.parametrize("delta", [1e-2, 1e-4])
def test_unequal_variances_hit_delta_by_quadrature(p, q, delta):
    eps = epsilon_two_gaussians(p, q, delta)
    assert eps > 0
    # At eps the worse direction's hockey-stick divergence is delta (quad to ~1e-12
    # absolute, so 1e-3 relative at delta = 1e-4 is loose but can still fail), and just
    # below eps it is larger: eps is the smallest one that works.
    worst = max(hockey_stick_by_quadrature(p, q, eps), hockey_stick_by_quadrature(q, p, eps))
    assert worst == pytest.approx(delta, rel=1e-3)
    below = max(hockey_stick_by_quadrature(p, q, eps * 0.98), hockey_stick_by_quadrature(q, p, eps * 0.98))
    assert below > delta * 1.001


def test_identical_and_far_apart_gaussians():
    g = Gaussian(0.0, 1.0)
    assert epsilon_two_gaussians(g, g, 1e-5) == 0.0
    assert epsilon_two_gaussians(Gaussian(100.0, 1.0), g, 1e-5) == EPSILON_CAP
    with pytest.raises(ValueError, match="delta"):
        epsilon_two_gaussians(g, g, 0.0)
    with pytest.raises(ValueError, match="std > 0"):
        Gaussian(0.0, 0.0)


def test_estimate_recovers_a_known_gaussian_pair_and_the_bootstrap_covers_it():
    # 2000 cosines drawn from N(mu/sqrt(d), 1/d) (equal variances) against the N(0, 1/d)
    # null: epsilon_emp estimates the analytic epsilon for mu, and its interval covers it.
    d, mu, delta = 50000, 2.0, 1e-5
    x = rng(0, "test-cosines").normal(mu, 1.0, size=2000) / math.sqrt(d)
    truth = analytic_gaussian_epsilon(mu, delta)
    est = estimate(x, d, delta)
    lo, hi = bootstrap(x, d, delta, rng(0, "test-bootstrap"), resamples=300)
    assert lo <= truth <= hi and lo <= est <= hi
    # The std's sampling error (~1.6% at k = 2000) moves epsilon at delta = 1e-5 by a few
    # tenths through the tails; 15% is a tolerance this seed clears and a bug would not.
    assert est == pytest.approx(truth, rel=0.15)
    assert estimate(np.full(10, 0.1), d, delta) == EPSILON_CAP  # no spread: a point mass


def test_canaries_are_seeded_unit_directions_sampled_at_q():
    can = CanaryClients(400, seed=3, sampling_probability=0.25, shapes=[(10, 3), (7,)])
    assert can.dim == 37
    v = can.direction(5)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-12)
    assert np.array_equal(v, CanaryClients(400, 3, 0.25, [(10, 3), (7,)]).direction(5))
    assert not np.allclose(v, can.unobserved_direction(5))
    assert can.sampled(4) == CanaryClients(400, 3, 0.25, [(10, 3), (7,)]).sampled(4)
    # Each canary joins each round independently with probability q: over 200 rounds the
    # 80000 Bernoulli(0.25) draws have mean within 4 standard errors (0.0015 each) of q.
    counts = np.array(can.times_inserted(200))
    assert abs(counts.sum() / (400 * 200) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 80000)
    # Independently of each other: the per-canary counts spread like Binomial(200, 0.25).
    assert counts.var() == pytest.approx(200 * 0.25 * 0.75, rel=0.25)


def test_canaries_enter_the_clipped_sum_before_the_noise_and_not_the_denominator():
    shapes = [(4, 3), (5,)]
    can = CanaryClients(50, seed=1, sampling_probability=0.3, shapes=shapes)
    gen = rng(9, "test-updates")
    updates = [[gen.normal(size=s).astype(np.float32) for s in shapes] for _ in range(3)]
    clip, z, m = 0.5, 0.7, 4.0
    agg = DPAggregator(noise_multiplier=z, clip_norm=clip, expected_cohort=m, seed=11)
    inserted = can.updates(2, agg.current_clip)
    assert len(inserted) == len(can.sampled(2)) > 0
    mean, report = agg.aggregate(updates, 2, inserted=inserted)
    # NumPy reference: clip each client, add C * c_j for each sampled canary, add the round's
    # noise (same generator and draw order), divide by m (not by clients + canaries).
    ref = np.zeros(can.dim)
    for u in updates:
        f = flatten(u)
        ref += f * min(1.0, clip / np.linalg.norm(f))
    for j in can.sampled(2):
        ref += clip * can.direction(j)
    noise_gen = rng(11, "dp-noise", 2)
    ref += np.concatenate([noise_gen.normal(0.0, z * clip, size=s).ravel() for s in shapes])
    ref /= m
    # float32 output of a float64 sum: 1e-6 relative to the largest entry.
    assert np.allclose(flatten(mean), ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    assert report["num_clients"] == 3 and report["canaries_inserted"] == len(inserted)
    assert report["num_clipped"] <= 3 and report["expected_cohort"] == m


def test_audit_sees_inserted_canaries_and_not_the_unobserved_ones():
    # A pure Gaussian mechanism with canaries and no noise: the inserted cosines sit far
    # above N(0, 1/d), the never-inserted ones on it, and epsilon_emp is huge.
    shapes = [(3000,)]
    can = CanaryClients(100, seed=0, sampling_probability=0.5, shapes=shapes)
    total = np.zeros(3000)
    for t in range(1, 11):
        for u in can.updates(t, 1.0):
            total += u[0]
    out = audit(can, [np.zeros(3000)], [total / 10.0], delta=1e-5, rounds=10,
                accounted={"rdp": float("inf"), "pld": None})
    assert out["epsilon_emp"] >= 10
    assert out["observed"]["mean_sqrt_d"] > 3
    # In units of 1/sqrt(d) the 100 unobserved cosines are ~N(0, 1): their mean lies within
    # 4 standard errors (0.1 each) of 0, and their std within 0.2 of 1 (its standard error
    # is about 0.07).
    assert abs(out["unobserved"]["mean_sqrt_d"]) < 0.4
    assert out["unobserved"]["std_sqrt_d"] == pytest.approx(1.0, abs=0.2)
    assert out["observed"]["times_inserted"] == can.times_inserted(10)
    assert out["below_accounted"] is True  # the cap, 100, is below the accountant's inf


def test_audit_of_a_stack_that_inserted_no_canaries_is_refused():
    from fl_sim.config import from_dict
    from fl_sim.privacy.canaries import audit_run

    cfg = from_dict({"privacy": {"enabled": True}, "audit": {"canaries": 10}})
    w = [np.zeros(5)]
    final = {"epsilon_rdp": 1.0, "epsilon_pld": None, "delta": 1e-5, "rounds_completed": 3}
    with pytest.raises(ValueError, match="no aggregation of this strategy stack inserted canaries"):
        audit_run(cfg, w, [np.ones(5)], final, population=100)
    report, fields = audit_run(cfg, w, [np.ones(5)], {**final, "audit_inserted_by": "DPFedAvg"},
                               population=100)
    assert report["epsilon_emp"] is not None and fields["audit_canaries"] == 10


def test_audit_without_a_defined_cosine_says_why():
    can = CanaryClients(5, seed=0, sampling_probability=0.5, shapes=[(4,)])
    same = audit(can, [np.zeros(4)], [np.zeros(4)], delta=1e-5, rounds=1, accounted={"rdp": 1.0})
    assert same["epsilon_emp"] is None and "equals the initial" in same["reason"]
    bad = audit(can, [np.zeros(4)], [np.array([np.inf, 0, 0, 0])], delta=1e-5, rounds=1,
                accounted={"rdp": 1.0})
    assert bad["epsilon_emp"] is None and "not finite" in bad["reason"]
