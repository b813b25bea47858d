"""DP-FTRL as a strategy wrapper (strategies/dp_ftrl.py): the noiseless trajectory against a
NumPy FTRL, the noise on the released prefix sums, at-most-once-per-tree sampling,
exact resume from a real checkpoint file, and the settings it refuses."""

import numpy as np
import pytest
from scipy import stats

from fl_sim import checkpoint
from fl_sim.config import ConfigError, from_dict
from fl_sim.privacy.tree_accountant import tree_epsilon
from strategies.dp_ftrl import DPFTRL
from strategies.registry import make_strategy

SHAPES = [(3, 4), (5,)]


def config(rounds=8, m=3, server=None, **privacy):
    return from_dict({"experiment": {"rounds": rounds, "seed": privacy.pop("seed", 0)},
                      "server": {"clients_per_round": m, **(server or {})},
                      "privacy": {"enabled": True, "mechanism": "dp_ftrl", **privacy}})


def strategy(population=12, **kw):
    return make_strategy("fedavg", config(**kw), [f"c{i:02d}" for i in range(population)], "")


def update(cid, rnd):
    """A client's delta, fixed by (client, round); norms around 1, so C = 0.8 clips some."""
    g = np.random.default_rng([int(cid[1:]), rnd])
    return [(g.normal(size=s) * 0.3).astype(np.float32) for s in SHAPES]


def play(s, rounds, start=1, weights=None, drop=()):
    """Run rounds through the real aggregate_results; ``drop``: (round, client) that fail."""
    w = weights if weights is not None else [np.full(sh, 0.5, np.float32) for sh in SHAPES]
    traj, cohorts = [], []
    for r in range(start, start + rounds):
        s.inner.current = w
        cohort = s._cohort(r)
        s.inner.last_cohort = cohort
        cohorts.append(cohort)
        res = [(c, update(c, r), {"num_examples": 4, "train_loss": 1.0}) for c in cohort
               if (r, c) not in drop]
        w, _ = s.inner.aggregate_results(r, res)
        traj.append(w)
    return traj, cohorts


def numpy_ftrl(w0, cohorts, drop, C, lr, momentum, m, R):
    """FTRL(M) on the clipped sums, written from the equations (float64 throughout)."""
    theta = [np.asarray(w, np.float64) for w in w0]
    out = []
    for r, cohort in enumerate(cohorts, start=1):
        if (r - 1) % R == 0:  # restart: anchor at the current model, empty prefix, v = 0
            anchor, prefix, v = [t.copy() for t in theta], [0 * t for t in theta], [0 * t for t in theta]
        for c in cohort:
            if (r, c) in drop:
                continue
            u = [np.asarray(t, np.float64) for t in update(c, r)]
            norm = np.sqrt(sum(float(np.sum(t * t)) for t in u))
            prefix = [p + t * min(1.0, C / norm) for p, t in zip(prefix, u)]
        v = [momentum * a + p for a, p in zip(v, prefix)]
        theta = [a + lr / m * b for a, b in zip(anchor, v)]
        out.append(theta)
    return out


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_noiseless_trajectory_equals_numpy_ftrl(momentum):
    lr, C, R = 0.7, 0.8, 3
    s = strategy(noise_multiplier=0.0, clip_norm=C, tree_restart_rounds=R,
                 server={"lr": lr, "momentum": momentum})
    drop = {(2, None), (5, "c03"), (5, "c07")}
    w0 = [np.full(sh, 0.5, np.float32) for sh in SHAPES]
    traj, cohorts = play(s, 8, weights=w0, drop=drop)
    ref = numpy_ftrl(w0, cohorts, drop, C, lr, momentum, 3, R)
    clipped = sum(1 for r, co in enumerate(cohorts, 1) for c in co
                  if np.sqrt(sum(float(np.sum(t.astype(float) ** 2)) for t in update(c, r))) > C)
    assert clipped > 0  # the reference is exercised with clipping on
    for got, want in zip(traj, ref):
        for g, w in zip(got, want):
            assert g.dtype == np.float32
            # float32: clipped updates and weights are rounded to float32 (relative 6e-8 per
            # op); 8 rounds of sums of <= 3 updates stay far below 1e-5 relative.
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_released_models_carry_the_tree_noise_on_every_prefix():
    """With all-zero updates, (m / lr) (theta_k - theta_0) is the noise on prefix k alone:
    its variance must be popcount(k) (z C)^2, for every step of a tree of 8 and after a
    restart. 300 seeds x 17 coordinates = 5,100 draws per step; chi-square interval at
    two-sided level 1e-6 per step: family-wise false-failure rate < 1e-5 for 10 steps."""
    z, C, lr, m, R, seeds = 1.5, 0.4, 0.5, 3, 8, 300
    per_step = [[] for _ in range(R + 2)]
    for seed in range(seeds):
        s = strategy(population=30, rounds=R + 2, noise_multiplier=z, clip_norm=C,
                     tree_restart_rounds=R, seed=seed, server={"lr": lr})
        w = [np.zeros(sh, np.float32) for sh in SHAPES]
        anchor = w
        for r in range(1, R + 3):
            s.inner.current = w
            s.inner.last_cohort = s._cohort(r)
            w, _ = s.inner.aggregate_results(r, [(c, [np.zeros(sh, np.float32) for sh in SHAPES],
                                                  {"num_examples": 1, "train_loss": 0.0})
                                                 for c in s.inner.last_cohort])
            if r == R + 1:
                anchor_next = prev
            base = anchor if r <= R else anchor_next
            per_step[r - 1].append(np.concatenate([(a.astype(np.float64) - b).ravel()
                                                   for a, b in zip(w, base)]) * m / lr)
            prev = w
    alpha = 1e-6
    for r, draws in enumerate(per_step, start=1):
        x = np.concatenate(draws)
        k = (r - 1) % R + 1
        var = bin(k).count("1") * (z * C) ** 2
        n = x.size
        stat = (n - 1) * x.var(ddof=1) / var
        # float32 weights: (m/lr) * rounding of ~1e-7 relative, negligible against sigma
        assert stats.chi2.ppf(alpha / 2, n - 1) < stat < stats.chi2.ppf(1 - alpha / 2, n - 1), (r, x.var(), var)


