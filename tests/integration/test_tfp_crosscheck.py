"""fl_sim's DP math against tensorflow-privacy 0.9 (the DP queries TFF wraps) and
dp-accounting (0.4.3 in the reference venv, 0.6 in fl_sim's).

tensorflow-privacy needs TF 2.15 (protobuf < 5), which cannot share fl_sim's venv with
Flower, so it runs as an oracle in .venv-ref (``make .venv-ref``; ``make test`` builds it
first): this test writes client deltas to an .npz, runs tests/reference/tfp_oracle.py
there (15-30 s, half of it importing TF; fl_sim's side of the slow accounting is computed
meanwhile on the other core), and compares. A missing or stale .venv-ref, or a
failing oracle, FAILS the test (it never skips): the cross-check is part of ``make test``.

Compared like with like:
- aggregates and clip norms: fl_sim's DPAggregator (sum / expected cohort m) vs
  ``NormalizedQuery(GaussianSumQuery(C, 0), m)`` and, over 40 rounds,
  ``NormalizedQuery(QuantileAdaptiveClipSumQuery(..., noise 0, count noise 0), m)``, to
  float32 tolerance (TF-privacy computes in float32, fl_sim in float64). Cohorts differ
  from m, so a mean over the realized cohort would fail. One extra round puts norms exactly
  on the clip: both count them as unclipped.
- noise scale: both sides' empirical noise std on 200k coordinates within 2% of the
  formula (``zC/m`` fixed; ``z_Delta C/m`` adaptive), and the DpEvent TF-privacy's
  adaptive query reports, which must be ``[Gaussian(z_Delta), Gaussian(2 sigma_b)]``.
- epsilon over a grid of (N, m, rounds, z, delta), including dp-accounting's reference
  case (q = 1, z = 4.530877117, delta = 1e-6 -> epsilon 1 with RDP):
  * Poisson (add/remove one client): ``compute_dp_sgd_privacy`` (RDP over its own orders,
    which fl_sim's ledger is given too), the helper behind
    ``compute_dp_sgd_privacy_statement`` (RDP and PLD), and dp-accounting 0.6 directly;
  * fixed-size without replacement (replace-one, multiplier z/2): tensorflow-privacy 0.9
    has no helper except for m = N, where its doubled-sensitivity full-batch helper applies;
    otherwise dp-accounting 0.4.3 (reference venv) and 0.6 (here) directly. Neither
    release's PLD accountant supports the event, which is why fl_sim reports None.
  PLD and every RDP computed at integer orders agree to 1e-6 relative (the issue's
  criterion; measured: <= 1e-8). RDP at fractional orders differs between the releases:
  0.4.3 sums the exact alternating series for log A_alpha, 0.6 sums |terms| (an upper
  bound; inf where it does not converge), so fl_sim's RDP epsilon (0.6, default orders)
  can be slightly LARGER than tensorflow-privacy's when 0.4.3's optimal order is
  fractional (measured up to 0.23%, q = 0.1, z = 0.8). The test pins that down: equal
  RDP at integer orders, 0.6 >= 0.4.3 at fractional ones, equal epsilon when the optimal
  order's RDP agrees, otherwise fl_sim >= tf-privacy and within 1%; and a numerical
  integral shows which release is exact. fl_sim thus never claims more privacy than the
  reference. The adaptive query's event is compared at 1e-5 because TF-privacy keeps its
  noise multipliers in float32.
- calibration: ``compute_noise`` (Poisson, RDP, tol 1e-6) vs ``calibrate_noise``.
Run with ``-rP`` to see the measured discrepancies.
"""

import functools
import hashlib
import os
import subprocess
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS
from scipy import integrate

from fl_sim.privacy import (DPAggregator, PrivacyLedger, calibrate_noise, global_norm,
                            split_noise_multiplier)

