"""The warm per-node trainer (clients/trainer_process.py, clients/trainer_link.py), without Flower.

A real trainer process is started through the ClientApp's own entry point
(``clients.app.node_train``) as a per-message flwr-clientapp process would start it, and its
answers are compared with ``train_clients`` run in this process: equal bit for bit, since
both run the same ``LocalTrainer`` pass with one TF thread and op determinism. The cluster
tests (tests/integration/test_deployment.py) run it under real Flower processes.
"""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from clients import trainer_link
from fl_sim.processes import start_ticks
from fl_sim.app.server_app import dumps_toml
from fl_sim.config import load_experiment
from tests.integration.conftest import REPO

SMOKE = REPO / "experiments" / "smoke.toml"


def smoke_toml(*overrides: str) -> str:
    return dumps_toml(load_experiment(SMOKE, list(overrides)))


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node context whose trainer directory is under tmp_path; its trainers are stopped after."""
    # What clients/app.py checks to know Flower started it for one message (sys.argv[0]).
    monkeypatch.setattr(trainer_link, "per_message_process", lambda: True)
    ctx = SimpleNamespace(node_id=7, node_config={"trainer-dir": str(tmp_path / "node"),
                                                  "partition-id": 0, "num-partitions": 1})
    yield ctx
    d = tmp_path / "node"
    if d.exists():
        trainer_link.stop_trainers(d)
        wait_until(lambda: not list(d.glob("t-*.sock")), 60, "trainers to exit")


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def in_process(toml, server_round, cids, weights):
    from clients.app import train_clients, worker_state

    cfg, corpus, trainer = worker_state(toml)
    return train_clients(cfg, corpus, trainer, cids, weights, server_round)


def initial_weights(toml):
    from clients.app import worker_state

    return worker_state(toml)[2].get_weights()


def assert_same(a, b):
    (res_a, fail_a), (res_b, fail_b) = a, b
    assert fail_a == fail_b
    assert [(c, m) for c, _, m in res_a] == [(c, m) for c, _, m in res_b]
    for (_, da, _), (_, db, _) in zip(res_a, res_b):
        assert len(da) == len(db)
        for x, y in zip(da, db):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


def the_trainer_pid(directory):
    (sock_path,) = directory.glob("t-*.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock_path))
        return trainer_link._peer_pid(s)


def test_warm_trainer_matches_in_process_training_round_after_round(node, tmp_path, capfd):
    from clients.app import node_train

    # Injected crashes too: they are decided inside train_clients, by (seed, round, client).
    toml = smoke_toml("simulation.client_failure_rate=0.3")
    from clients.app import worker_state

    corpus = worker_state(toml)[1]
    cids = list(corpus.train_client_ids)[:6]
    weights = initial_weights(toml)
    for rnd in (1, 2, 3):
        warm = node_train(node, toml, rnd, cids, weights, partitioned=True)
        ref = in_process(toml, rnd, cids, weights)
        assert_same(warm, ref)
        weights = [w + d for w, d in zip(weights, warm[0][0][1])]  # a new global model each round
    err = capfd.readouterr().err
    assert err.count("warm trainer:") == 3 and "trainer started" in err  # started once, reused
    assert "unavailable" not in err
    d = tmp_path / "node"
    (sock_path,) = d.glob("t-*.sock")
    # 0600 socket in a 0700 directory of this user.
    assert stat.S_ISSOCK(sock_path.stat().st_mode) and stat.S_IMODE(sock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700 and d.stat().st_uid == os.getuid()
    assert "round 3: 6 clients" in next(d.glob("t-*.log")).read_text()


def test_errors_the_trainer_reports_are_the_messages_errors(node, tmp_path):
    from clients.app import node_train, worker_state

    toml = smoke_toml()
    ids = list(worker_state(toml)[1].train_client_ids)
    weights = initial_weights(toml)
    other = SimpleNamespace(node_id=8, node_config={**node.node_config, "partition-id": 1,
                                                    "num-partitions": 2})
    with pytest.raises(ValueError, match="not in partition 1 of 2"):
        node_train(other, toml, 1, ids[:1], weights, partitioned=True)
    # A wrong tensor count fails every client of the message; each one is reported.
    results, failures = node_train(node, toml, 1, ids[:2], weights[:1], partitioned=False)
    assert results == [] and [c for c, _ in failures] == ids[:2]
    assert all("expected" in r and "tensors" in r for _, r in failures)


def test_a_trainer_killed_mid_message_falls_back_to_the_same_result(node, tmp_path, capfd):
    import threading

    from clients.app import node_train, worker_state

    toml = smoke_toml()
    cids = list(worker_state(toml)[1].train_client_ids)[:4]
    weights = initial_weights(toml)
    d = tmp_path / "node"
    out = {}
    th = threading.Thread(target=lambda: out.setdefault(
        "r", node_train(node, toml, 1, cids, weights, partitioned=True)))
    th.start()
    # The trainer logs the request before it builds anything (seconds: TF's import), so
    # killing it on that line kills it mid-message.
    wait_until(lambda: any("round 1: 4 clients" in p.read_text() for p in d.glob("t-*.log")),
               120, "the trainer to receive the request")
    pid = the_trainer_pid(d)
    os.kill(pid, signal.SIGKILL)
    th.join(timeout=300)
    assert not th.is_alive()
    assert_same(out["r"], in_process(toml, 1, cids, weights))
    err = capfd.readouterr().err
    assert f"warm trainer (pid {pid}) died during round 1" in err and "in process" in err
    # Its socket is stale now; the next message removes it and starts a new trainer.
    wait_until(lambda: start_ticks(pid) is None, 30, "the killed trainer to be gone")
    again = node_train(node, toml, 2, cids, weights, partitioned=True)
    assert_same(again, in_process(toml, 2, cids, weights))
    err = capfd.readouterr().err
    assert "trainer started" in err and "unavailable" not in err
    assert the_trainer_pid(d) != pid


def test_stale_socket_file_is_replaced_and_unsafe_directory_refused(node, tmp_path, capfd):
    from clients.app import node_train, worker_state

    toml = smoke_toml()
    cids = list(worker_state(toml)[1].train_client_ids)[:2]
    weights = initial_weights(toml)
    d = trainer_link.private_dir(tmp_path / "node")
    stale = d / f"t-{trainer_link.trainer_key(toml)}.sock"
    with socket.socket(socket.AF_UNIX) as s:  # bound, then closed: a file nobody listens on
        s.bind(str(stale))
    assert_same(node_train(node, toml, 1, cids, weights, partitioned=False),
                in_process(toml, 1, cids, weights))
    assert "trainer started" in capfd.readouterr().err

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    bad = SimpleNamespace(node_id=9, node_config={"trainer-dir": str(loose)})
    with pytest.raises(trainer_link.TrainerUnavailable, match="mode 0700"):
        trainer_link.connect_or_start(loose, "k", 60.0)
    # The ClientApp then trains in its own process, with the same numbers.
    assert_same(node_train(bad, toml, 1, cids, weights, partitioned=False),
                in_process(toml, 1, cids, weights))
    assert "mode 0700" in capfd.readouterr().err


def test_warm_trainer_off_trains_in_process(node, tmp_path, capfd):
    from clients.app import node_train, worker_state

    toml = smoke_toml("deployment.warm_trainer=false")
    cids = list(worker_state(toml)[1].train_client_ids)[:2]
    weights = initial_weights(toml)
    assert_same(node_train(node, toml, 1, cids, weights, partitioned=True),
                in_process(toml, 1, cids, weights))
    assert "in process" in capfd.readouterr().err and not (tmp_path / "node").exists()


def start_trainer(d, key, idle, watch):
    d = trainer_link.private_dir(d)
    sock_path = d / f"t-{key}.sock"
    boot = ("import sys; sys.path[0] = sys.argv.pop(1); "
            "from clients.trainer_process import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", boot, str(REPO), "--socket", str(sock_path),
                             "--key", key, "--idle-timeout", str(idle), "--watch", watch],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(sock_path.exists, 120, "the trainer to listen")
    return proc, sock_path


def test_trainer_exits_when_its_supernode_goes_or_when_idle(tmp_path):
    # A stand-in for the SuperNode: a process the trainer watches by (pid, start ticks).
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        proc, sock_path = start_trainer(tmp_path / "a", "watched", 600,
                                        f"{node.pid}:{start_ticks(node.pid)}")
        assert proc.poll() is None
        node.kill()
        node.wait()
        assert proc.wait(timeout=60) == 0 and not sock_path.exists()
    finally:
        node.kill()
    proc, sock_path = start_trainer(tmp_path / "b", "idle", 1.0, "")
    assert proc.wait(timeout=60) == 0 and not sock_path.exists()
