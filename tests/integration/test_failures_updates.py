"""Bad client updates through real Flower Messages: rejected one by one, counted, round goes on.

The replies are built and decoded with fl_sim.protocol exactly as the ClientApp and the
ServerApp do (Flower ArrayRecord / MetricRecord / Error), then aggregated by FedAvgDelta.
"""

import numpy as np
import pytest
from flwr.app import ArrayRecord, Error, Message

from fl_sim import protocol
from fl_sim.config import from_dict
from strategies.fedavg_strategy import FedAvgDelta

GLOBAL = [np.ones(4, np.float32), np.zeros((2, 3), np.float32)]  # 40 bytes as float32


pytestmark = pytest.mark.usefixtures("task_identity")  # tests/conftest.py


def update(v, dtype=np.float32):
    return [np.full(4, v, dtype), np.full((2, 3), v, dtype)]


def metrics(n=5):
    return {"num_examples": n, "train_loss": 1.0, "steps": 1}


def request(node, cids):
    msg = protocol.train_message(node, ArrayRecord(GLOBAL), 1, cids, "")
    msg.metadata.__dict__["_message_id"] = msg.object_id  # what the Grid does when pushing
    return msg


def run_round(strategy, replies_by_node):
    plan = {node: [cid for cid, _, _ in res] if isinstance(res, list) else ["x"]
            for node, res in replies_by_node.items()}
    strategy.current = [g.copy() for g in GLOBAL]
    strategy.last_cohort = [c for cids in plan.values() for c in cids]
    strategy.last_plan = plan
    replies = []
    for node, res in replies_by_node.items():
        req = request(node, plan[node])
        if res == "error":
            replies.append(Message(Error(code=0, reason="ClientApp crashed"), reply_to=req))
        elif res != "silent":
            replies.append(protocol.train_reply(req, res))
    new, agg = strategy.aggregate_train(1, replies)
    return (None if new is None else new.to_numpy_ndarrays()), dict(agg)


def make(**server):
    cfg = from_dict({"server": {"clients_per_round": 8, **server}})
    return FedAvgDelta(cfg, [f"c{i}" for i in range(8)], "")


def test_wrong_shape_nonfinite_and_oversized_updates_are_rejected_individually():
    nan = update(0.5)
    nan[1][0, 0] = np.inf
    wrong_shape = [np.zeros(5, np.float32), np.zeros((2, 3), np.float32)]
    oversized = update(0.5, np.float64)  # right shapes, finite, 80 bytes > 60
    s = make(max_update_bytes=60)
    new, m = run_round(s, {
        1: [("c0", update(1.0), metrics()), ("c1", nan, metrics())],
        2: [("c2", wrong_shape, metrics()), ("c3", update(3.0), metrics())],
        3: [("c4", oversized, metrics())],
        4: "error",      # the node's ClientApp failed: an Error reply
        5: "silent",     # no reply before server.round_timeout
    })
    assert (m["clients_sampled"], m["clients_completed"], m["clients_rejected"], m["clients_failed"]) == (7, 2, 3, 2)
    assert m["nodes_failed"] == 2 and m["skipped"] == 0
    # The round went on with the two valid updates (equal weights): mean delta 2.0.
    np.testing.assert_allclose(new[0], GLOBAL[0] + 2.0)
    np.testing.assert_allclose(new[1], GLOBAL[1] + 2.0)


def test_byte_limit_off_by_default_and_exact_at_the_limit():
    big = update(0.5, np.float64)
    s = make(max_update_bytes=40)
    s.current = GLOBAL
    assert s.validate(update(1.0), metrics()) is None  # exactly 40 bytes: accepted
    assert "over server.max_update_bytes = 40" in s.validate(big, metrics())
    s0 = make()
    s0.current = GLOBAL
    assert s0.validate(big, metrics()) is None


def test_all_updates_rejected_skips_the_round():
    s = make(max_update_bytes=10)
    new, m = run_round(s, {1: [("c0", update(1.0), metrics()), ("c1", update(2.0), metrics())]})
    assert new is None and m["skipped"] == 1 and m["clients_rejected"] == 2


def test_simulation_run_rejects_oversized_updates_and_aborts_with_a_named_reason(tmp_path):
    """End to end in the simulation runtime: every update of the smoke model (1,866 float32
    parameters, 7,464 bytes) is over a 1,000-byte limit, so round 1 has 0 of the 2 required
    updates and the run aborts (server.below_min_clients = "abort") with exit code 1."""
    import json

    from tests.integration.conftest import run_cli, run_dirs

    proc = run_cli("run", "experiments/smoke.toml", "--rounds", 2, "--out", tmp_path,
                   "--set", "server.max_update_bytes=1000", "--set", "server.min_clients=2",
                   "--set", 'server.below_min_clients="abort"')
    reason = ("aborted in round 1: 0 clients completed, fewer than server.min_clients = 2 "
              "(server.below_min_clients = 'abort')")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert reason in proc.stderr
    (run_dir,) = run_dirs(tmp_path, "smoke")
    r1, final = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert (r1["clients_rejected"], r1["clients_completed"], r1["skipped"]) == (4, 0, 1)
    assert r1["abort_reason"] == reason and final["stopped_reason"] == reason
    assert final["rounds_completed"] == 0
    assert not list((run_dir / "checkpoints").glob("round-*.npz"))  # a resume retries round 1
    assert "stopped early: " + reason in (run_dir / "summary.md").read_text()
