"""deployment.node_sums under DP: the server sends each round's clip norm, the nodes clip
their clients' updates to it and sum them, the server adds the noise once.

Checked through real Flower messages (configure_train -> node-sum replies -> aggregate_train)
against the same rounds with every client's update sent to the server: DP-FedAvg with fixed
and adaptive clipping (the clip moves every round, so a node that kept an old C would show),
with audit canaries, and DP-FTRL.
"""

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord

from fl_sim import protocol
from fl_sim.config import from_dict
from fl_sim.privacy.clipping import clip_update, global_norm
from fl_sim.updates import NodeSum, sum_updates
from strategies.registry import make_strategy
from tests.conftest import StaticGrid

IDS = [f"c{i:02d}" for i in range(40)]
SHAPES = [(6, 4), (4,)]
ROUNDS = 4


pytestmark = pytest.mark.usefixtures("task_identity")  # tests/conftest.py


def config(sums: bool, audit: int = 0, **privacy):
    return from_dict({
        "experiment": {"rounds": ROUNDS, "seed": 11},
        "server": {"clients_per_round": 9},
        "privacy": {"enabled": True, "noise_multiplier": 0.7, "clip_norm": 0.8, **privacy},
        "audit": {"canaries": audit},
        "deployment": {"node_sums": sums}})


def delta(rnd, cid):
    """Norms spread around 1 (lognormal), so C = 0.8 clips some clients and not others."""
    g = np.random.default_rng([rnd, int(cid[1:])])
    u = [g.normal(size=s) for s in SHAPES]
    scale = g.lognormal(0.0, 0.6) / global_norm(u)
    return [(t * scale).astype(np.float32) for t in u]


def metrics(cid):
    return {"num_examples": 3 + int(cid[1:]) % 5, "train_loss": 2.0}


def play(cfg):
    """ROUNDS rounds; each node answers as clients/app.py would for ``cfg``."""
    s = make_strategy("fedavg", cfg, IDS, "")
    w = [np.full(sh, 0.1, np.float32) for sh in SHAPES]
    out = []
    for rnd in range(1, ROUNDS + 1):
        replies, clips = [], []
        for msg in s.configure_train(rnd, ArrayRecord(w), ConfigRecord(), StaticGrid(5, 6, 7)):
            msg.metadata.__dict__["_message_id"] = msg.object_id  # what the Grid does when pushing
            config = msg.content[protocol.CONFIG]
            results = [(c, delta(rnd, c), metrics(c)) for c in config["client-ids"]]
            if cfg.deployment.node_sums:
                clip = float(config[protocol.CLIP_NORM])
                clips.append(clip)
                # the node's rule (clients/app.py node_results), in scheduling order
                replies.append(protocol.node_sum_reply(msg, sum_updates(results[::-1], w, weighted=True,
                                                                        clip_norm=clip)))
            else:
                assert protocol.CLIP_NORM not in config  # per-client updates: nothing to clip at the node
                replies.append(protocol.train_reply(msg, results))
        new, agg = s.aggregate_train(rnd, replies[::-1])
        w = s.after_round(rnd, new.to_numpy_ndarrays())
        out.append((w, dict(agg), clips))
    return out


@pytest.mark.parametrize("privacy, audit", [
    ({}, 0),                                                     # DP-FedAvg, fixed clip
    ({"adaptive_clipping": True, "clip_norm": 0.3}, 0),          # the clip moves every round
    ({"adaptive_clipping": True, "sampling": "poisson"}, 0),     # Poisson cohorts
    ({}, 3),                                                     # canaries inserted by the server
    ({"mechanism": "dp_ftrl", "noise_multiplier": 0.5}, 0),      # tree noise on prefix sums
], ids=["fixed", "adaptive", "poisson", "audit", "dp_ftrl"])
def test_clipped_node_sums_release_what_per_client_updates_release(privacy, audit):
    summed = play(config(True, audit, **privacy))
    per_client = play(config(False, audit, **privacy))
    for rnd, ((wa, ma, clips), (wb, mb, _)) in enumerate(zip(summed, per_client), start=1):
        # Every node was sent the round's clip (the one the server then reports using)
        assert clips and all(c == ma["clip_norm"] for c in clips), rnd
        # Counts and the clip trajectory are exact; the noise is the same draw (same seed
        # and round), so the floats differ only by the order of the float64 additions.
        assert ma.keys() == mb.keys()
        for k in ma:
            assert ma[k] == pytest.approx(mb[k], rel=1e-12, abs=1e-12), (rnd, k)
        for a, b in zip(wa, wb):
            # float64 sums rounded once to float32 per round: 1 float32 ulp (~1.2e-7 rel)
            # per round at most, over 4 rounds of values of order 0.1-1.
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(m["fraction_clipped"] not in (0.0, 1.0) for _, m, _ in summed)  # C bites, on some
    if privacy.get("adaptive_clipping"):
        assert len({m["clip_norm"] for _, m, _ in summed}) == ROUNDS


