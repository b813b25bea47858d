"""tensorflow-privacy 0.9 oracle for tests/integration/test_tfp_crosscheck.py.

Runs INSIDE the reference venv (.venv-ref: TF 2.15.1, tensorflow-privacy 0.9.0,
dp-accounting 0.4.3), never in fl_sim's own: TF 2.15 needs protobuf < 5, which Flower
cannot share. Usage:

    .venv-ref/bin/python tests/reference/tfp_oracle.py IN.npz OUT.npz

IN.npz holds client deltas and parameters written by the test (in the product venv);
OUT.npz gets what tensorflow-privacy's queries and accounting helpers compute for them:

- fixed clip, zero noise: ``NormalizedQuery(GaussianSumQuery(C, 0), m)`` (what TFF's
  ``DifferentiallyPrivateFactory.gaussian_fixed`` builds) -> the mean of one round;
- adaptive clip, zero noise and zero count noise:
  ``NormalizedQuery(QuantileAdaptiveClipSumQuery(..., geometric_update=True), m)`` (TFF's
  ``gaussian_adaptive``) over several rounds -> the clip used each round and the means;
  and one round where norms equal the clip exactly (is a tie "unclipped"?);
- noise scale: both queries with noise on all-zero records -> empirical std of the mean,
  and the DpEvent the adaptive query itself reports;
- accounting, for each case of a small grid: ``compute_dp_sgd_privacy`` (Poisson, RDP,
  its own orders), ``_compute_dp_sgd_example_privacy`` (the helper behind
  ``compute_dp_sgd_privacy_statement``; Poisson, RDP and PLD; with q = 1 also the
  full-batch, doubled-sensitivity variant), dp-accounting 0.4.3 directly for fixed-size
  sampling (tensorflow-privacy 0.9 has no helper for it), and ``compute_noise`` (the
  calibration helper).

A run that cannot produce a number raises: the test turns a non-zero exit into a failure.
"""

