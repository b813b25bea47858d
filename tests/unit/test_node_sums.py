"""deployment.node_sums: a node validates and sums its clients' updates (fl_sim/updates.py),
the server averages the nodes' sums; checked against NumPy and against per-client aggregation."""

import numpy as np
import pytest
from flwr.app import ArrayRecord

from fl_sim import protocol
from fl_sim.config import ConfigError, from_dict
from fl_sim.updates import NodeSum, sum_updates, validate_update
from strategies.fedavg_strategy import FedAvgDelta

SHAPES = [(5,), (3, 4)]


pytestmark = pytest.mark.usefixtures("task_identity")  # tests/conftest.py


def update(rng, scale=1.0):
    return [(scale * rng.standard_normal(s)).astype(np.float32) for s in SHAPES]


def cohort(seed=0, n=12):
    """n clients' (id, delta, metrics), four of them invalid in the four ways the rule knows."""
    rng = np.random.default_rng(seed)
    out = [(f"c{i:02d}", update(rng), {"num_examples": int(rng.integers(1, 50)),
                                       "train_loss": float(rng.uniform(1, 5)), "steps": 3})
           for i in range(n)]
    out[2][1][0][1] = np.nan
    out[5] = (out[5][0], [out[5][1][0], out[5][1][1].T.copy()], out[5][2])  # (4, 3)
    out[7][2]["num_examples"] = 0
    out[9] = (out[9][0], out[9][1][:1], out[9][2])  # a tensor missing
    return out


def strategy(**server):
    cfg = from_dict({"server": {"clients_per_round": 12, **server},
                     "deployment": {"node_sums": True}})
    s = FedAvgDelta(cfg, [f"c{i:02d}" for i in range(12)], "")
    rng = np.random.default_rng(99)
    s.current = update(rng)
    s.last_cohort = [f"c{i:02d}" for i in range(12)]
    return s


@pytest.mark.parametrize("weighted", [True, False])
def test_node_sum_is_numpys_weighted_sum_of_the_valid_updates(weighted):
    # Prepare
    results = cohort()
    ref = [np.zeros(s, np.float32) for s in SHAPES]
    # Execute: the node sees its clients in scheduling order, not sorted
    node = sum_updates(results[::-1], ref, weighted=weighted)
    # Assert: verdicts are the server's own rule, in client-id order
    assert [c for c, _, _ in node.clients] == sorted(c for c, _, _ in results)
    for (cid, delta, metrics), (cid2, m2, problem) in zip(results, node.clients):
        assert cid == cid2 and m2 is metrics and problem == validate_update(delta, metrics, ref)
    bad = {c for c, _, p in node.clients if p}
    assert bad == {"c02", "c05", "c07", "c09"}
    good = [(d, m) for c, d, m in results if c not in bad]
    for i in range(len(SHAPES)):
        want = sum((m["num_examples"] if weighted else 1.0) * d[i].astype(np.float64) for d, m in good)
        # float64 sums of 8 float32 products: the same additions in the same order up to
        # reassociation, so agreement to 1e-12 of the terms' scale (~1-50) is ample.
        np.testing.assert_allclose(node.total[i], want, rtol=1e-12, atol=1e-10)
        assert node.total[i].dtype == np.float64


def test_max_update_bytes_applies_at_the_node_as_at_the_server():
    results = cohort()[:2]
    ref = [np.zeros(s, np.float32) for s in SHAPES]
    node = sum_updates(results, ref, weighted=True, max_update_bytes=60)  # each is 68 bytes
    assert node.total is None and node.accepted() == []
    assert all("over server.max_update_bytes = 60" in p for _, _, p in node.clients)


@pytest.mark.parametrize("server", [{}, {"weighted": False}, {"optimizer": "adam", "lr": 0.01},
                                    {"max_update_bytes": 68}])