REPO = Path(__file__).resolve().parents[2]
REF_VENV = REPO / ".venv-ref"
REF_PY = REF_VENV / "bin" / "python"
REF_STAMP = REF_VENV / ".installed"
REF_REQ = REPO / "tests" / "reference" / "requirements-ref.txt"
ORACLE = REPO / "tests" / "reference" / "tfp_oracle.py"
# The orders tensorflow_privacy.compute_dp_sgd_privacy and compute_noise (0.9) use.
TFP_DPSGD_ORDERS = tuple([1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
                         + list(range(5, 64)) + [128, 256, 512])

SHAPES = [(6, 4), (4,), (3, 2, 2)]
FIXED = {"clip": 1.0, "m": 15, "n": 12}
ADAPTIVE = {"c0": 0.1, "gamma": 0.7, "eta": 0.2, "m": 20, "rounds": 40}
# One round whose norms are exactly the clip (0.5, exact in float32 and float64).
TIE = {"c0": 0.5, "gamma": 0.5, "eta": 0.2, "m": 4, "rounds": 1}
NOISE = {"z": 1.2, "clip": 0.5, "m": 40, "size": 200_000, "population": 400, "rounds": 50,
         "delta": 1e-5}
# (population N, cohort m, rounds, z, delta): q from 0.01 to 1, 1 to 2000 rounds.
ACC_CASES = [
    (1000, 10, 100, 1.1, 1e-5),
    (500, 50, 300, 0.8, 1e-6),
    (10000, 100, 2000, 1.3, 1e-5),
    (100, 100, 1, 4.530877117, 1e-6),  # dp-accounting's reference case: RDP epsilon 1
    (100, 100, 20, 3.0, 1e-5),
]
# (N, m, rounds, target epsilon, delta) for calibration.
CAL_CASES = [(1000, 10, 100, 1.0, 1e-5), (10000, 100, 2000, 4.0, 1e-5)]
REL = 1e-6
BUILD_HINT = ("Build it with `make .venv-ref` (or `bash scripts/make_ref_venv.sh`; needs "
              "python3.11 and network access to PyPI, 1-5 minutes). `make test` does this "
              "first.")


def _client_updates(r, n, log_sigma=0.7):
    """n updates whose global norms are lognormal around 1."""
    out = []
    for _ in range(n):
        u = [r.normal(size=s) for s in SHAPES]
        scale = r.lognormal(0.0, log_sigma) / global_norm(u)
        out.append([(t * scale).astype(np.float32) for t in u])
    return out


def _stack(prefix, updates, into):
    for j in range(len(SHAPES)):
        into[f"{prefix}_t{j}"] = np.stack([u[j] for u in updates])


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _pins_hash():
    """sha256 of the pins without comments, as scripts/make_ref_venv.sh writes it."""
    lines = [line.split("#", 1)[0].strip() for line in REF_REQ.read_text().splitlines()]
    return hashlib.sha256("".join(f"{x}\n" for x in lines if x).encode()).hexdigest()


def _check_ref_venv():
    """Fail (never skip) unless .venv-ref exists and was built from the current pins."""
    if not REF_PY.exists() or not REF_STAMP.exists():
        pytest.fail(f"the tensorflow-privacy reference venv {REF_VENV} is missing. "
                    f"{BUILD_HINT}", pytrace=False)
    if REF_STAMP.read_text().strip() != _pins_hash():
        pytest.fail(f"{REF_VENV} was built from other pins than {REF_REQ.name}'s. "
                    f"{BUILD_HINT}", pytrace=False)


def _rdp_vector_06(event):
    """dp-accounting 0.6's RDP of ``event`` at the default orders (as fl_sim's ledger)."""
    return np.asarray(dp_accounting.rdp.RdpAccountant().compose(event)._rdp, np.float64)


def _check_rdp_epsilon_vs_043(ledger_eps, tfp_eps, rdp_043, rdp_06, delta, rel=REL):
    """fl_sim's RDP epsilon (dp-accounting 0.6) vs tf-privacy's (0.4.3), default orders.

    Returns the relative gap. See the module docstring for why it may be positive.
    """
    orders = np.asarray(DEFAULT_RDP_ORDERS, np.float64)
    integer = orders == np.round(orders)
    # Integer orders: both releases use the same closed-form binomial sum.
    np.testing.assert_allclose(rdp_06[integer], rdp_043[integer], rtol=rel)
    # Fractional orders: 0.6 is an upper bound on 0.4.3's value (or inf), never below it.
    assert np.all(rdp_06[~integer] >= rdp_043[~integer] * (1 - rel))
    # RDP -> (epsilon, delta) is the same conversion in both releases.
    eps_043, order = rdp_privacy_accountant.compute_epsilon(orders, rdp_043, delta)
    assert eps_043 == pytest.approx(tfp_eps, rel=1e-9)
    assert ledger_eps >= tfp_eps * (1 - rel)  # never less conservative than the reference
    at_opt = orders == order
    if np.allclose(rdp_06[at_opt], rdp_043[at_opt], rtol=1e-9):
        assert ledger_eps == pytest.approx(tfp_eps, rel=rel)
    else:
        assert ledger_eps <= tfp_eps * 1.01, "0.6's fractional-order bound is too loose"
    return (ledger_eps - tfp_eps) / tfp_eps


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    # Prepare: the inputs, written where the reference interpreter can read them
    _check_ref_venv()
    r = np.random.default_rng(20240607)
    inp = {"fixed_clip": FIXED["clip"], "fixed_m": FIXED["m"], "fixed_n_tensors": len(SHAPES)}
    fixed_updates = _client_updates(r, FIXED["n"])
    _stack("fixed", fixed_updates, inp)
    inp.update({f"ad_{k}": v for k, v in ADAPTIVE.items()}, ad_n_tensors=len(SHAPES))
    rounds = []
    for k in range(ADAPTIVE["rounds"]):
        upd = _client_updates(r, int(r.integers(14, 27)))  # n != m: exercises the centering
        rounds.append(upd)
        _stack(f"ad_r{k}", upd, inp)
    # Three updates with norm exactly C (one non-zero coordinate) and one with norm 2.
    ties = []
    for k, norm in enumerate((0.5, 0.5, 0.5, 2.0)):
        u = [np.zeros(sh, np.float32) for sh in SHAPES]
        u[k % len(SHAPES)].flat[k] = norm
        ties.append(u)
    inp.update({f"tie_{k}": v for k, v in TIE.items()}, tie_n_tensors=len(SHAPES))
    _stack("tie_r0", ties, inp)
    count_std = NOISE["m"] / 20
    zd = split_noise_multiplier(NOISE["z"], count_std)
    inp.update({f"noise_{k}": v for k, v in NOISE.items()}, noise_count_std=count_std,
               noise_zd=zd)
    for j, key in enumerate(("population", "cohort", "rounds", "z", "delta")):
        inp[f"acc_{key}"] = np.array([c[j] for c in ACC_CASES], dtype=np.float64)
    for j, key in enumerate(("population", "cohort", "rounds", "epsilon", "delta")):
        inp[f"cal_{key}"] = np.array([c[j] for c in CAL_CASES], dtype=np.float64)
    tmp = tmp_path_factory.mktemp("tfp")
    np.savez(tmp / "in.npz", **inp)

    # Execute: tensorflow-privacy in its own interpreter (no GPU, no fl_sim on the path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.Popen([str(REF_PY), str(ORACLE), str(tmp / "in.npz"),
                                 str(tmp / "out.npz")], cwd=tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    except OSError as e:
        pytest.fail(f"could not start the tensorflow-privacy oracle in {REF_VENV}: {e!r}. "
                    f"Rebuild it: rm -rf .venv-ref && make .venv-ref", pytrace=False)
    try:
        _warm_product_side()  # meanwhile, on the other core
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"tensorflow-privacy oracle timed out after 300 s:\n{stderr[-5000:]}",
                    pytrace=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"tensorflow-privacy oracle failed (exit {proc.returncode}); if the venv "
                    f"is broken: rm -rf .venv-ref && make .venv-ref\n"
                    f"{stdout[-3000:]}\n{stderr[-5000:]}", pytrace=False)
    out = dict(np.load(tmp / "out.npz"))
    return {"out": out, "fixed_updates": fixed_updates, "rounds": rounds, "zd": zd,
            "count_std": count_std, "ties": ties}