import math
import os
import sys
from importlib.metadata import version

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF 2.15 with Keras 2 built in: a TF_USE_LEGACY_KERAS inherited from a caller (the pfl
# venv needs it) would send tf.keras to the tf_keras package, which this venv lacks.
os.environ.pop("TF_USE_LEGACY_KERAS", None)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import dp_accounting  # noqa: E402
import tensorflow_privacy as tfp  # noqa: E402
from tensorflow_privacy.privacy.analysis import compute_dp_sgd_privacy_lib as dpsgd_lib  # noqa: E402
from tensorflow_privacy.privacy.analysis import compute_noise_from_budget_lib as noise_lib  # noqa: E402


# ----------------------------------------------------------------------------- queries
def _records(inp, prefix, n_tensors):
    """Client i's update as a list of tensors, from the stacked ``{prefix}_t{j}`` arrays."""
    stacked = [inp[f"{prefix}_t{j}"] for j in range(n_tensors)]
    n = stacked[0].shape[0]
    return [[tf.constant(stacked[j][i]) for j in range(n_tensors)] for i in range(n)]


def _run_round(query, state, records, template, accumulate=None):
    """One round of a DPQuery, the way TFF's DP aggregator drives it."""
    accumulate = accumulate or query.accumulate_record
    params = query.derive_sample_params(state)
    sample = query.initial_sample_state(template)
    for rec in records:
        sample = accumulate(params, sample, rec)
    result, state, event = query.get_noised_result(sample, state)
    return [np.asarray(r) for r in result], state, event


def fixed_clip(inp, out):
    nt = int(inp["fixed_n_tensors"])
    records = _records(inp, "fixed", nt)
    query = tfp.NormalizedQuery(
        tfp.GaussianSumQuery(l2_norm_clip=float(inp["fixed_clip"]), stddev=0.0),
        denominator=float(inp["fixed_m"]))
    mean, _, _ = _run_round(query, query.initial_global_state(), records, records[0])
    for j, t in enumerate(mean):
        out[f"fixed_mean_t{j}"] = t


def _adaptive_query(c0, z, gamma, eta, count_std, m):
    return tfp.NormalizedQuery(
        tfp.QuantileAdaptiveClipSumQuery(
            initial_l2_norm_clip=c0, noise_multiplier=z, target_unclipped_quantile=gamma,
            learning_rate=eta, clipped_count_stddev=count_std, expected_num_records=m,
            geometric_update=True),
        denominator=m)


def adaptive_clip(inp, out, p="ad"):
    """The ``{p}_*`` run: clip before/after each round and each round's mean."""
    nt, rounds = int(inp[f"{p}_n_tensors"]), int(inp[f"{p}_rounds"])
    query = _adaptive_query(float(inp[f"{p}_c0"]), 0.0, float(inp[f"{p}_gamma"]),
                            float(inp[f"{p}_eta"]), 0.0, float(inp[f"{p}_m"]))
    state = query.initial_global_state()
    # Graph mode (as TFF runs the query) for the per-client step: ~800 eager calls
    # otherwise dominate the oracle's run time. One trace: the shapes never change.
    accumulate = tf.function(query.accumulate_record)
    clips, next_clips = [], []
    for r in range(rounds):
        clips.append(float(query.derive_metrics(state)["clip"]))
        records = _records(inp, f"{p}_r{r}", nt)
        mean, state, _ = _run_round(query, state, records, records[0], accumulate)
        next_clips.append(float(query.derive_metrics(state)["clip"]))
        for j, t in enumerate(mean):
            out[f"{p}_mean_r{r}_t{j}"] = t
    out[f"{p}_clip"] = np.array(clips)
    out[f"{p}_next_clip"] = np.array(next_clips)


def noise_scale(inp, out):
    size, m = int(inp["noise_size"]), float(inp["noise_m"])
    z, clip = float(inp["noise_z"]), float(inp["noise_clip"])
    zeros = [[tf.zeros([size], tf.float32)] for _ in range(2)]  # pure noise
    tf.random.set_seed(1234)
    fixed = tfp.NormalizedQuery(tfp.GaussianSumQuery(clip, z * clip), denominator=m)
    mean, _, _ = _run_round(fixed, fixed.initial_global_state(), zeros, zeros[0])
    out["noise_fixed_std"] = np.std(mean[0].astype(np.float64))
    adaptive = _adaptive_query(clip, float(inp["noise_zd"]), 0.5, 0.2,
                               float(inp["noise_count_std"]), m)
    mean, _, event = _run_round(adaptive, adaptive.initial_global_state(), zeros, zeros[0])
    out["noise_adaptive_std"] = np.std(mean[0].astype(np.float64))
    # The adaptive query reports Composed([Gaussian(z_delta), Gaussian(2 sigma_b)]).
    out["adaptive_event_multipliers"] = np.array(
        [float(e.noise_multiplier) for e in event.events])
    adaptive_event = dp_accounting.ComposedDpEvent(
        [dp_accounting.GaussianDpEvent(float(e.noise_multiplier)) for e in event.events])
    n, rounds, delta = int(inp["noise_population"]), int(inp["noise_rounds"]), float(inp["noise_delta"])
    poisson = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(m / n, adaptive_event), rounds)
    acc = dp_accounting.rdp.RdpAccountant().compose(poisson)
    out["eps_adaptive_event_rdp"] = acc.get_epsilon(delta)
    out["adaptive_rdp_vec"] = np.array(acc._rdp)  # per order, to locate any difference


# ----------------------------------------------------------------------------- accounting
def _steps_check(implied, rounds, helper):
    # The helpers take epochs and round the step count up; a float-rounding slip would
    # silently account one extra round, so insist that they count exactly `rounds`.
    if implied != rounds:
        raise RuntimeError(f"{helper} would count {implied} steps for {rounds} rounds")