def test_server_over_node_sums_equals_per_client_aggregation(server):
    """Three nodes' sums through real reply messages vs the same updates one by one."""
    # Prepare
    results = cohort()
    nodes = [results[0:3], results[3:8], results[8:12]]
    per_client = strategy(**server)
    summed = strategy(**server)
    cfg = summed.cfg
    request = protocol.train_message(7, ArrayRecord(summed.current), 1, [], "")
    replies = [protocol.node_sum_reply(request, sum_updates(part[::-1], summed.current,
                                                            weighted=cfg.server.weighted,
                                                            max_update_bytes=cfg.server.max_update_bytes))
               for part in nodes]
    # Execute: replies in an order that is not the client ids'
    new_a, m_a = per_client.aggregate_train(1, [protocol.train_reply(request, results)])
    new_b, m_b = summed.aggregate_train(1, replies[::-1])
    # Assert: identical metrics, weights equal up to the float32 rounding of a float64 mean
    assert dict(m_a) == dict(m_b)
    assert dict(m_b)["clients_rejected"] == 4 and dict(m_b)["clients_completed"] == 8
    for a, b in zip(new_a.to_numpy_ndarrays(), new_b.to_numpy_ndarrays()):
        # Both means are float64 sums rounded once to float32: a different association can
        # move the float64 value across a rounding boundary, i.e. 1 float32 ulp (~1.2e-7 rel).
        np.testing.assert_allclose(a, b, rtol=3e-7, atol=1e-7)
        assert a.dtype == b.dtype == np.float32


def test_a_nodes_bad_sum_rejects_its_clients_and_a_malformed_reply_is_counted():
    s = strategy()
    results = cohort()
    good = sum_updates(results[:4], s.current, weighted=True)
    broken = sum_updates(results[4:], s.current, weighted=True)
    broken.total[1][0, 0] = np.inf  # e.g. an overflow in the node's sum
    request = protocol.train_message(7, ArrayRecord(s.current), 1, [], "")
    malformed = protocol.node_sum_reply(request, good)
    del malformed.content[protocol.metrics_key(0)]
    _, m = s.aggregate_train(1, [protocol.node_sum_reply(request, good),
                                 protocol.node_sum_reply(request, broken), malformed])
    m = dict(m)
    # c00, c01, c03 accepted; c02 rejected at its node; c04..c11 with their node's sum; 1 reply
    assert (m["clients_completed"], m["clients_rejected"], m["clients_failed"]) == (3, 1 + 8 + 1, 0)


def test_node_sum_reply_round_trips():
    s = strategy()
    node = sum_updates(cohort(), s.current, weighted=True)
    request = protocol.train_message(7, ArrayRecord(s.current), 1, [], "")
    back = protocol.read_node_sum(protocol.node_sum_reply(request, node, [("c12", "boom")]))
    assert [(c, p) for c, _, p in back.clients] == [(c, p) for c, _, p in node.clients]
    for a, b in zip(back.total, node.total):
        np.testing.assert_array_equal(a, b)
    empty = protocol.read_node_sum(protocol.node_sum_reply(request, NodeSum([], None)))
    assert empty.clients == [] and empty.total is None
    assert protocol.read_node_sum(protocol.train_reply(request, cohort()[:1])) is None


@pytest.mark.parametrize("settings", [
    {"privacy": {"enabled": True}},
    {"privacy": {"enabled": True, "mechanism": "dp_ftrl"}},
    {"privacy": {"enabled": True}, "audit": {"canaries": 4}},
])
def test_node_sums_are_allowed_under_dp_and_the_audit(settings):
    # Under DP the nodes clip to the round's clip norm before they sum
    # (tests/unit/test_node_sums_dp.py); canaries are inserted by the server.
    assert from_dict({**settings, "deployment": {"node_sums": True}}).deployment.node_sums


def test_audit_without_privacy_is_still_refused_with_node_sums():
    with pytest.raises(ConfigError, match="audit.canaries = 4: expected privacy.enabled = true"):
        from_dict({"audit": {"canaries": 4}, "deployment": {"node_sums": True}})


def test_node_sums_default_off_and_pruning_allowed():
    assert from_dict({}).deployment.node_sums is False
    cfg = from_dict({"deployment": {"node_sums": True}, "pruning": {"enabled": True}})
    assert cfg.deployment.node_sums