def test_each_client_at_most_once_per_tree_and_uniform():
    s = strategy(population=20, rounds=15, m=4, noise_multiplier=1.0)
    assert s.R == 5  # default: floor(20 / 4), one pass over the clients per tree
    _, cohorts = play(s, 15)
    for t in range(3):
        tree = [c for co in cohorts[5 * t:5 * t + 5] for c in co]
        assert len(tree) == len(set(tree)) == 20
    short = strategy(population=20, rounds=9, m=4, noise_multiplier=1.0, tree_restart_rounds=3)
    _, cohorts = play(short, 9)
    for t in range(3):
        tree = [c for co in cohorts[3 * t:3 * t + 3] for c in co]
        assert len(tree) == len(set(tree)) == 12
    # Step 2's cohort is uniform over the clients: counts over 2,000 seeds, chi-square test
    # at level 1e-6 (false-failure rate 1e-6).
    counts = np.zeros(20)
    ids = [f"c{i:02d}" for i in range(20)]
    for seed in range(2000):
        s = make_strategy("fedavg", config(m=4, noise_multiplier=1.0, seed=seed), ids, "")
        for c in s._cohort(2):
            counts[int(c[1:])] += 1
    assert stats.chisquare(counts).pvalue > 1e-6


def test_secret_noise_still_once_per_tree_and_not_the_seeded_draw():
    s = strategy(population=20, m=4, noise_multiplier=1.0, reproducible_noise="false")
    seeded = strategy(population=20, m=4, noise_multiplier=1.0)
    _, cohorts = play(s, 5)
    tree = [c for co in cohorts for c in co]
    assert len(set(tree)) == 20
    assert cohorts != play(seeded, 5)[1]


