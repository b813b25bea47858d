"""Deployment-scale accounting (privacy.noise_cohort_size / accounting_population): the noise
the simulated cohort gets, and both epsilons, against NumPy and dp-accounting directly."""

import numpy as np
import pytest

from fl_sim.config import ConfigError, from_dict
from fl_sim.privacy import DPAggregator, split_noise_multiplier
from fl_sim.privacy.deployment import DeploymentScale, DPAccounting
from strategies.registry import make_strategy
from tests.unit.test_privacy_accountant import _independent_epsilon


def privacy(**kw):
    return from_dict({"privacy": {"enabled": True, **kw}}).privacy


def direct_epsilon(sampling, z, rounds, population, cohort, delta, accountant="rdp"):
    """Epsilon from dp-accounting's public API, written out independently of fl_sim (the
    accountant tests' reference, with this file's argument order)."""
    return _independent_epsilon(accountant, sampling, z, rounds, population, cohort, delta)


def test_noise_on_the_mean_is_that_of_the_noise_cohort():
    # Prepare: 10 simulated clients with zero updates, noise of a 1000-client cohort
    z, clip, m, m2, size = 1.1, 0.5, 10, 1000, 400_000
    zeros = [[np.zeros(size, np.float32)] for _ in range(m)]
    agg = DPAggregator(noise_multiplier=z, clip_norm=clip, expected_cohort=m, seed=3,
                       noise_cohort=m2)
    # Execute
    mean, report = agg.aggregate(zeros, server_round=1)
    # Assert: std z C / m' on the mean (z C m / m' on the sum). The sample std of n normal
    # draws has relative sd 1/sqrt(2n) = 0.11% here; 1% is 9 of those.
    expected = z * clip / m2
    assert report["mean_noise_std"] == pytest.approx(expected, rel=1e-12)
    assert report["noise_std"] == pytest.approx(z * clip * m / m2, rel=1e-12)
    assert np.std(mean[0].astype(np.float64)) == pytest.approx(expected, rel=0.01)


def test_adaptive_noise_split_is_the_noise_cohorts_and_the_count_noise_scales():
    # Prepare: sigma_b of the m' cohort is m'/20; the split uses it; the simulated count
    # noise is sigma_b * m / m', so the noisy unclipped fraction is as noisy as with m'.
    z, m, m2 = 1.0, 20, 2000
    agg = DPAggregator(noise_multiplier=z, clip_norm=1.0, expected_cohort=m, seed=5,
                       adaptive=True, noise_cohort=m2)
    sigma_b = m2 / 20
    assert agg.count_stddev == pytest.approx(sigma_b)
    assert agg.update_noise_multiplier == pytest.approx(split_noise_multiplier(z, sigma_b), rel=1e-12)
    # Execute: 3000 rounds of one tiny update; only the count noise is looked at
    noise = [agg.aggregate([[np.zeros(2, np.float32)]], r)[1]["count_noise"] for r in range(1, 3001)]
    # Assert: sample sd of 3000 normals has relative sd 1/sqrt(6000) = 1.3%; 6% is ~4.6 of those
    assert np.std(noise) == pytest.approx(sigma_b * m / m2, rel=0.06)


@pytest.mark.parametrize("sampling", ["poisson", "fixed"])
def test_both_epsilons_equal_dp_accounting_computed_directly(sampling):
    # Prepare: a 1248-client simulation training 50 per round, accounted for N' = 1e6, m' = 5000
    p = privacy(noise_multiplier=0.8, sampling=sampling, delta=1e-6,
                noise_cohort_size=5000, accounting_population=1_000_000)
    acc = DPAccounting(p, population=1248, cohort=50, rounds=40)
    # Execute
    for _ in range(40):
        acc.record_round()
    got = acc.metrics()
    # Assert: dp-accounting on the deployment (N', m', z) and on the run (N, m, z m / m')
    assert got["epsilon_rdp"] == pytest.approx(
        direct_epsilon(sampling, 0.8, 40, 1_000_000, 5000, 1e-6), rel=1e-9)
    assert got["run_epsilon_rdp"] == pytest.approx(
        direct_epsilon(sampling, 0.8 * 50 / 5000, 40, 1248, 50, 1e-6), rel=1e-9)
    assert got["run_noise_multiplier"] == pytest.approx(0.008)
    assert got["run_epsilon_rdp"] > 1000 * got["epsilon_rdp"]
    assert "1,000,000" in got["epsilon_for"] and "5,000" in got["epsilon_for"]
    if sampling == "poisson":
        # PLD: dp-accounting's default discretization (1e-4) for the small deployment epsilon
        assert got["epsilon_pld"] == pytest.approx(
            direct_epsilon(sampling, 0.8, 40, 1_000_000, 5000, 1e-6, "pld"), rel=1e-9)


