"""Privacy ledger and calibration against independent dp-accounting computations."""

import json

import dp_accounting
import pytest
from dp_accounting import NeighboringRelation as NR

from fl_sim.privacy import PrivacyLedger, calibrate_noise, default_delta


def _independent_epsilon(accountant, sampling, z, rounds, population, cohort, delta):
    """Epsilon built by hand from dp-accounting's public API."""
    if sampling == "poisson":
        event = dp_accounting.PoissonSampledDpEvent(cohort / population,
                                                    dp_accounting.GaussianDpEvent(z))
        relation = NR.ADD_OR_REMOVE_ONE
    else:  # replace-one: the clipped sum's sensitivity is 2C, so the multiplier is z / 2
        event = dp_accounting.SampledWithoutReplacementDpEvent(
            population, cohort, dp_accounting.GaussianDpEvent(z / 2))
        relation = NR.REPLACE_ONE
    acc = (dp_accounting.rdp.RdpAccountant(neighboring_relation=relation) if accountant == "rdp"
           else dp_accounting.pld.PLDAccountant(neighboring_relation=relation))
    return acc.compose(dp_accounting.SelfComposedDpEvent(event, rounds)).get_epsilon(delta)


@pytest.mark.parametrize("sampling,accountant", [("poisson", "rdp"), ("poisson", "pld"),
                                                 ("fixed", "rdp")])
def test_epsilon_equals_independent_dp_accounting(sampling, accountant):
    # Prepare
    population, cohort, z, rounds = 2000, 20, 0.9, 150
    ledger = PrivacyLedger(population, cohort, sampling)
    # Execute
    for _ in range(rounds):
        ledger.record_round(z)
    got = ledger.epsilon(accountant)
    # Assert
    ref = _independent_epsilon(accountant, sampling, z, rounds, population, cohort,
                               default_delta(population))
    assert got == pytest.approx(ref, rel=1e-6)
    assert 0 < got < 100


def test_pld_with_fixed_sampling_reports_none_and_a_reason():
    ledger = PrivacyLedger(100, 10, "fixed")
    ledger.record_round(1.0)
    out = ledger.epsilons()
    assert out["pld"] is None and "SampledWithoutReplacement" in out["pld_reason"]
    assert out["rdp"] > 0


def test_dp_accounting_reference_case_rdp():
    # dp-accounting's rdp_privacy_accountant_test: q = 1, sigma = 4.530877117 gives exactly
    # (1, 1e-6)-DP with the RDP accountant over orders 1.0 ... 99.999 (step 0.001).
    fine_orders = [0.001 * i for i in range(1000, 100000)]
    ledger = PrivacyLedger(50, 50, "poisson", delta=1e-6, rdp_orders=fine_orders)
    ledger.record_round(4.530877117)
    assert ledger.epsilon("rdp") == pytest.approx(1.0, abs=1e-7)
    default_orders = PrivacyLedger(50, 50, "poisson", delta=1e-6)
    default_orders.record_round(4.530877117)
    assert default_orders.epsilon("rdp") == pytest.approx(1.0, rel=1e-6)
    # PLD is tight for the Gaussian mechanism: below the RDP bound
    assert ledger.epsilon("pld") == pytest.approx(
        dp_accounting.get_epsilon_gaussian(4.530877117, 1e-6), rel=1e-3)


def test_dp_accounting_does_not_double_sensitivity_under_replace_one():
    # Guard for the z / 2 in fixed-size accounting: if a dp-accounting release starts
    # doubling the sensitivity itself (google/differential-privacy#378), this fails and the
    # halving in fl_sim.privacy.accountant.round_event must go.
    g = dp_accounting.GaussianDpEvent(1.0)
    add_remove = dp_accounting.rdp.RdpAccountant().compose(g).get_epsilon(1e-5)
    replace = dp_accounting.rdp.RdpAccountant(neighboring_relation=NR.REPLACE_ONE)
    wor = dp_accounting.SampledWithoutReplacementDpEvent(10, 10, g)
    assert replace.compose(wor).get_epsilon(1e-5) == pytest.approx(add_remove, rel=1e-12)


