"""Tree aggregation (fl_sim/privacy/tree.py) and its accounting (tree_accountant.py):
the dyadic decomposition, the noise on every prefix sum, and epsilon against
dp-accounting called directly."""

import dp_accounting
import numpy as np
import pytest
from dp_accounting import NeighboringRelation
from scipy import stats

from fl_sim.privacy.calibration import calibrate_tree_noise
from fl_sim.privacy.tree import prefix_nodes, prefix_noise, tree_cohort, tree_depth
from fl_sim.privacy.tree_accountant import TreeLedger, tree_epsilon


def interval(level, index):
    return set(range(index * 2 ** level + 1, (index + 1) * 2 ** level + 1))


@pytest.mark.parametrize("k", range(1, 130))
def test_prefix_nodes_tile_the_prefix_one_node_per_set_bit(k):
    nodes = prefix_nodes(k)
    covered = [interval(*n) for n in nodes]
    assert set().union(*covered) == set(range(1, k + 1))
    assert sum(len(c) for c in covered) == k  # disjoint
    assert len(nodes) == bin(k).count("1")


@pytest.mark.parametrize("steps", range(1, 70))
def test_depth_is_the_most_nodes_one_step_enters(steps):
    # Nodes a tree of `steps` steps ever releases: those of some prefix k <= steps.
    used = {n for k in range(1, steps + 1) for n in prefix_nodes(k)}
    most = max(sum(1 for n in used if leaf in interval(*n)) for leaf in range(1, steps + 1))
    assert tree_depth(steps) == most
    # dp-accounting 0.6 charges ceil(log2(steps + 1)) nodes per step
    assert tree_depth(steps) == int(np.ceil(np.log2(steps + 1)))


def test_prefix_noise_variance_and_covariance_on_every_prefix():
    """Var(n_k) = popcount(k) sigma^2 and Cov(n_j, n_k) = sigma^2 * (shared nodes), k <= 16.

    200 keys x 500 coordinates = 100,000 independent draws per prefix. Each variance is
    checked with the exact chi-square interval of (n-1) s^2 / sigma_k^2 at two-sided level
    1e-6, each mean (z test) and each covariance (as a correlation, Fisher z) at 1e-6 too:
    with 16 + 16 + 15 tests the family-wise false-failure rate is below 4.7e-5
    (Bonferroni), on any machine (the draws are seeded, so a given build either always
    passes or always fails).
    """
    sigma, K, keys, coords = 0.7, 16, 200, 500
    draws = np.stack([np.stack([prefix_noise(sigma, key, 3, k, [np.zeros(coords)])[0]
                                for k in range(1, K + 1)]) for key in range(keys)])
    x = draws.transpose(1, 0, 2).reshape(K, -1)  # prefix -> all draws
    n = x.shape[1]
    alpha = 1e-6
    lo, hi = stats.chi2.ppf(alpha / 2, n - 1), stats.chi2.ppf(1 - alpha / 2, n - 1)
    for k in range(1, K + 1):
        var_k = bin(k).count("1") * sigma ** 2
        statistic = (n - 1) * x[k - 1].var(ddof=1) / var_k
        assert lo < statistic < hi, (k, x[k - 1].var(ddof=1), var_k)
        assert abs(x[k - 1].mean()) < stats.norm.ppf(1 - alpha / 2) * np.sqrt(var_k / n)
    zcrit = stats.norm.ppf(1 - alpha / 2) / np.sqrt(n - 3)
    for k in range(2, K + 1):
        shared = len(set(prefix_nodes(k - 1)) & set(prefix_nodes(k)))
        rho = shared / np.sqrt(bin(k - 1).count("1") * bin(k).count("1"))
        r = np.corrcoef(x[k - 2], x[k - 1])[0, 1]
        assert abs(np.arctanh(r) - np.arctanh(rho)) < zcrit, (k, r, rho)


