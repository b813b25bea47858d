"""Gaussian noise on the clipped sum and the fixed-denominator mean (DP-FedAvg)."""

import numpy as np
import pytest

from fl_sim.fedavg_math import weighted_mean
from fl_sim.privacy import DPAggregator, dp_mean, noisy_sum
from fl_sim.seeding import rng

SHAPES = [(4, 3), (3,)]


def _updates(n, seed=0, scale=1.0):
    r = np.random.default_rng(seed)
    return [[(scale * r.normal(size=s)).astype(np.float32) for s in SHAPES] for _ in range(n)]


def test_zero_noise_huge_clip_is_the_fixed_denominator_mean():
    # Prepare: 6 of an expected 8 clients reported
    updates = _updates(6)
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=1e9, expected_cohort=8, seed=1)
    # Execute
    mean, report = agg.aggregate(updates, server_round=3)
    # Assert: the plain mean times actual/expected, i.e. sum / m
    plain = weighted_mean(updates, [1.0] * 6)
    for got, p in zip(mean, plain):
        np.testing.assert_allclose(got, p * (6 / 8), rtol=1e-6)
        assert got.dtype == np.float32
    assert report["num_clipped"] == 0 and report["noise_std"] == 0.0


def test_zero_noise_full_cohort_equals_unweighted_fedavg_exactly():
    # Prepare
    updates = _updates(5, seed=2)
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=1e9, expected_cohort=5)
    # Execute
    mean, _ = agg.aggregate(updates, server_round=1)
    # Assert
    for got, ref in zip(mean, weighted_mean(updates, [1.0] * 5)):
        np.testing.assert_array_equal(got, ref)


def test_noise_std_matches_z_c_over_m():
    # Prepare: zero updates, so the mean is pure noise
    z, clip, m, size = 1.3, 0.25, 10, 200_000
    zeros = [[np.zeros(size, np.float32)] for _ in range(m)]
    agg = DPAggregator(noise_multiplier=z, clip_norm=clip, expected_cohort=m, seed=7)
    # Execute
    mean, report = agg.aggregate(zeros, server_round=1)
    # Assert
    expected = z * clip / m
    assert report["mean_noise_std"] == pytest.approx(expected)
    assert np.std(mean[0].astype(np.float64)) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(mean[0])) < 5 * expected / np.sqrt(size)


def test_noise_is_deterministic_per_seed_and_round_and_differs_across_rounds():
    # Prepare
    updates = _updates(4, seed=3)

    def run(seed, rnd):
        agg = DPAggregator(noise_multiplier=1.0, clip_norm=0.5, expected_cohort=4, seed=seed)
        return agg.aggregate(updates, server_round=rnd)[0]

    # Execute
    a, b, c, d = run(0, 1), run(0, 1), run(0, 2), run(1, 1)
    # Assert
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a[0], d[0])


def test_noisy_sum_draws_from_the_given_generator():
    # Prepare
    u = [[np.ones(3)], [np.ones(3)]]
    # Execute
    s1 = noisy_sum(u, 0.5, rng(0, "dp-noise", 1))
    ref = 2.0 + rng(0, "dp-noise", 1).normal(0.0, 0.5, size=3)
    # Assert
    np.testing.assert_array_equal(s1[0], ref)
    np.testing.assert_array_equal(dp_mean(s1, 4)[0], ref / 4)


def test_empty_poisson_cohort_still_releases_noise():
    # Prepare
    template = [np.zeros((2, 2), np.float32)]
    agg = DPAggregator(noise_multiplier=1.0, clip_norm=1.0, expected_cohort=5)
    # Execute
    mean, report = agg.aggregate([], server_round=1, template=template)
    # Assert
    assert mean[0].shape == (2, 2) and mean[0].dtype == np.float32
    assert np.all(mean[0] != 0) and report["num_clients"] == 0
    with pytest.raises(ValueError):
        agg.aggregate([], server_round=1)