@pytest.mark.parametrize("sampling,accountant,rounds,target",
                         [("poisson", "rdp", 200, 3.0), ("fixed", "rdp", 50, 3.0),
                          ("poisson", "pld", 20, 1.0)])
def test_calibration_hits_target(sampling, accountant, rounds, target):
    # Prepare
    population, cohort = 1000, 25
    # Execute
    pld_step = 1e-3  # coarser than the default 1e-4 to keep the unit test fast
    z = calibrate_noise(target, None, rounds, sampling, population, cohort, accountant,
                        pld_discretization=pld_step)
    # Assert: private side of the target, within 1e-3 relative; a slightly smaller z misses
    ledger = PrivacyLedger(population, cohort, sampling, pld_discretization=pld_step)
    ledger.record_round(z, rounds)
    eps = ledger.epsilon(accountant)
    assert target * (1 - 1e-3) <= eps <= target
    below = PrivacyLedger(population, cohort, sampling, pld_discretization=pld_step)
    below.record_round(z - 1e-4, rounds)
    assert below.epsilon(accountant) > target


def test_calibration_rejects_pld_for_fixed_sampling():
    with pytest.raises(ValueError, match="PLD|pld"):
        calibrate_noise(2.0, None, 10, "fixed", 100, 10, "pld")


def test_round_trip_gives_identical_epsilon():
    # Prepare
    ledger = PrivacyLedger(500, 10, "poisson", delta=1e-5)
    for z in [2.0] * 5 + [2.5] * 3 + [2.0]:
        ledger.record_round(z)
    # Execute
    restored = PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    # Assert
    assert restored.rounds == 9
    assert restored.epsilon("rdp") == ledger.epsilon("rdp")
    assert restored.epsilon("pld") == ledger.epsilon("pld")
    assert restored.to_dict() == ledger.to_dict()


@pytest.mark.parametrize("sampling", ["poisson", "fixed"])
def test_epsilon_if_next_round_is_exact(sampling):
    # Prepare
    ledger = PrivacyLedger(300, 12, sampling)
    ledger.record_round(1.1, 7)
    # Execute
    predicted = {a: ledger.epsilon_if_next_round(1.1, a) for a in ("rdp", "pld")}
    predicted_other_z = ledger.epsilon_if_next_round(0.8, "rdp")
    before = ledger.epsilon("rdp")
    ledger.record_round(1.1)
    # Assert
    assert predicted["rdp"] == ledger.epsilon("rdp") > before
    assert predicted["pld"] == ledger.epsilon("pld")
    other = PrivacyLedger(300, 12, sampling)
    other.record_round(1.1, 7)
    other.record_round(0.8)
    assert predicted_other_z == other.epsilon("rdp")


def test_default_delta_and_empty_ledger():
    ledger = PrivacyLedger(1000, 10, "poisson", delta=0.0)
    assert ledger.delta == pytest.approx(1000 ** -1.1)
    assert ledger.epsilon("rdp") == 0.0 and ledger.rounds == 0
    with pytest.raises(ValueError):
        PrivacyLedger(10, 20, "fixed")
    with pytest.raises(ValueError):
        PrivacyLedger(10, 2, "shuffled")


def test_statement_names_mechanism_sampling_and_assumptions():
    # Prepare
    ledger = PrivacyLedger(1000, 10, "fixed", delta=1e-5)
    ledger.record_round(1.0, 20)
    # Execute
    facts, md = ledger.statement(clip_norm=0.1, adaptive={"target_quantile": 0.5,
                                                          "clip_lr": 0.2})
    # Assert
    assert facts["neighboring_relation"] == "REPLACE_ONE" and facts["rounds"] == 20
    assert facts["epsilon_rdp"] == ledger.epsilon("rdp") and facts["epsilon_pld"] is None
    for text in ("replace-one", "user-level", "without replacement", "δ = 1e-05",
                 f"{ledger.epsilon('rdp'):.4g}", "z = 1", "target_quantile = 0.5"):
        assert text in md, text
    facts_p, md_p = PrivacyLedger(1000, 10, "poisson").statement(clip_norm=0.1)
    assert "add/remove-one-client" in md_p and facts_p["q"] == 0.01