def test_reference_venv_is_built():
    # A FAILED line with the fix in it (the fixture's own check shows up as ERRORs).
    _check_ref_venv()


def test_reference_versions(oracle):
    versions = [str(v) for v in oracle["out"]["versions"]]
    assert versions == ["tensorflow 2.15.1", "tensorflow-privacy 0.9.0", "dp-accounting 0.4.3"]


def test_fixed_clip_zero_noise_mean_matches_gaussian_sum_query(oracle):
    # Prepare
    updates, out = oracle["fixed_updates"], oracle["out"]
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=FIXED["clip"], expected_cohort=FIXED["m"])
    # Execute
    mean, report = agg.aggregate(updates, server_round=1)
    # Assert
    assert 0 < report["num_clipped"] < FIXED["n"]  # both branches of the clip are exercised
    worst = 0.0
    for j, got in enumerate(mean):
        want = out[f"fixed_mean_t{j}"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
    print(f"fixed clip: max |fl_sim - tfp| over the mean = {worst:.3g}")


def test_adaptive_clip_trajectory_and_means_match_quantile_adaptive_query(oracle):
    # Prepare
    out, rounds = oracle["out"], oracle["rounds"]
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=ADAPTIVE["c0"],
                       expected_cohort=ADAPTIVE["m"], adaptive=True,
                       target_quantile=ADAPTIVE["gamma"], clip_lr=ADAPTIVE["eta"],
                       clipped_count_stddev=0.0)
    # float32 (TF) vs float64 (fl_sim) can only disagree on a norm within ~1e-6 of C
    margins = [min(abs(global_norm(u) - c) / c for u in upd)
               for upd, c in zip(rounds, out["ad_clip"])]
    assert min(margins) > 1e-4, "test data puts a norm too close to the clip; change the seed"
    # Execute
    clips, next_clips, worst_mean = [], [], 0.0
    for k, updates in enumerate(rounds):
        mean, report = agg.aggregate(updates, server_round=k + 1)
        clips.append(report["clip_norm"])
        next_clips.append(report["next_clip_norm"])
        for j, got in enumerate(mean):
            want = out[f"ad_mean_r{k}_t{j}"]
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7,
                                       err_msg=f"round {k} tensor {j}")
            worst_mean = max(worst_mean, float(np.max(np.abs(got.astype(np.float64) - want))))
    # Assert
    np.testing.assert_allclose(clips, out["ad_clip"], rtol=2e-5)
    np.testing.assert_allclose(next_clips, out["ad_next_clip"], rtol=2e-5)
    assert clips[-1] > 5 * ADAPTIVE["c0"]  # the clip really moved
    print(f"adaptive clip, {len(rounds)} rounds: clip {clips[0]:.3g} -> {next_clips[-1]:.4g}; "
          f"max rel clip diff {_rel(next_clips, out['ad_next_clip']):.3g}; "
          f"max |mean diff| {worst_mean:.3g}")


