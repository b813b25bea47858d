"""Failures in the local deployment (real SuperLink / SuperNode processes), seeded.

- 30% of the SuperNodes (1 of 3, chosen with a seeded generator among the nodes that own
  clients of the round's cohort) are SIGKILLed while they train round 1: the round ends at
  server.round_timeout (or earlier, when the SuperLink reports the node unavailable) with
  the other nodes' clients; metrics record the failed clients and node. Below
  server.min_clients the round is skipped (below_min_clients = "skip") or the run aborts
  with a named reason ("abort").
- The server side (SuperLink, its SuperExec and the ServerApp process) is SIGKILLed after
  the round-1 checkpoint, restarted on the same port and database, and the run resumed with
  `fl-sim cluster run --resume`: its metrics rows equal an uninterrupted run's with the same
  seed (a simulation run: test_deployment shows deployment == simulation for this setup).
"""

import json
import math
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fl_sim.app import cluster as cl
from tests.integration.conftest import FL_SIM, REPO, run_cli, run_dirs, wait_for

SMOKE = "experiments/smoke.toml"
SEED = 0
NODES = 3
COMMON = ["--set", "server.clients_per_round=6", "--set", "server.round_timeout=90",
          "--set", "server.node_wait_timeout=60"]

pytestmark = pytest.mark.slow


def rows(run_dir):
    drop = {"round_time_s", "wall_time_s"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def start_run(cluster_dir, out, *args):
    log = open(out.parent / (out.name + ".log"), "w")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*FL_SIM, "cluster", "run", "--dir", str(cluster_dir), *map(str, args)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True), log


def finish(proc, log, timeout=600):
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        pytest.fail(f"cluster run did not finish within {timeout} s")
    log.close()
    return code, open(log.name).read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    up = run_cli("cluster", "up", "--dir", d, "--supernodes", NODES, "--timeout", 90, timeout=400)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield d
    finally:
        run_cli("cluster", "down", "--dir", d, timeout=120)


def heal(cluster_dir):
    """Restart any SuperNode a previous test killed (a new node id, the same partition)."""
    state = cl.load_state(cluster_dir)
    for node in state["supernodes"]:
        if not cl.alive(node):
            cl.start_supernode(state, node, timeout=90)
    return state


def victims(round_no=1):
    """Seeded choice of ceil(30%) of the SuperNodes among those owning cohort clients."""
    from fl_sim.config import load_experiment
    from fl_sim.data import load_corpus
    from fl_sim.sampling import sample_clients
    from fl_sim.partitioning import partition_clients

    cfg = load_experiment(SMOKE)
    ids = load_corpus(cfg.data, SEED).train_client_ids
    owner = partition_clients(ids, NODES)
    cohort = sample_clients(ids, 6, SEED, round_no)
    busy = sorted({owner[c] for c in cohort})
    k = math.ceil(0.3 * NODES)
    chosen = sorted(np.random.default_rng(SEED).choice(busy, size=k, replace=False).tolist())
    lost = [c for c in cohort if owner[c] in chosen]
    return chosen, lost, cohort


def kill_during_round_1(cluster_dir, state, partitions):
    """SIGKILL these SuperNodes once each has started its round-1 ClientApp (mid-training)."""
    for pid in partitions:
        node = state["supernodes"][pid]
        log = Path(node["log"])
        base = node["_clientapps_before"]
        # The first ClientApp of a run answers the partition query; the second trains round 1.
        wait_for(lambda: log.read_text(errors="replace").count("Start `flwr-clientapp` process") >= base + 2,
                 timeout=300, what=f"SuperNode {pid} to start training")
        cl.stop_process(node, timeout=5, sig=signal.SIGKILL)


def mark_logs(state):
    for node in state["supernodes"]:
        node["_clientapps_before"] = Path(node["log"]).read_text(errors="replace").count(
            "Start `flwr-clientapp` process")