def test_default_delta_is_each_populations_own():
    acc = DPAccounting(privacy(noise_cohort_size=500, accounting_population=100_000), 200, 10, 5)
    acc.record_round()
    m = acc.metrics()
    assert m["delta"] == pytest.approx(100_000 ** -1.1) and m["run_delta"] == pytest.approx(200 ** -1.1)


def test_calibration_reaches_the_target_for_the_deployment():
    # Prepare: pfl-research's Stack Overflow setting: epsilon 2 at delta 1e-6, N' = 1e6, m' = 5000
    p = privacy(target_epsilon=2.0, delta=1e-6, sampling="poisson", noise_cohort_size=5000,
                accounting_population=1_000_000)
    # Execute
    acc = DPAccounting(p, population=1248, cohort=50, rounds=60)
    # Assert: at the calibrated z the deployment's epsilon (dp-accounting, directly) is at most
    # 2 and within 1e-3 of it (calibration.py's z tolerance 1e-5 moves epsilon ~1e-5 relative);
    # 1% less noise would exceed the target.
    eps = direct_epsilon("poisson", acc.z, 60, 1_000_000, 5000, 1e-6)
    assert 2.0 * (1 - 1e-3) <= eps <= 2.0
    assert direct_epsilon("poisson", 0.99 * acc.z, 60, 1_000_000, 5000, 1e-6) > 2.0


def test_off_by_default_and_bad_deployments_are_named():
    acc = DPAccounting(privacy(), population=30, cohort=3, rounds=2)
    assert acc.run_ledger is None and not acc.scale.simulated and acc.deployment_paragraph() == ""
    acc.record_round()
    assert "run_epsilon_rdp" not in acc.metrics()
    with pytest.raises(ValueError, match="noise_cohort_size = 50 exceeds"):
        DeploymentScale.from_config(privacy(noise_cohort_size=50), population=30, cohort=3)
    with pytest.raises(ConfigError, match="privacy.noise_cohort_size = 20: expected <= "
                                          r"privacy.accounting_population \(10\)"):
        privacy(noise_cohort_size=20, accounting_population=10)


def test_statement_and_summary_table_say_whose_epsilon_it_is():
    from fl_sim.app.server_app import summary_table

    # Prepare
    cfg = from_dict({"experiment": {"rounds": 3}, "server": {"clients_per_round": 3},
                     "privacy": {"enabled": True, "noise_multiplier": 1.0, "sampling": "poisson",
                                 "noise_cohort_size": 300, "accounting_population": 30_000}})
    s = make_strategy("fedavg", cfg, [f"c{i}" for i in range(30)], "")
    s.inner.current = [np.zeros(4, np.float32)]
    s.inner.last_cohort = ["c0"]
    # Execute
    s.inner.aggregate_results(1, [("c0", [np.ones(4, np.float32)], {"num_examples": 2, "train_loss": 1.0})])
    final = s.final_report()
    # Assert
    text = final["privacy_statement"]
    assert text.startswith("**Epsilon below is for a stated deployment, not for this simulation.**")
    assert f"{final['run_epsilon_rdp']:.4g}" in text and "N' = 30,000" in text
    assert final["run_epsilon_rdp"] > final["epsilon_rdp"]
    row = {"rounds": 3, "parameters": 4, "eval_accuracy": 0.1, "eval_accuracy_no_oov_eos": 0.1,
           "eval_perplexity": 9.0, "eval_loss": 2.0, "baseline_accuracy": 0.05, "wall_time_s": 1.0,
           **{k: final[k] for k in ("noise_multiplier", "epsilon_rdp", "epsilon_pld", "delta",
                                    "epsilon_for", "run_epsilon_rdp", "run_delta")}}
    table = summary_table({"models": {"si_cifg": row}})
    assert "epsilon (RDP) for deployment N'=30,000, m'=300" in table
    assert "epsilon of the simulated run itself" in table and f"{final['run_epsilon_rdp']:.4g}" in table