def test_adaptive_clip_counts_a_norm_equal_to_the_clip_as_unclipped(oracle):
    # Prepare: 3 of 4 norms equal C exactly; "<=" gives b~ = 0.75, "<" would give 0
    out = oracle["out"]
    agg = DPAggregator(noise_multiplier=0.0, clip_norm=TIE["c0"], expected_cohort=TIE["m"],
                       adaptive=True, target_quantile=TIE["gamma"], clip_lr=TIE["eta"],
                       clipped_count_stddev=0.0)
    # Execute
    mean, report = agg.aggregate(oracle["ties"], server_round=1)
    # Assert
    assert report["num_clipped"] == 1
    assert report["noisy_unclipped_fraction"] == 0.75
    np.testing.assert_allclose(report["next_clip_norm"], out["tie_next_clip"][0], rtol=1e-6)
    for j, got in enumerate(mean):
        np.testing.assert_allclose(got, out[f"tie_mean_r0_t{j}"], rtol=1e-6, atol=1e-8)


def test_noise_scale_and_adaptive_noise_split(oracle):
    # Prepare
    out, zd, sb = oracle["out"], oracle["zd"], oracle["count_std"]
    z, c, m = NOISE["z"], NOISE["clip"], NOISE["m"]
    zeros = [[np.zeros(NOISE["size"], np.float32)] for _ in range(2)]
    # Execute
    fixed_mean, fixed_rep = DPAggregator(z, c, m, seed=5).aggregate(zeros, server_round=1)
    ad_mean, ad_rep = DPAggregator(z, c, m, seed=5, adaptive=True).aggregate(zeros, 1)
    # Assert: same convention on both sides
    assert float(out["noise_fixed_std"]) == pytest.approx(z * c / m, rel=0.02)
    assert np.std(fixed_mean[0].astype(np.float64)) == pytest.approx(z * c / m, rel=0.02)
    assert ad_rep["update_noise_multiplier"] == pytest.approx(zd, rel=1e-12)
    assert float(out["noise_adaptive_std"]) == pytest.approx(zd * c / m, rel=0.02)
    assert np.std(ad_mean[0].astype(np.float64)) == pytest.approx(zd * c / m, rel=0.02)
    np.testing.assert_allclose(out["adaptive_event_multipliers"], [zd, 2 * sb], rtol=1e-6)
    assert fixed_rep["mean_noise_std"] == pytest.approx(z * c / m)