def test_clipped_node_sum_is_numpys_sum_of_clipped_updates():
    ref = [np.zeros(s, np.float32) for s in SHAPES]
    results = [(c, delta(1, c), metrics(c)) for c in IDS[:7]]
    results[3] = (results[3][0], [results[3][1][0]], results[3][2])  # a tensor missing: rejected
    node = sum_updates(results[::-1], ref, weighted=True, clip_norm=0.8)
    good = [r for i, r in enumerate(results) if i != 3]
    assert node.clip_norm == 0.8 and [c for c, _ in node.accepted()] == [c for c, _, _ in good]
    assert node.norms == pytest.approx([global_norm(d) for _, d, _ in good], rel=1e-12)
    for i in range(len(SHAPES)):
        # Unweighted (DP: every client counts once) sum of the clipped float32 tensors, in
        # float64: the same additions up to reassociation.
        want = sum(clip_update(d, 0.8)[0][i].astype(np.float64) for _, d, _ in good)
        np.testing.assert_allclose(node.total[i], want, rtol=1e-12, atol=1e-12)


def _strategy_after_configure(cfg):
    s = make_strategy("fedavg", cfg, IDS, "")
    w = [np.full(sh, 0.1, np.float32) for sh in SHAPES]
    msgs = list(s.configure_train(1, ArrayRecord(w), ConfigRecord(), StaticGrid(5, 6, 7)))
    for m in msgs:
        m.metadata.__dict__["_message_id"] = m.object_id
    return s, w, msgs


def test_a_node_that_clipped_to_another_norm_or_not_at_all_is_rejected():
    s, w, msgs = _strategy_after_configure(config(True))
    ids = [list(m.content[protocol.CONFIG]["client-ids"]) for m in msgs]
    res = [[(c, delta(1, c), metrics(c)) for c in part] for part in ids]
    replies = [protocol.node_sum_reply(msgs[0], sum_updates(res[0], w, weighted=True, clip_norm=0.8)),
               protocol.node_sum_reply(msgs[1], sum_updates(res[1], w, weighted=True, clip_norm=5.0)),
               protocol.node_sum_reply(msgs[2], sum_updates(res[2], w, weighted=True))]
    _, m = s.aggregate_train(1, replies)
    m = dict(m)
    assert m["clients_completed"] == len(ids[0])
    assert m["clients_rejected"] == len(ids[1]) + len(ids[2])


def test_the_node_refuses_to_send_an_unclipped_sum_under_dp():
    from clients.app import node_results

    cfg = config(True)
    results = [(c, delta(1, c), metrics(c)) for c in IDS[:3]]
    with pytest.raises(ValueError, match="clip-norm"):
        node_results(cfg, results, [np.zeros(s, np.float32) for s in SHAPES])
    assert isinstance(node_results(cfg, results, [np.zeros(s, np.float32) for s in SHAPES], 0.8), NodeSum)


def test_clipped_node_sum_reply_round_trips_and_checks_its_norms():
    w = [np.zeros(s, np.float32) for s in SHAPES]
    s, _, msgs = _strategy_after_configure(config(True))
    node = sum_updates([(c, delta(1, c), metrics(c)) for c in IDS[:4]], w, weighted=True, clip_norm=0.8)
    back = protocol.read_node_sum(protocol.node_sum_reply(msgs[0], node))
    assert back.clip_norm == 0.8 and back.norms == node.norms
    bad = protocol.node_sum_reply(msgs[0], node)
    bad.content[protocol.SUM_CLIENTS]["norms"] = node.norms[:2]
    with pytest.raises(ValueError, match="2 update norms for 4 accepted clients"):
        protocol.read_node_sum(bad)
    plain = protocol.read_node_sum(protocol.node_sum_reply(msgs[0], sum_updates(
        [(c, delta(1, c), metrics(c)) for c in IDS[:4]], w, weighted=True)))
    assert plain.clip_norm is None and plain.norms is None


@pytest.mark.parametrize("mechanism", ["dp_fedavg", "dp_ftrl"])
def test_the_privacy_statement_says_where_the_clipping_happened(mechanism):
    for sums in (True, False):
        s = make_strategy("fedavg", config(sums, mechanism=mechanism), IDS, "")
        text = s.final_report()["privacy_statement"]
        assert ("Clipping on the nodes (deployment.node_sums = true)" in text) == sums
