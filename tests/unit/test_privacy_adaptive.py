"""Adaptive clipping (Andrew et al. 2021): geometric quantile tracking and the noise split."""

import math

import dp_accounting
import numpy as np
import pytest
from scipy.stats import norm as normal_dist

from fl_sim.privacy import (DPAggregator, QuantileClipEstimator, effective_noise_multiplier,
                            resolve_clipped_count_stddev, split_noise_multiplier)


@pytest.mark.parametrize("quantile", [0.3, 0.5, 0.8])
def test_converges_to_target_quantile_of_lognormal_norms(quantile):
    # Prepare: norms ~ LogNormal(mu, s); start far from the answer (C = 0.1)
    mu, s, m = 0.5, 0.8, 500
    est = QuantileClipEstimator(clip_norm=0.1, target_quantile=quantile, learning_rate=0.2,
                                clipped_count_stddev=0.0, expected_cohort=m)
    r = np.random.default_rng(int(quantile * 10))
    # Execute
    tail = []
    for t in range(400):
        est.step(r.lognormal(mu, s, size=m), None)
        if t >= 300:
            tail.append(est.clip_norm)
    # Assert: the true unclipped fraction P(norm <= C) at the tracked C
    fractions = normal_dist.cdf((np.log(tail) - mu) / s)
    assert np.all(np.abs(fractions - quantile) <= 0.05), (fractions.min(), fractions.max())


def test_aggregator_adaptive_tracks_median_on_real_updates():
    # Prepare: client updates whose norms are lognormal around e^0 = 1
    m, dim = 40, 16
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=0.1, expected_cohort=m, adaptive=True,
                       target_quantile=0.5, clip_lr=0.2, clipped_count_stddev=0.0)
    r = np.random.default_rng(0)
    # Execute
    for t in range(1, 121):
        norms = r.lognormal(0.0, 0.5, size=m)
        dirs = r.normal(size=(m, dim))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        _, report = agg.aggregate([[d * n] for d, n in zip(dirs, norms)], server_round=t)
    # Assert
    assert normal_dist.cdf(np.log(agg.current_clip) / 0.5) == pytest.approx(0.5, abs=0.05)
    assert report["next_clip_norm"] == agg.current_clip


def test_one_geometric_step_exact():
    # Prepare: 3 of m = 4 expected clients; norms 1, 2 (== C, counts as unclipped), 5
    est = QuantileClipEstimator(clip_norm=2.0, target_quantile=0.5, learning_rate=0.2,
                                clipped_count_stddev=0.0, expected_cohort=4)
    # Execute
    out = est.step([1.0, 2.0, 5.0], None)
    # Assert: TF-privacy's centered count: ((1-.5) + (1-.5) + (0-.5)) / 4 + .5 = 0.625
    assert out["noisy_unclipped_fraction"] == pytest.approx(0.625)
    assert est.clip_norm == pytest.approx(2.0 * math.exp(-0.2 * (0.625 - 0.5)))
    assert out["clip_norm"] == 2.0


def test_fraction_is_clamped_to_unit_interval():
    est = QuantileClipEstimator(clip_norm=1.0, target_quantile=0.5, learning_rate=0.2,
                                clipped_count_stddev=0.0, expected_cohort=2)
    out = est.step([0.1, 0.1, 0.1, 0.1, 0.1], None)  # 5 reported, 2 expected
    assert out["noisy_unclipped_fraction"] == 1.0
    assert est.clip_norm == pytest.approx(math.exp(-0.1))


def test_noise_split_matches_tff_formula_and_composes_to_z():
    # Prepare: TFF's defaults, clients_per_round = 100 -> sigma_b = 5
    z, m = 1.0, 100
    sb = resolve_clipped_count_stddev(z, m, None)
    # Execute
    zd = split_noise_multiplier(z, sb)
    # Assert
    assert sb == 5.0
    assert zd == pytest.approx((1.0 - 1.0 / 100.0) ** -0.5)
    assert effective_noise_multiplier(zd, sb) == pytest.approx(z)
    # dp-accounting: Gaussian(z_delta) + Gaussian(2 sigma_b) == Gaussian(z) under sampling
    composed = dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.ComposedDpEvent(
        [dp_accounting.GaussianDpEvent(zd), dp_accounting.GaussianDpEvent(2 * sb)]))
    single = dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(z))
    e1 = dp_accounting.rdp.RdpAccountant().compose(composed, 50).get_epsilon(1e-6)
    e2 = dp_accounting.rdp.RdpAccountant().compose(single, 50).get_epsilon(1e-6)
    assert e1 == pytest.approx(e2, rel=1e-9)


def test_noise_split_rejects_too_small_count_noise():
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        split_noise_multiplier(1.0, 0.5)
    with pytest.raises(ValueError, match="clipped_count_stddev"):
        DPAggregator(noise_multiplier=2.0, clip_norm=0.1, expected_cohort=10, adaptive=True)
    assert split_noise_multiplier(0.0, 0.0) == 0.0
    assert resolve_clipped_count_stddev(0.0, 100, None) == 0.0


def test_adaptive_noise_uses_split_multiplier_and_current_clip():
    # Prepare
    agg = DPAggregator(noise_multiplier=0.8, clip_norm=0.3, expected_cohort=200, adaptive=True)
    # Execute
    _, report = agg.aggregate([[np.ones(4)]], server_round=1)
    # Assert
    zd = (0.8 ** -2 - (2 * 10.0) ** -2) ** -0.5
    assert report["update_noise_multiplier"] == pytest.approx(zd)
    assert report["noise_std"] == pytest.approx(zd * 0.3)
    assert report["clipped_count_stddev"] == 10.0
    assert report["count_noise"] != 0.0


def test_state_round_trip_resumes_identically():
    # Prepare
    def make():
        return DPAggregator(noise_multiplier=0.5, clip_norm=0.1, expected_cohort=20, seed=4,
                            adaptive=True, target_quantile=0.7)

    r = np.random.default_rng(1)
    rounds = [[[r.normal(size=5)] for _ in range(20)] for _ in range(6)]
    full = make()
    outs = [full.aggregate(u, t + 1) for t, u in enumerate(rounds)]
    first = make()
    for t in range(3):
        first.aggregate(rounds[t], t + 1)
    # Execute
    resumed = make()
    resumed.load_state(first.state())
    later = [resumed.aggregate(rounds[t], t + 1) for t in range(3, 6)]
    # Assert
    for (m1, r1), (m2, r2) in zip(outs[3:], later):
        np.testing.assert_array_equal(m1[0], m2[0])
        assert r1 == r2