def test_calibration_is_on_the_private_side_even_with_a_coarse_tolerance():
    # Prepare: a coarse tolerance makes Brent's root land on either side of the target
    fine = calibrate_noise(2.0, 1e-5, 100, "poisson", 1000, 10)
    for target in (1.0, 1.5, 2.0, 3.0, 4.0):
        # Execute
        z = calibrate_noise(target, 1e-5, 100, "poisson", 1000, 10, z_tol=0.05)
        # Assert
        ledger = PrivacyLedger(1000, 10, "poisson", delta=1e-5)
        ledger.record_round(z, 100)
        assert ledger.epsilon() <= target
        if target == 2.0:
            assert abs(z - fine) <= 0.05


def test_auto_pld_step_is_a_valid_bound_close_to_the_fine_one():
    # Large epsilon: the automatic step is 1e-5 * eps_rdp (coarser than 1e-4), which must
    # stay pessimistic (>= the fine grid's epsilon) and close to it.
    auto = PrivacyLedger(1248, 50, "poisson")
    fine = PrivacyLedger(1248, 50, "poisson", pld_discretization=1e-4)
    for led in (auto, fine):
        led.record_round(0.3, 20)
    assert auto.epsilon("rdp") * 1e-5 > 1e-4          # the automatic step really is coarser
    a, f = auto.epsilon("pld"), fine.epsilon("pld")
    assert f <= a <= f * (1 + 1e-4)
    assert PrivacyLedger.from_dict(auto.to_dict()).epsilon("pld") == a


@pytest.mark.parametrize("sampling", ["fixed", "poisson"])
def test_no_noise_is_infinite_epsilon_not_a_crash(sampling):
    # z = 0 releases the clipped sum exactly; dp-accounting's RDP accountant divides by z for
    # the fixed-size event (ZeroDivisionError), so the ledger must answer inf itself.
    led = PrivacyLedger(20, 4, sampling)
    assert led.epsilon_if_next_round(0.0) == float("inf")
    led.record_round(1.0)
    led.record_round(0.0)
    eps = led.epsilons()
    assert eps["rdp"] == float("inf")
    assert eps["pld"] == (None if sampling == "fixed" else float("inf"))
    facts, text = led.statement(clip_norm=0.5)
    assert facts["epsilon_rdp"] == float("inf") and "inf" in text


def test_tiny_noise_skips_the_pld_with_a_reason_instead_of_overflowing():
    # z = 1e-4 for 40 rounds of q = 8/1080 (the demo run with a clipping-only noise level):
    # epsilon_RDP ~ 2e9, whose relative PLD step (2e4) made dp-accounting's math.expm1
    # overflow and failed the whole run. The RDP epsilon still comes from dp-accounting.
    from fl_sim.privacy.accountant import PLD_MAX_RDP_EPSILON

    led = PrivacyLedger(1080, 8, "poisson", delta=1e-6)
    led.record_round(1e-4, 40)
    eps = led.epsilons()
    acc = dp_accounting.rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(8 / 1080, dp_accounting.GaussianDpEvent(1e-4)), 40)
    assert eps["rdp"] == pytest.approx(acc.get_epsilon(1e-6), rel=1e-9)
    assert eps["rdp"] > PLD_MAX_RDP_EPSILON
    assert eps["pld"] is None and "not computed" in eps["pld_reason"]
    facts, text = led.statement(clip_norm=1.0)
    assert facts["epsilon_pld"] is None and facts["pld_reason"] == eps["pld_reason"]
    # Just under the cap the PLD is still computed (the frontier runs' regime).
    low = PrivacyLedger(1080, 8, "poisson", delta=1e-6)
    low.record_round(0.0023, 40)
    assert low.epsilons()["pld"] is not None and low.epsilons()["pld_reason"] is None
