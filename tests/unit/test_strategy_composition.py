"""Wrappers compose through public hooks: DP-FedAvg and pruning in either order, through
real Flower messages (configure_train -> ClientApp-style replies -> aggregate_train ->
after_round), and stacks that cannot work are refused at construction with the reason."""

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from fl_sim import protocol
from fl_sim.config import from_dict
from strategies.dp_fedavg import DPFedAvg
from strategies.fedavg_strategy import FedAvgDelta
from strategies.hooks import Aggregation
from strategies.pruning_strategy import FederatedPruning
from strategies.wrapper import StrategyWrapper, describe
from tests.conftest import StaticGrid

IDS = [f"c{i}" for i in range(30)]
NAMES = ["dense/kernel", "dense/bias"]          # what pruning may prune: the 2-D kernel only
INIT = [np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), np.zeros(4, np.float32)]
ROUNDS = 3


pytestmark = pytest.mark.usefixtures("task_identity")  # tests/conftest.py


def config(**privacy):
    return from_dict({
        "experiment": {"rounds": ROUNDS, "seed": 3},
        "server": {"clients_per_round": 3, "weighted": False},
        "privacy": {"enabled": True, "noise_multiplier": 0.0, "clip_norm": 1e9, **privacy},
        "pruning": {"enabled": True, "target_sparsity": 0.5, "begin_round": 1, "end_round": 2}})


def dp_around_pruning(cfg):
    return DPFedAvg(FederatedPruning(FedAvgDelta(cfg, IDS, ""), cfg, NAMES), cfg, len(IDS))


def pruning_around_dp(cfg):
    return FederatedPruning(DPFedAvg(FedAvgDelta(cfg, IDS, ""), cfg, len(IDS)), cfg, NAMES)


def client_delta(rnd, cid):
    rng = np.random.default_rng([rnd, int(cid[1:])])
    return [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in INIT]


def play(strategy, rounds=range(1, ROUNDS + 1), weights=INIT, accounted=True):
    """Run rounds as the ServerApp does; return the weights and metrics after each round.

    ``accounted=False`` leaves out round_metrics (epsilon), which dp-accounting cannot
    compute at z = 0 with fixed-size sampling (a division by zero in its RDP code)."""
    out = []
    for rnd in rounds:
        (msg,) = strategy.configure_train(rnd, ArrayRecord(weights), ConfigRecord(), StaticGrid(7))
        msg.metadata.__dict__["_message_id"] = msg.object_id  # what the Grid does when pushing
        cids = list(msg.content[protocol.CONFIG]["client-ids"])
        reply = protocol.train_reply(msg, [(c, client_delta(rnd, c), {"num_examples": 5, "train_loss": 1.0})
                                           for c in cids])
        new, agg = strategy.aggregate_train(rnd, [reply])
        weights = strategy.after_round(rnd, new.to_numpy_ndarrays())
        extra = strategy.round_metrics(rnd) if accounted else {}
        out.append((cids, weights, {**dict(agg), **extra}))
    return out


def test_both_orders_equal_a_numpy_reference_without_noise():
    # Prepare: z = 0 and a clip no update reaches, so DP-FedAvg is the plain mean over the
    # fixed denominator m = 3 (all 3 sampled clients report), and pruning then zeroes the 8
    # smallest |w| of the 4x4 kernel in round 2 (the schedule's end) and keeps that mask.
    cfg = config()
    # Execute
    a = play(dp_around_pruning(cfg), accounted=False)
    b = play(pruning_around_dp(cfg), accounted=False)
    # Assert
    w, mask = [x.copy() for x in INIT], np.ones((4, 4), bool)
    for rnd, (cids, wa, ma), (cids_b, wb, mb) in zip(range(1, ROUNDS + 1), a, b):
        assert cids == cids_b and len(cids) == 3
        w = [x + np.mean([client_delta(rnd, c)[i] for c in cids], axis=0, dtype=np.float64)
             for i, x in enumerate(w)]
        if rnd == 2:
            mask.ravel()[np.argsort(np.abs(w[0]).ravel())[:8]] = False
        w[0] = np.where(mask, w[0], 0.0)
        for x, y, ref in zip(wa, wb, w):
            np.testing.assert_array_equal(x, y)     # same operations in the same order
            # float32 weights vs a float64 reference of three steps: a few float32 ulps
            # of values of order 1 (ulp ~1.2e-7).
            np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)
        assert ma == mb
        assert ma["noise_multiplier"] == 0.0 and ma["fraction_clipped"] == 0.0