def run_killing_nodes(cluster_dir, tmp_path, name, chosen, *settings):
    """Heal the cluster, run SMOKE for 2 rounds, SIGKILL ``chosen`` nodes mid-round 1.

    Returns (exit code, console output, run directory).
    """
    state = heal(cluster_dir)
    mark_logs(state)
    out_dir = tmp_path / f"{name}_out"
    proc, log = start_run(cluster_dir, tmp_path / name, SMOKE, "--rounds", 2, "--out", out_dir,
                          *COMMON, *settings)
    kill_during_round_1(cluster_dir, state, chosen)
    code, out = finish(proc, log)
    dirs = run_dirs(out_dir, "smoke")
    assert len(dirs) == 1, f"exit {code}, run dirs {dirs}:\n{out[-4000:]}"
    return code, out, dirs[0]


def test_killed_supernodes_round_completes_with_the_rest(cluster, tmp_path):
    chosen, lost, cohort = victims()
    assert 0 < len(lost) <= len(cohort) - 2
    code, out, run_dir = run_killing_nodes(cluster, tmp_path, "run", chosen,
                                           "--set", "server.min_clients=2")
    assert code == 0, out[-4000:]
    r1 = rows(run_dir)[0]
    assert r1["clients_sampled"] == 6
    assert r1["clients_failed"] == len(lost) and r1["clients_completed"] == 6 - len(lost)
    assert r1["nodes_failed"] == len(chosen) and r1["skipped"] == 0
    assert rows(run_dir)[-1]["type"] == "final" and rows(run_dir)[-1]["rounds_completed"] == 2


def test_below_min_clients_skips_or_aborts_with_a_named_reason(cluster, tmp_path):
    chosen, lost, cohort = victims()
    # skip: every round needs all 6 clients; with a node dead, both rounds are skipped.
    code, out, run_dir = run_killing_nodes(cluster, tmp_path, "skip", chosen,
                                           "--set", "server.min_clients=6")
    assert code == 0, out[-4000:]
    r1 = rows(run_dir)[0]
    assert r1["skipped"] == 1 and r1["clients_failed"] == len(lost)
    assert r1["skip_reason"] == (f"{6 - len(lost)} clients completed, fewer than "
                                 "server.min_clients = 6")

    # abort: the run stops in round 1 with the reason, and `cluster run` exits 1.
    code, out, run_dir = run_killing_nodes(cluster, tmp_path, "abort", chosen,
                                           "--set", "server.min_clients=6",
                                           "--set", "server.below_min_clients=\"abort\"")
    assert code == 1, out[-4000:]
    assert "aborted in round 1" in out and "server.below_min_clients = 'abort'" in out
    final = rows(run_dir)[-1]
    assert final["type"] == "final" and final["stopped_reason"].startswith("aborted in round 1: ")
    assert not list((run_dir / "checkpoints").glob("round-*.npz"))  # a resume retries round 1


def test_killed_server_resumes_to_the_uninterrupted_metrics(cluster, tmp_path):
    state = heal(cluster)
    proc, log = start_run(cluster, tmp_path / "run", SMOKE, "--rounds", 3, "--out", tmp_path / "out")
    try:
        wait_for(lambda: run_dirs(tmp_path / "out", "smoke") and
                 (run_dirs(tmp_path / "out", "smoke")[0] / "checkpoints" / "latest.json").exists(),
                 timeout=400, what="the round-1 checkpoint")
        cl.stop_process(state["superlink"], timeout=5, sig=signal.SIGKILL)  # + SuperExec + ServerApp
    finally:
        code, out = finish(proc, log, timeout=120)
    assert code != 0
    (run_dir,) = run_dirs(tmp_path / "out", "smoke")
    assert not (run_dir / "summary.json").exists()

    cl.start_superlink(state, timeout=90)  # same port and database; SuperNodes reconnect
    res = run_cli("cluster", "run", "--dir", cluster, "--resume", run_dir, "--timeout", 500, timeout=560)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "resuming" in res.stdout

    ref = run_cli("run", SMOKE, "--rounds", 3, "--out", tmp_path / "ref")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    (ref_dir,) = run_dirs(tmp_path / "ref", "smoke")
    assert rows(run_dir) == rows(ref_dir)