def test_prefix_noise_is_keyed_by_key_tree_and_node():
    t = [np.zeros(5), np.zeros((2, 3))]
    a = prefix_noise(1.0, 7, 0, 3, t)
    assert all(np.array_equal(u, v) for u, v in zip(a, prefix_noise(1.0, 7, 0, 3, t)))
    assert not np.array_equal(a[0], prefix_noise(1.0, 8, 0, 3, t)[0])
    assert not np.array_equal(a[0], prefix_noise(1.0, 7, 1, 3, t)[0])
    # prefix 3 = node [1,2] + node [3]; prefix 2 = node [1,2]: they share that draw exactly
    diff = [u - v for u, v in zip(a, prefix_noise(1.0, 7, 0, 2, t))]
    single = prefix_noise(1.0, 7, 0, 1, t)  # node [1] alone, not node [3]
    assert not np.allclose(diff[0], single[0])
    assert all(np.all(u == 0) for u in prefix_noise(0.0, 7, 0, 3, t))


def test_tree_cohorts_are_disjoint_within_a_tree():
    steps = [set(tree_cohort(20, 4, 5, 2, k)) for k in range(1, 6)]
    assert set().union(*steps) == set(range(20)) and sum(map(len, steps)) == 20
    with pytest.raises(ValueError, match="distinct clients"):
        tree_cohort(20, 4, 5, 2, 6)


@pytest.mark.parametrize("z,rounds,R", [(1.0, 7, 4), (0.6, 60, 24), (2.5, 24, 24), (1.3, 5, 100)])
def test_epsilon_equals_dp_accounting_called_directly(z, rounds, R):
    delta = 1e-5
    led = TreeLedger(population=1000, expected_cohort=10, restart_rounds=R, delta=delta)
    for _ in range(rounds):
        led.record_round(z)
    # The reference composes one SingleEpochTreeAggregationDpEvent per tree, listed one by one.
    full, rest = divmod(rounds, R)
    trees = [R] * full + ([rest] if rest else [])
    acc = dp_accounting.rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_SPECIAL)
    acc.compose(dp_accounting.ComposedDpEvent(
        [dp_accounting.SingleEpochTreeAggregationDpEvent(z, s) for s in trees]))
    ref = acc.get_epsilon(delta)
    # Same library, same orders, same conversion: equal up to float summation order.
    assert led.epsilon("rdp") == pytest.approx(ref, rel=1e-12)
    assert led.epsilon("pld") is None and "PLD" in led.epsilons()["pld_reason"]
    # Once per tree costs more than once across all trees (what the list form would claim).
    once = dp_accounting.rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_SPECIAL)
    once.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(z, trees))
    assert once.get_epsilon(delta) <= ref * (1 + 1e-12)


def test_pld_and_other_relations_really_refuse_the_tree_event():
    event = dp_accounting.SingleEpochTreeAggregationDpEvent(1.0, 8)
    assert not dp_accounting.pld.PLDAccountant().supports(event)
    assert not dp_accounting.rdp.RdpAccountant(
        neighboring_relation=NeighboringRelation.REPLACE_ONE).supports(event)


def test_calibration_reaches_the_target_from_the_private_side():
    z = calibrate_tree_noise(4.0, 1e-6, rounds=60, restart_rounds=24, population=1248)
    assert tree_epsilon(z, 60, 24, 1e-6) <= 4.0
    # Z_TOL = 1e-5 absolute: a step of 2e-5 below crosses the target
    assert tree_epsilon(z - 2e-5, 60, 24, 1e-6) > 4.0


def test_ledger_round_trip_and_one_z():
    led = TreeLedger(50, 5, 10)
    assert led.delta == pytest.approx(50 ** -1.1)
    for _ in range(13):
        led.record_round(0.9)
    back = TreeLedger.from_dict(led.to_dict())
    assert back.epsilon() == led.epsilon() and back.rounds == 13
    assert led.epsilon_if_next_round(0.9, rounds=2) == pytest.approx(
        tree_epsilon(0.9, 15, 10, led.delta), rel=0)
    with pytest.raises(ValueError, match="charged at z"):
        led.record_round(1.0)
    with pytest.raises(ValueError, match="not a DP-FTRL ledger"):
        TreeLedger.from_dict({"version": 1, "segments": []})