def test_adaptive_round_is_charged_like_one_gaussian(oracle):
    # TF-privacy's adaptive query reports Composed([Gaussian(z_Delta), Gaussian(2 sigma_b)]);
    # fl_sim charges Gaussian(z). Same epsilon (float32 multipliers on TF's side: 1e-5).
    out, zd, sb = oracle["out"], oracle["zd"], oracle["count_std"]
    led = PrivacyLedger(NOISE["population"], NOISE["m"], "poisson", delta=NOISE["delta"])
    led.record_round(NOISE["z"], NOISE["rounds"])
    direct = dp_accounting.rdp.RdpAccountant().compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(NOISE["m"] / NOISE["population"],
                                            dp_accounting.ComposedDpEvent([
                                                dp_accounting.GaussianDpEvent(zd),
                                                dp_accounting.GaussianDpEvent(2 * sb)])),
        NOISE["rounds"])).get_epsilon(NOISE["delta"])
    eps = led.epsilon("rdp")
    single = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        NOISE["m"] / NOISE["population"], dp_accounting.GaussianDpEvent(NOISE["z"])),
        NOISE["rounds"])
    gap = _check_rdp_epsilon_vs_043(eps, float(out["eps_adaptive_event_rdp"]),
                                    out["adaptive_rdp_vec"], _rdp_vector_06(single),
                                    NOISE["delta"], rel=1e-5)
    assert eps == pytest.approx(direct, rel=REL)
    print(f"adaptive event: ledger {eps:.8g}, tfp event (0.4.3) "
          f"{float(out['eps_adaptive_event_rdp']):.8g} (rel gap {gap:.2g}), "
          f"0.6 direct {direct:.8g} (rel diff {_rel(eps, direct):.2g})")


@functools.lru_cache(maxsize=None)
def _poisson_06(n, m, rounds, z, delta):
    """dp-accounting 0.6 on the Poisson event, built here from its definition (not from
    fl_sim's code): ``(event, rdp epsilon, pld epsilon)``."""
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        m / n, dp_accounting.GaussianDpEvent(z)), rounds)
    return (event, dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(delta),
            dp_accounting.pld.PLDAccountant().compose(event).get_epsilon(delta))


@functools.lru_cache(maxsize=None)
def _fixed_06(n, m, rounds, z, delta):
    """dp-accounting 0.6 on the sampled-without-replacement event (replace-one, z/2):
    ``(rdp epsilon, whether its PLD accountant supports the event)``."""
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.SampledWithoutReplacementDpEvent(
        n, m, dp_accounting.GaussianDpEvent(z / 2)), rounds)
    replace_one = dp_accounting.NeighboringRelation.REPLACE_ONE
    return (dp_accounting.rdp.RdpAccountant(neighboring_relation=replace_one)
            .compose(event).get_epsilon(delta),
            dp_accounting.pld.PLDAccountant(neighboring_relation=replace_one).supports(event))


@functools.lru_cache(maxsize=None)
def _ledger(n, m, rounds, z, delta, sampling, orders=None):
    """fl_sim's ledger after ``rounds`` rounds (cached: it memoizes its own epsilons)."""
    led = PrivacyLedger(n, m, sampling, delta=delta, rdp_orders=orders)
    led.record_round(z, rounds)
    return led