def resume_case(tmp_path, same=3, **privacy):
    """7 rounds straight vs 4 rounds, a checkpoint file, a fresh strategy, 3 more rounds;
    the first ``same`` of them must be identical."""
    kw = dict(population=12, rounds=7, noise_multiplier=1.2, clip_norm=0.8,
              tree_restart_rounds=3, server={"momentum": 0.6}, **privacy)
    s = strategy(**kw)
    first, _ = play(s, 4)
    checkpoint.save(tmp_path, 4, first[-1], s.state(), {"strategy": s.extra_state()})
    rest, cohorts = play(s, 3, start=5, weights=first[-1])
    ckpt = checkpoint.load_latest(tmp_path)
    fresh = strategy(**kw)
    fresh.load_state(ckpt["optimizer_state"])
    fresh.load_extra_state(ckpt["extra"]["strategy"])
    again, cohorts2 = play(fresh, 3, start=5, weights=ckpt["weights"])
    assert cohorts2[:same] == cohorts[:same]
    for a, b in zip(rest[:same], again[:same]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert fresh.round_metrics(7) == s.round_metrics(7)
    return s, fresh


def test_resume_from_a_checkpoint_is_exact(tmp_path):
    s, fresh = resume_case(tmp_path)
    assert s.round_metrics(7)["epsilon_rdp"] == pytest.approx(
        tree_epsilon(1.2, 7, 3, s.ledger.delta), rel=1e-12)


def test_resume_is_exact_with_secret_noise_too(tmp_path):
    # Round 4 starts tree 1: its OS-entropy key must come back from the checkpoint, so
    # rounds 5 and 6 (the rest of tree 1) are exact. Round 7 starts tree 2 with a fresh key,
    # in the resumed run as in the uninterrupted one, so it matches only in distribution.
    s, fresh = resume_case(tmp_path, same=2, reproducible_noise="false")
    assert s.tree == fresh.tree == 2 and s.secret != fresh.secret


def test_mid_tree_state_is_required():
    s = strategy(noise_multiplier=1.0, tree_restart_rounds=3)
    s.inner.current = [np.zeros(sh, np.float32) for sh in SHAPES]
    s.inner.last_cohort = s._cohort(2)
    with pytest.raises(RuntimeError, match="not restored"):
        s.inner.aggregate_results(2, [])


def test_target_epsilon_and_budget():
    s = strategy(population=40, rounds=10, target_epsilon=6.0, tree_restart_rounds=4)
    assert tree_epsilon(s.z, 10, 4, s.ledger.delta) <= 6.0
    stop = strategy(population=40, rounds=10, noise_multiplier=1.0, tree_restart_rounds=4,
                    max_epsilon=tree_epsilon(1.0, 3, 4, 40 ** -1.1) * 1.0001)
    assert stop.before_round(1) is None
    play(stop, 2)
    # Round 3 keeps the tree's depth at 2 (epsilon unchanged); round 4 makes it 3.
    assert stop.before_round(3) is None
    play(stop, 1, start=3)
    reason = stop.before_round(4)
    assert reason and "REPLACE_SPECIAL" in reason and "privacy.max_epsilon" in reason


@pytest.mark.parametrize("extra,needle", [
    ({"accountant": "pld"}, "privacy.accountant = 'pld'"),
    ({"sampling": "poisson"}, "privacy.sampling = 'poisson'"),
    ({"adaptive_clipping": True}, "privacy.adaptive_clipping"),
])
def test_refused_settings_are_config_errors(extra, needle):
    with pytest.raises(ConfigError, match="privacy.mechanism = 'dp_ftrl'") as e:
        config(**extra)
    assert needle in str(e.value)
    with pytest.raises(ConfigError, match="audit.canaries = 5"):
        from_dict({"privacy": {"enabled": True, "mechanism": "dp_ftrl"}, "audit": {"canaries": 5}})
    with pytest.raises(ConfigError, match="server.optimizer = 'adam'"):
        config(server={"optimizer": "adam"})


def test_population_too_small_for_the_tree():
    with pytest.raises(ValueError, match="distinct clients per tree"):
        strategy(population=12, m=3, tree_restart_rounds=5)
    with pytest.raises(ValueError, match="exceeds the 2 training"):
        strategy(population=2, m=3)


def test_default_mechanism_is_still_dp_fedavg():
    cfg = from_dict({"privacy": {"enabled": True}})
    assert cfg.privacy.mechanism == "dp_fedavg"
    s = make_strategy("fedavg", cfg, [f"c{i}" for i in range(30)], "")
    assert type(s).__name__ == "DPFedAvg"
    assert isinstance(strategy(), DPFTRL)


def test_without_noise_and_momentum_ftrl_steps_equal_dp_fedavg_steps():
    """theta_k - theta_{k-1} = s_k / m: FTRL at z = 0, gamma = 0, eta = 1 makes DP-FedAvg's
    move (clipped sum over the fixed denominator) on the same cohorts and updates."""
    ftrl = strategy(noise_multiplier=0.0, clip_norm=0.8, tree_restart_rounds=2)
    traj, cohorts = play(ftrl, 5)
    fedavg = make_strategy("fedavg", from_dict({
        "experiment": {"rounds": 8}, "server": {"clients_per_round": 3},
        "privacy": {"enabled": True, "noise_multiplier": 0.0, "clip_norm": 0.8}}),
        [f"c{i:02d}" for i in range(12)], "")
    w = [np.full(sh, 0.5, np.float32) for sh in SHAPES]
    for r, (cohort, want) in enumerate(zip(cohorts, traj), start=1):
        fedavg.inner.current, fedavg.inner.last_cohort = w, cohort
        w, _ = fedavg.inner.aggregate_results(
            r, [(c, update(c, r), {"num_examples": 4, "train_loss": 1.0}) for c in cohort])
        for a, b in zip(w, want):
            # Two float32 roundings per round on different paths (anchor + prefix vs
            # previous + mean): a few ulps of values ~1 over 5 rounds.
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_deployment_scale_noise_and_both_epsilons():
    """noise_cohort_size m' = 30, accounting_population N' = 3000 for a run of m = 3 of 12:
    node noise std z C m / m'; epsilon for the deployment at z (delta 1/N'^1.1), the run's
    own at z m / m' (delta 1/N^1.1); R = min(12 // 3, 3000 // 30) = 4."""
    kw = dict(population=12, rounds=6, noise_multiplier=2.0, clip_norm=0.8,
              noise_cohort_size=30, accounting_population=3000, server={"lr": 0.5})
    s = strategy(**kw)
    assert s.R == 4
    zero = [np.zeros(sh, np.float32) for sh in SHAPES]
    w = zero
    for r in range(1, 7):
        s.inner.current = w
        s.inner.last_cohort = s._cohort(r)
        w, m = s.inner.aggregate_results(r, [(c, zero, {"num_examples": 1, "train_loss": 0.0})
                                             for c in s.inner.last_cohort])
        assert m["noise_std"] == pytest.approx(2.0 * 0.8 * 3 / 30, rel=1e-15)
    # Round 6 is step 2 of tree 1, which started from round 4's model: the released model
    # is that anchor plus (lr/m) times the momentum-free prefix noise, recomputed here.
    from fl_sim.privacy.tree import prefix_noise
    anchor = s.anchor
    want = [a.astype(np.float64) + 0.5 / 3 * n
            for a, n in zip(anchor, prefix_noise(2.0 * 0.8 * 3 / 30, 0, 1, 2, zero))]
    for g, e in zip(w, want):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)  # float32 weights
    got = s.round_metrics(6)
    assert got["epsilon_rdp"] == pytest.approx(tree_epsilon(2.0, 6, 4, 3000 ** -1.1), rel=1e-12)
    assert got["run_epsilon_rdp"] == pytest.approx(tree_epsilon(0.2, 6, 4, 12 ** -1.1), rel=1e-12)
    assert got["run_noise_multiplier"] == pytest.approx(0.2)
    assert got["epsilon_for"] == "deployment N'=3,000, m'=30"
    report = s.final_report()
    assert report["privacy_statement"].startswith("**Epsilon below is for a stated deployment")
    # The run's own ledger survives a checkpoint too
    fresh = strategy(**kw)
    fresh.load_extra_state(s.extra_state())
    assert fresh.round_metrics(6) == got
    # Calibration is for the deployment
    cal = strategy(population=12, rounds=6, target_epsilon=3.0, noise_cohort_size=30,
                   accounting_population=3000)
    assert tree_epsilon(cal.z, 6, 4, 3000 ** -1.1) <= 3.0
    with pytest.raises(ValueError, match="distinct clients of the stated deployment"):
        strategy(population=12, tree_restart_rounds=4, noise_cohort_size=30,
                 accounting_population=100)
