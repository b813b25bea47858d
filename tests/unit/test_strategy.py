"""The FedAvg strategy: sampling, per-client validation and aggregation (no Flower runtime)."""

import numpy as np

from fl_sim.config import from_dict
from fl_sim.sampling import sample_clients
from fl_sim.partitioning import split_over_nodes
from strategies.fedavg_strategy import FedAvgDelta


def test_sampling_is_seeded_stateless_and_without_replacement():
    ids = [f"c{i}" for i in range(100)]
    a = sample_clients(ids, 10, seed=3, server_round=7)
    assert a == sample_clients(ids, 10, seed=3, server_round=7)
    assert a != sample_clients(ids, 10, seed=3, server_round=8)
    assert a != sample_clients(ids, 10, seed=4, server_round=7)
    assert len(set(a)) == 10 and set(a) <= set(ids)
    assert sample_clients(ids[:3], 10, seed=0, server_round=1) == ids[:3]


def test_poisson_sampling_rate_and_determinism():
    ids = [f"c{i}" for i in range(1000)]
    sizes = [len(sample_clients(ids, 50, seed=1, server_round=r, scheme="poisson")) for r in range(200)]
    assert abs(sum(sizes) / len(sizes) - 50) < 2.5  # q = 0.05, std of the mean ~0.5
    assert len(set(sizes)) > 5
    assert sample_clients(ids, 50, 1, 3, "poisson") == sample_clients(ids, 50, 1, 3, "poisson")


def test_split_over_nodes_round_robin():
    plan = split_over_nodes(["a", "b", "c", "d", "e"], [30, 10, 20])
    assert plan == {10: ["a", "d"], 20: ["b", "e"], 30: ["c"]}


def test_split_over_nodes_balances_steps_longest_first():
    steps = {"a": 10, "b": 1, "c": 4, "d": 3, "e": 3, "f": 9}
    plan = split_over_nodes(list(steps), [20, 10], cost=steps.__getitem__)
    # Longest first: a->10, f->20, c->20, d->10, e->10 (a tie: the lower node id), b->20.
    assert plan == {10: ["a", "d", "e"], 20: ["b", "c", "f"]}
    assert sorted(sum(steps[c] for c in cids) for cids in plan.values()) == [14, 16]
    # Round-robin would give 17 / 13; one heavy client per node, and all clients placed once.
    big = {f"c{i}": (100 if i < 3 else 1) for i in range(30)}
    plan = split_over_nodes(list(big), [1, 2, 3], cost=big.__getitem__)
    assert sorted(c for cids in plan.values() for c in cids) == sorted(big)
    assert [sum(big[c] for c in cids) for cids in plan.values()] == [109, 109, 109]


def test_client_cost_is_the_trainers_step_count_and_reaches_the_innermost_strategy():
    from fl_sim.partitioning import local_steps
    from strategies.registry import make_strategy as build

    for epochs, batch, cap in [(1, 16, 0), (3, 4, 0), (2, 8, 5)]:
        c = from_dict({"client": {"local_epochs": epochs, "batch_size": batch, "max_steps": cap}}).client
        for n in (1, 7, 8, 33):
            per_epoch = max(1, -(-n // batch))
            assert local_steps(c, n) == min(epochs * per_epoch, cap or 10**9)
    cfg = from_dict({"privacy": {"enabled": True, "noise_multiplier": 1.0},
                     "pruning": {"enabled": True}, "server": {"clients_per_round": 2}})
    s = build("fedavg", cfg, ["a", "b", "c"], "")
    core = s.inner.inner
    assert type(core).__name__ == "FedAvgDelta"
    cost = {"a": 1, "b": 2, "c": 3}.__getitem__
    s.set_client_cost(cost)            # through both wrappers' public hooks
    assert core.client_cost is cost


def make_strategy(**server):
    cfg = from_dict({"server": {"clients_per_round": 4, **server}})
    s = FedAvgDelta(cfg, ["a", "b", "c", "d"], "")
    s.current = [np.array([1.0, 1.0], np.float32), np.zeros((2, 2), np.float32)]
    s.last_cohort = ["a", "b", "c", "d"]
    return s


def res(cid, v, n, loss=1.0):
    return (cid, [np.array([v, -v], np.float32), np.full((2, 2), v, np.float32)],
            {"num_examples": n, "train_loss": loss, "steps": 1})


def test_aggregation_equals_numpy_fedavg_regardless_of_order():
    # Prepare
    results = [res("b", 2.0, 3, loss=2.0), res("a", 1.0, 1, loss=1.0)]
    expected_delta = (1.0 * 1 + 2.0 * 3) / 4
    # Execute
    new, m = make_strategy().aggregate_results(1, results)
    new_rev, _ = make_strategy().aggregate_results(1, results[::-1])
    # Assert
    np.testing.assert_array_equal(new[0], np.array([1 + expected_delta, 1 - expected_delta], np.float32))
    np.testing.assert_array_equal(new[1], np.full((2, 2), expected_delta, np.float32))
    for x, y in zip(new, new_rev):
        np.testing.assert_array_equal(x, y)
    assert m["train_loss"] == (1.0 * 1 + 2.0 * 3) / 4
    assert (m["clients_sampled"], m["clients_completed"], m["clients_failed"]) == (4, 2, 2)


def test_unweighted_mean_and_server_lr():
    new, _ = make_strategy(weighted=False, lr=0.5).aggregate_results(1, [res("a", 1.0, 1), res("b", 3.0, 9)])
    np.testing.assert_allclose(new[0], [1 + 0.5 * 2.0, 1 - 0.5 * 2.0])


def test_bad_updates_are_rejected_individually_and_counted():
    s = make_strategy()
    nan = res("c", 1.0, 2)
    nan[1][0][0] = np.nan
    wrong_shape = ("d", [np.zeros(3, np.float32), np.zeros((2, 2), np.float32)], {"num_examples": 1, "train_loss": 0.0})
    new, m = s.aggregate_results(1, [res("a", 1.0, 1), nan, wrong_shape])
    assert m["clients_rejected"] == 2 and m["clients_completed"] == 1 and m["clients_failed"] == 1
    np.testing.assert_array_equal(new[0], [2.0, 0.0])


def test_round_skipped_below_min_clients():
    new, m = make_strategy(min_clients=2).aggregate_results(1, [res("a", 1.0, 1)])
    assert new is None and m["skipped"] == 1 and m["clients_completed"] == 1