def _warm_product_side():
    """Compute the slow fl_sim / dp-accounting 0.6 numbers into the caches above while the
    oracle runs (each side is single-threaded; on 2 cores this cuts the wall time)."""
    for n, m, rounds, z, delta in ACC_CASES:
        _poisson_06(n, m, rounds, z, delta)
        _fixed_06(n, m, rounds, z, delta)
        _ledger(n, m, rounds, z, delta, "poisson", TFP_DPSGD_ORDERS).epsilon("rdp")
        _ledger(n, m, rounds, z, delta, "poisson").epsilons()
        _ledger(n, m, rounds, z, delta, "fixed").epsilon("rdp")


def test_reference_orders_agree(oracle):
    # tf-privacy's RDP/PLD helpers use dp-accounting 0.4.3's default orders; fl_sim's
    # ledger uses 0.6's. Equal lists make the comparisons below like with like.
    np.testing.assert_array_equal(oracle["out"]["rdp_default_orders"], DEFAULT_RDP_ORDERS)


@pytest.mark.parametrize("case", range(len(ACC_CASES)),
                         ids=[f"N{c[0]}-m{c[1]}-T{c[2]}-z{c[3]:g}" for c in ACC_CASES])
def test_poisson_epsilon_matches_tfp_and_dp_accounting(oracle, case):
    # Prepare
    out = oracle["out"]
    n, m, rounds, z, delta = ACC_CASES[case]
    tfp_eps = {k: float(out[f"acc_{k}"][case])
               for k in ("eps_dpsgd", "eps_example_rdp", "eps_example_pld")}
    poisson, direct_rdp, direct_pld = _poisson_06(n, m, rounds, z, delta)
    # Execute
    on_tfp_orders = _ledger(n, m, rounds, z, delta, "poisson", TFP_DPSGD_ORDERS).epsilon("rdp")
    led = _ledger(n, m, rounds, z, delta, "poisson")
    rdp, pld = led.epsilon("rdp"), led.epsilon("pld")
    # Assert
    # compute_dp_sgd_privacy's orders are integers beyond 4.5: its optimum agrees exactly
    assert on_tfp_orders == pytest.approx(tfp_eps["eps_dpsgd"], rel=REL)
    gap = _check_rdp_epsilon_vs_043(rdp, tfp_eps["eps_example_rdp"], out["acc_rdp_vec"][case],
                                    _rdp_vector_06(poisson), delta)
    assert pld == pytest.approx(tfp_eps["eps_example_pld"], rel=REL)
    assert rdp == pytest.approx(direct_rdp, rel=REL)
    assert pld == pytest.approx(direct_pld, rel=REL)
    if (n, m, rounds, z, delta) == (100, 100, 1, 4.530877117, 1e-6):
        assert rdp == pytest.approx(1.0, rel=1e-6)  # dp-accounting's documented value
    print(f"poisson {ACC_CASES[case]}: ledger rdp {rdp:.8g} pld {pld:.8g}; rel diff vs "
          f"compute_dp_sgd_privacy {_rel(on_tfp_orders, tfp_eps['eps_dpsgd']):.2g}, "
          f"tfp rdp {gap:.2g} (fl_sim - tfp), "
          f"tfp pld {_rel(pld, tfp_eps['eps_example_pld']):.2g}, "
          f"0.6 rdp {_rel(rdp, direct_rdp):.2g}, 0.6 pld {_rel(pld, direct_pld):.2g}")


@pytest.mark.parametrize("case", range(len(ACC_CASES)),
                         ids=[f"N{c[0]}-m{c[1]}-T{c[2]}-z{c[3]:g}" for c in ACC_CASES])