def test_both_orders_draw_the_same_noise_and_charge_the_same_privacy():
    cfg = config(noise_multiplier=1.0, clip_norm=0.5)
    sa, sb = dp_around_pruning(cfg), pruning_around_dp(cfg)
    a, b = play(sa), play(sb)
    quiet = play(pruning_around_dp(config()), accounted=False)
    for (_, wa, ma), (_, wb, mb), (_, wq, _) in zip(a, b, quiet):
        for x, y in zip(wa, wb):
            np.testing.assert_array_equal(x, y)
        assert ma == mb and ma["pruning_target_sparsity"] in (0.0, 0.5) and "epsilon_rdp" in ma
        assert not np.allclose(wa[1], wq[1])   # the noise is there (the bias is never pruned)
    assert sa.ledger.rounds == sb.inner.ledger.rounds == ROUNDS
    assert sa.final_report()["epsilon_rdp"] == sb.final_report()["epsilon_rdp"] > 0
    assert int((a[-1][1][0] == 0).sum()) == 8  # pruned after DP released the weights


def test_dp_around_pruning_resumes_exactly_from_its_checkpointed_state():
    cfg = config(noise_multiplier=1.0, clip_norm=0.5, adaptive_clipping=True, clipped_count_stddev=1.0)
    s = dp_around_pruning(cfg)
    straight = play(s)
    head = dp_around_pruning(cfg)
    first_two = play(head, rounds=range(1, 3))
    resumed = dp_around_pruning(cfg)
    resumed.load_state(head.state())
    resumed.load_extra_state(head.extra_state())
    assert any(k.startswith("pruning_mask_") for k in head.state())
    (_, w3, m3), = play(resumed, rounds=[3], weights=first_two[-1][1])
    for x, y in zip(w3, straight[-1][1]):
        np.testing.assert_array_equal(x, y)
    assert m3 == straight[-1][2]


class CoordinateMedian(StrategyWrapper):
    """A third-party wrapper built on the same hook: the coordinate-wise median of updates."""

    def __init__(self, inner):
        super().__init__(inner)
        inner.set_aggregation(Aggregation(self._median, owner="CoordinateMedian"))

    def _median(self, server_round, accepted, current):
        return [np.median([d[i] for _, d, _ in accepted], axis=0).astype(c.dtype)
                for i, c in enumerate(current)], {}


def test_the_aggregation_hook_serves_any_wrapper():
    cfg = from_dict({"experiment": {"rounds": 1}, "server": {"clients_per_round": 3}})
    s = CoordinateMedian(FedAvgDelta(cfg, IDS, ""))
    ((cids, w, _),) = play(s, rounds=[1])
    for i, x in enumerate(w):
        ref = INIT[i] + np.median([client_delta(1, c)[i] for c in cids], axis=0)
        # the median of three is one of the float32 deltas; one float32 add: exact or 1 ulp
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-6)


def test_stacks_that_cannot_work_are_refused_at_construction():
    cfg = config()
    with pytest.raises(ValueError, match=r"DPFedAvg is already in the stack .*twice"):
        DPFedAvg(pruning_around_dp(cfg), cfg, len(IDS))
    with pytest.raises(ValueError, match=r"FederatedPruning is already in the stack .*pruning_mask"):
        FederatedPruning(dp_around_pruning(cfg), cfg, NAMES)
    with pytest.raises(ValueError, match=r"DPFedAvg cannot replace the aggregation step of "
                                         r"FedAvgDelta: CoordinateMedian already did"):
        DPFedAvg(CoordinateMedian(FedAvgDelta(cfg, IDS, "")), cfg, len(IDS))
    with pytest.raises(TypeError, match=r"DPFedAvg wraps fl_sim strategies only: FedAvg lacks "
                                        r"aggregate_results, before_round"):
        DPFedAvg(FedAvg(), cfg, len(IDS))
    assert describe(pruning_around_dp(cfg)) == "FederatedPruning(DPFedAvg(FedAvgDelta))"