def accounting_case(n, m, rounds, z, delta):
    """tensorflow-privacy's and dp-accounting 0.4.3's epsilons for one (N, m, T, z, delta)."""
    q = m / n
    epochs = rounds * m / n
    _steps_check(int(math.ceil(epochs * n / m)), rounds, "compute_dp_sgd_privacy")
    _steps_check(int(math.ceil(epochs / q)), rounds, "_compute_dp_sgd_example_privacy")
    res = {}
    res["eps_dpsgd"], res["order_dpsgd"] = tfp.compute_dp_sgd_privacy(
        n=n, batch_size=m, noise_multiplier=z, epochs=epochs, delta=delta)
    for name, kind in (("rdp", dpsgd_lib.AccountantType.RDP),
                       ("pld", dpsgd_lib.AccountantType.PLD)):
        # used_microbatching=False: the sum of clipped updates has add/remove sensitivity C.
        res[f"eps_example_{name}"] = dpsgd_lib._compute_dp_sgd_example_privacy(
            num_epochs=epochs, noise_multiplier=z, example_delta=delta,
            used_microbatching=False, poisson_subsampling_probability=q,
            accountant_type=kind)
    # dp-accounting 0.4.3's RDP per (default) order of the same Poisson event: lets the test
    # attribute any epsilon difference to the orders where the two releases disagree.
    poisson = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(z)), rounds)
    res["rdp_vec"] = np.array(dp_accounting.rdp.RdpAccountant().compose(poisson)._rdp)
    # Full batch with doubled sensitivity (tf-privacy halves z for it): the only fixed-size
    # case tensorflow-privacy itself covers, that of m = N (every client, every round,
    # replace-one adjacency doubles the sensitivity of the sum).
    res["eps_full_batch_double_sens_rdp"] = (
        dpsgd_lib._compute_dp_sgd_example_privacy(
            num_epochs=rounds, noise_multiplier=z, example_delta=delta,
            used_microbatching=True, poisson_subsampling_probability=None,
            accountant_type=dpsgd_lib.AccountantType.RDP) if m == n else np.nan)
    # Fixed-size sampling without replacement: dp-accounting 0.4.3 directly (replace-one,
    # the multiplier relative to the replace-one sensitivity 2C is z/2).
    wor = dp_accounting.SelfComposedDpEvent(dp_accounting.SampledWithoutReplacementDpEvent(
        n, m, dp_accounting.GaussianDpEvent(z / 2)), rounds)
    replace_one = dp_accounting.NeighboringRelation.REPLACE_ONE
    res["eps_wor_rdp_043"] = (dp_accounting.rdp.RdpAccountant(neighboring_relation=replace_one)
                              .compose(wor).get_epsilon(delta))
    res["pld_supports_wor_043"] = float(
        dp_accounting.pld.PLDAccountant(neighboring_relation=replace_one).supports(wor))
    return res


def accounting(inp, out):
    cases = list(zip(inp["acc_population"].tolist(), inp["acc_cohort"].tolist(),
                     inp["acc_rounds"].tolist(), inp["acc_z"].tolist(),
                     inp["acc_delta"].tolist()))
    rows = [accounting_case(int(n), int(m), int(t), float(z), float(d))
            for n, m, t, z, d in cases]
    for key in rows[0]:
        out[f"acc_{key}"] = np.array([r[key] for r in rows], dtype=np.float64)
    out["rdp_default_orders"] = np.array(
        dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS)


def calibration(inp, out):
    """compute_noise: the noise multiplier reaching a target epsilon (Poisson, RDP)."""
    zs = []
    for n, m, t, eps, d in zip(inp["cal_population"].tolist(), inp["cal_cohort"].tolist(),
                               inp["cal_rounds"].tolist(), inp["cal_epsilon"].tolist(),
                               inp["cal_delta"].tolist()):
        epochs = t * m / n
        _steps_check(int(math.ceil(epochs * n / m)), int(t), "compute_noise")
        z = noise_lib.compute_noise(int(n), int(m), float(eps), epochs, float(d), noise_lbd=0.1)
        if not z > 0:
            raise RuntimeError(f"compute_noise found no multiplier for {n, m, t, eps, d}")
        zs.append(z)
    out["cal_z"] = np.array(zs, dtype=np.float64)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    inp = dict(np.load(argv[1]))
    out = {}
    fixed_clip(inp, out)
    adaptive_clip(inp, out)
    adaptive_clip(inp, out, "tie")  # norms exactly equal to the clip
    noise_scale(inp, out)
    accounting(inp, out)
    calibration(inp, out)
    out["versions"] = np.array([f"tensorflow {tf.__version__}",
                                f"tensorflow-privacy {version('tensorflow-privacy')}",
                                f"dp-accounting {version('dp-accounting')}"])
    np.savez(argv[2], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