def test_fixed_size_epsilon_matches_dp_accounting_and_tfp_where_it_can(oracle, case):
    # Prepare
    out = oracle["out"]
    n, m, rounds, z, delta = ACC_CASES[case]
    direct_rdp, direct_pld_supported = _fixed_06(n, m, rounds, z, delta)
    # Execute
    led = _ledger(n, m, rounds, z, delta, "fixed")
    rdp = led.epsilon("rdp")
    # Assert
    assert rdp == pytest.approx(float(out["acc_eps_wor_rdp_043"][case]), rel=REL)
    assert rdp == pytest.approx(direct_rdp, rel=REL)
    # PLD: neither dp-accounting release supports the event; fl_sim says so instead of
    # printing a number.
    assert not direct_pld_supported
    assert out["acc_pld_supports_wor_043"][case] == 0.0
    assert led.epsilon("pld") is None and led.unsupported_reason("pld")
    msg = (f"fixed {ACC_CASES[case]}: ledger rdp {rdp:.8g}; rel diff vs 0.4.3 "
           f"{_rel(rdp, out['acc_eps_wor_rdp_043'][case]):.2g}, "
           f"0.6 {_rel(rdp, direct_rdp):.2g}")
    if m == n:
        # Every client every round: tf-privacy's full-batch helper with doubled
        # sensitivity (it halves z, as fl_sim's replace-one accounting does).
        full = float(out["acc_eps_full_batch_double_sens_rdp"][case])
        assert rdp == pytest.approx(full, rel=REL)
        msg += f", tfp full-batch {_rel(rdp, full):.2g}"
    print(msg)


@pytest.mark.parametrize("case", range(len(CAL_CASES)))
def test_calibration_matches_compute_noise(oracle, case):
    # Prepare
    n, m, rounds, target, delta = CAL_CASES[case]
    tfp_z = float(oracle["out"]["cal_z"][case])
    # Execute
    z = calibrate_noise(target, delta, rounds, "poisson", n, m, rdp_orders=TFP_DPSGD_ORDERS)
    # Assert: both are the smallest feasible z within their tolerances (1e-5 and 1e-6)
    assert abs(z - tfp_z) <= 1.1e-5
    assert _ledger(n, m, rounds, z, delta, "poisson", TFP_DPSGD_ORDERS).epsilon("rdp") <= target
    print(f"calibration {CAL_CASES[case]}: fl_sim z {z:.8g}, tfp compute_noise {tfp_z:.8g}, "
          f"|diff| {abs(z - tfp_z):.2g}")


def test_which_release_is_exact_at_a_fractional_order(oracle):
    # The 0.23% case above: N = 500, m = 50 (q = 0.1), z = 0.8, 300 rounds; 0.4.3's optimal
    # order 2.1 is fractional. RDP of the Poisson-subsampled Gaussian at order a is
    # log(A_a) / (a - 1), A_a = E_{x~N(0, z^2)}[((1 - q) + q exp((2x - 1) / (2 z^2)))^a]
    # (Mironov, Talwar, Zhang 2019, Sec. 3); integrate it numerically.
    n, m, rounds, z, _ = ACC_CASES[1]
    q, a = m / n, 2.1
    k = list(DEFAULT_RDP_ORDERS).index(a)

    def integrand(x):  # in log space: the mixture term overflows for large x otherwise
        mix = np.logaddexp(np.log1p(-q), np.log(q) + (2 * x - 1) / (2 * z * z))
        return np.exp(-x * x / (2 * z * z) + a * mix) / (z * np.sqrt(2 * np.pi))

    # The integrand peaks near x = a and is < 1e-100 outside [-30, 30] for z = 0.8.
    big, _ = integrate.quad(integrand, -30, 30, points=[0.0, 0.5, a], epsabs=0,
                            epsrel=1e-12, limit=500)
    exact = np.log(big) / (a - 1) * rounds
    rdp_043 = float(oracle["out"]["acc_rdp_vec"][1][k])
    poisson = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(z)), rounds)
    rdp_06 = float(_rdp_vector_06(poisson)[k])
    assert rdp_043 == pytest.approx(exact, rel=1e-8)  # tf-privacy's dp-accounting: exact
    assert rdp_06 >= exact  # fl_sim's dp-accounting 0.6: a valid, looser upper bound
    print(f"order {a}: exact RDP {exact:.10g}, 0.4.3 {rdp_043:.10g}, 0.6 {rdp_06:.10g} "
          f"(+{(rdp_06 - exact) / exact:.2%})")
