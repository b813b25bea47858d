"""The local multi-process deployment: real flower-superlink / flower-supernode processes.

`fl-sim cluster up` starts one SuperLink and two SuperNodes on 127.0.0.1 (SuperNode i owns
partition i of 2 of the training clients), `fl-sim cluster run` runs experiments/smoke.toml
through `flwr run`, and the same experiment runs in Flower's simulation runtime.

What is compared, and why it can be exact: client sampling is keyed by (seed, round),
each client's local training is seeded by (seed, round, client id) and runs with one TF
thread and op determinism, and the server sorts accepted updates by client id before
summing. Which node (or which process) trains a client therefore cannot change a number,
so every metrics row (except wall-clock times) and the final weights must be equal.
"""

import json

import numpy as np
import pytest

from fl_sim.config import from_dict
from fl_sim.privacy.release import node_sums_paragraph
from tests.integration.conftest import run_cli, run_dirs

SMOKE = "experiments/smoke.toml"


def rows(run_dir):
    drop = {"round_time_s", "wall_time_s"}
    return [{k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    up = run_cli("cluster", "up", "--dir", d, "--supernodes", 2, "--timeout", 90, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield d
    finally:
        run_cli("cluster", "down", "--dir", d, timeout=120)


@pytest.mark.parametrize("warm", [True, False], ids=["warm-trainer", "in-process"])
def test_cluster_run_matches_simulation(cluster, tmp_path, warm):
    """Both ways a node trains (its warm trainer, the default, or the per-message process)."""
    st = run_cli("cluster", "status", "--dir", cluster)
    assert st.returncode == 0 and st.stdout.count(" up") == 3, st.stdout + st.stderr

    logs = sorted((cluster / "logs").glob("supernode-*.log"))
    seen = [p.read_text().count("fl-sim node: round") for p in logs]
    extra = [] if warm else ["--set", "deployment.warm_trainer=false"]
    dep = run_cli("cluster", "run", "--dir", cluster, SMOKE, "--rounds", 2, "--out", tmp_path / "dep",
                  *extra, "--timeout", 400, timeout=450)
    assert dep.returncode == 0, dep.stdout[-4000:] + dep.stderr[-4000:]
    (dep_dir,) = run_dirs(tmp_path / "dep", "smoke")
    for name in ("config.resolved.toml", "manifest.json", "metrics.jsonl", "summary.json", "summary.md",
                 "plots/learning_curves.png", "final_weights.npz", "checkpoints/latest.json"):
        assert (dep_dir / name).exists(), name
    assert "round   2/2" in dep.stdout and str(dep_dir) in dep.stdout
    # Both SuperNodes trained (each only its own partition: the ClientApp refuses others),
    # each message the way this run asked for.
    assert len(logs) == 2 and all("Start `flwr-clientapp` process" in p.read_text() for p in logs)
    for p, n in zip(logs, seen):
        lines = [x for x in p.read_text().splitlines() if x.startswith("fl-sim node: round")][n:]
        assert len(lines) == 2, lines  # one train message per node and round
        assert all(("warm trainer:" in x) == warm and ("in process:" in x) != warm for x in lines), lines
        assert not any("unavailable" in x for x in lines), lines
    if warm:  # each node's own trainer, started by its first message, reused by the second
        for i in range(2):
            (sock,) = (cluster / "nodes" / str(i)).glob("t-*.sock")
            assert oct(sock.stat().st_mode & 0o777) == "0o600"

    sim = run_cli("run", SMOKE, "--rounds", 2, "--out", tmp_path / "sim")
    assert sim.returncode == 0, sim.stdout + sim.stderr
    (sim_dir,) = run_dirs(tmp_path / "sim", "smoke")

    dep_rows, sim_rows = rows(dep_dir), rows(sim_dir)
    assert [r["type"] for r in dep_rows] == ["round", "round", "final"]
    for r in dep_rows[:2]:
        assert (r["clients_completed"], r["clients_failed"], r["nodes_failed"]) == (4, 0, 0)
    assert dep_rows == sim_rows
    with np.load(dep_dir / "final_weights.npz") as a, np.load(sim_dir / "final_weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


# DP-FedAvg with adaptive clipping (the clip the nodes are sent changes between rounds) and
# seeded noise, so that both runs draw the same noise (a deployment's default is secret noise).
# (clipped_count_stddev 1: smoke's cohort of 4 would give the default m/20 = 0.2, too little
# count noise for z = 0.5.)
DP = ["privacy.enabled=true", "privacy.adaptive_clipping=true", "privacy.clip_norm=0.5",
      "privacy.noise_multiplier=0.5", "privacy.clipped_count_stddev=1.0",
      "privacy.reproducible_noise=\"true\""]


@pytest.mark.parametrize("settings", [[], DP], ids=["fedavg", "dp-fedavg-adaptive"])
def test_cluster_run_with_node_sums_matches_per_client_aggregation(cluster, tmp_path, settings):
    """deployment.node_sums: each SuperNode's warm trainer validates and sums its clients
    (under DP: clipped to the round's clip norm the server sent; the server adds the noise).

    Against the same cluster run without node sums. Counts must be identical; numbers may
    differ only by float summation order: both sum in float64 and round the mean to float32
    once, so a round's mean differs by at most 1 float32 ulp (~1.2e-7 relative), and 2 rounds
    of local SGD on weights moved by that much stay within relative 1e-5 (atol 1e-6 for
    entries near 0). Under DP the noise is the same draw (seeded by run seed and round).
    """
    logs = sorted((cluster / "logs").glob("supernode-*.log"))
    runs = {}
    for sums in (True, False):
        seen = [p.read_text().count("fl-sim node: round") for p in logs]
        out = tmp_path / ("sums" if sums else "per-client")
        extra = [x for s in settings for x in ("--set", s)]
        dep = run_cli("cluster", "run", "--dir", cluster, SMOKE, "--rounds", 2, "--out", out,
                      "--set", f"deployment.node_sums={str(sums).lower()}", *extra,
                      "--timeout", 400, timeout=450)
        assert dep.returncode == 0, dep.stdout[-4000:] + dep.stderr[-4000:]
        (runs[sums],) = run_dirs(out, "smoke")
        for p, n in zip(logs, seen):  # both nodes trained, by their warm trainers, summing or not
            lines = [x for x in p.read_text().splitlines() if x.startswith("fl-sim node: round")][n:]
            assert len(lines) == 2 and all(" clients warm trainer:" in x and x.endswith(", summed") == sums
                                           for x in lines), lines
    counts = ("type", "round", "clients_sampled", "clients_completed", "clients_failed",
              "clients_rejected", "clients_raised", "nodes_failed", "train_examples", "skipped")
    summed, per_client = rows(runs[True]), rows(runs[False])
    assert [r["type"] for r in summed] == ["round", "round", "final"]
    assert [{k: r.get(k) for k in counts} for r in summed] == \
        [{k: r.get(k) for k in counts} for r in per_client]
    if settings:
        # A DP run releases no client counts (docs/privacy.md); the adaptive clip moved and
        # the nodes followed it (else the sums, and everything after them, would differ).
        assert "clients_completed" not in summed[0]
        assert summed[0]["clip_norm"] == 0.5 != summed[1]["clip_norm"] == summed[0]["next_clip_norm"]
    else:
        assert summed[0]["clients_completed"] == 4
    for a, b in zip(summed, per_client):
        assert a.keys() == b.keys()
        if "privacy_statement" in a:  # the same statement, plus where the clipping happened
            node = node_sums_paragraph() + "\n\n"
            assert node in a["privacy_statement"] and node not in b["privacy_statement"]
            a = {**a, "privacy_statement": a["privacy_statement"].replace(node, "")}
        for k in a.keys() - set(counts):
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-5), k
            else:
                assert a[k] == b[k], k
    with np.load(runs[True] / "final_weights.npz") as a, np.load(runs[False] / "final_weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_cluster_cli_errors(cluster, tmp_path):
    again = run_cli("cluster", "up", "--dir", cluster)
    assert again.returncode == 2 and "already running" in again.stderr
    assert run_cli("cluster", "run", "--dir", cluster).returncode == 2
    bad = run_cli("cluster", "run", "--dir", cluster, "--resume", tmp_path)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr
    none = run_cli("cluster", "status", "--dir", tmp_path / "nothing")
    assert none.returncode == 2 and "no cluster" in none.stderr
    # Settings that load but cannot run fail before Flower starts, as with `fl-sim run`
    # (here adaptive clipping with too little count noise for smoke's cohort of 4): exit 2
    # naming [privacy], not an exception in the ServerApp on the cluster.
    dp = run_cli("cluster", "run", "--dir", cluster, SMOKE, "--rounds", 1, "--out", tmp_path / "dp",
                 "--set", "privacy.enabled=true", "--set", "privacy.adaptive_clipping=true",
                 "--set", "privacy.noise_multiplier=0.5")
    assert dp.returncode == 2 and "[privacy]: clipped_count_stddev = 0.2 is too small" in dp.stderr, dp.stderr
    assert not (tmp_path / "dp").exists()


# --- partition assignment (no processes) --------------------------------------------------


def test_partitions_are_contiguous_slices_and_plan_respects_them():
    from fl_sim.partitioning import partition_clients, split_over_nodes

    ids = [f"c{i}" for i in range(10)]
    part = partition_clients(ids, 3)
    assert [part[c] for c in ids] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    from fl_sim.data.population import ClientIds

    lazy = ClientIds(0, 10, 1)  # the same ids, never materialized
    assert list(lazy) == ids and [partition_clients(lazy, 3)[c] for c in ids] == [part[c] for c in ids]
    assert part.get("nobody") is None
    nodes = {101: 0, 202: 1, 303: 2, 404: 2}  # two nodes share partition 2
    plan = split_over_nodes(["c0", "c5", "c7", "c8", "c9"], list(nodes), nodes, part)
    assert plan == {101: ["c0"], 202: ["c5"], 303: ["c7", "c9"], 404: ["c8"]}
    # Partition 1 has no live node: its clients are left out (they count as failed).
    plan = split_over_nodes(["c0", "c5"], [101, 303], nodes, part)
    assert plan == {101: ["c0"]}
    # Without partitions (simulation) the round-robin plan is unchanged.
    assert split_over_nodes(["a", "b", "c"], [2, 1]) == {1: ["a", "c"], 2: ["b"]}


def test_clientapp_refuses_clients_of_another_partition():
    from types import SimpleNamespace

    from clients.app import check_ownership

    ids = [f"c{i}" for i in range(4)]
    ctx = SimpleNamespace(node_config={"partition-id": 1, "num-partitions": 2})
    check_ownership(["c2", "c3"], ids, ctx)
    with pytest.raises(ValueError, match="not in partition 1 of 2"):
        check_ownership(["c0", "c3"], ids, ctx)
    with pytest.raises(ValueError, match="no partition-id"):
        check_ownership(["c0"], ids, SimpleNamespace(node_config={}))


def test_new_server_config_keys_validate():
    cfg = from_dict({"server": {"below_min_clients": "abort", "max_update_bytes": 1000}})
    assert cfg.server.below_min_clients == "abort" and cfg.server.max_update_bytes == 1000
    with pytest.raises(ValueError, match="below_min_clients"):
        from_dict({"server": {"below_min_clients": "retry"}})


# --- TLS and SuperNode authentication -------------------------------------------------------


def run_supernode(args, cluster_dir, log, timeout=120):
    """flower-supernode in its own session; afterwards end whatever it left (its SuperExec)."""
    import os
    import signal
    import subprocess
    from types import SimpleNamespace

    from fl_sim.app.cluster import REPO, flower_env

    with open(log, "w") as fh:
        proc = subprocess.Popen(["flower-supernode", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=flower_env(cluster_dir), cwd=REPO, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.poll() is None:
                proc.wait(timeout=30)
    return SimpleNamespace(returncode=code, stdout=log.read_text())


def test_tls_cluster_refuses_an_unregistered_supernode(tmp_path):
    import json
    import subprocess

    from fl_sim.app.cluster import REPO, flower_env, free_port

    certs = tmp_path / "certs"
    gen = subprocess.run(["bash", str(REPO / "scripts" / "gen_certs.sh"), str(certs), "1"],
                         capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    d = tmp_path / "tls-cluster"
    up = run_cli("cluster", "up", "--dir", d, "--supernodes", 1, "--tls", certs, "--timeout", 90,
                 timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        st = run_cli("cluster", "status", "--dir", d)
        assert st.returncode == 0 and "TLS" in st.stdout, st.stdout
        port = json.loads((d / "cluster.json").read_text())["superlink"]["port"]
        link_log = d / "logs" / "superlink.log"
        assert "Uvicorn running on https://" in link_log.read_text()

        # A SuperNode with a key nobody registered: the SuperLink refuses it, it gives up.
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-f",
                        str(tmp_path / "rogue.key")], check=True, timeout=60)
        rogue = run_supernode(
            ["--superlink", f"127.0.0.1:{port}", "--root-certificates", str(certs / "ca.crt"),
             "--auth-supernode-private-key", str(tmp_path / "rogue.key"), "--port", str(free_port()),
             "--max-retries", "1", "--max-wait-time", "30",
             "--node-config", "partition-id=0 num-partitions=1"], d, tmp_path / "rogue.log")
        assert rogue.returncode != 0
        assert "Failed to activate SuperNode" in rogue.stdout
        assert "No SuperNode found with the given public key" in link_log.read_text()
        # Without TLS a SuperNode cannot even connect.
        plain = run_supernode(
            ["--insecure", "--superlink", f"127.0.0.1:{port}", "--port", str(free_port()),
             "--max-retries", "1", "--max-wait-time", "20"], d, tmp_path / "plain.log")
        assert plain.returncode != 0
        # The registered SuperNode is still the only one, and still up.
        assert run_cli("cluster", "status", "--dir", d).returncode == 0
        assert link_log.read_text().count("[Fleet.ActivateNode] Activated") == 1
    finally:
        run_cli("cluster", "down", "--dir", d, timeout=120)


@pytest.mark.slow
def test_tls_authenticated_cluster_runs_an_experiment(tmp_path):
    import subprocess

    from fl_sim.app.cluster import REPO

    certs = tmp_path / "certs"
    subprocess.run(["bash", str(REPO / "scripts" / "gen_certs.sh"), str(certs), "2"], check=True,
                   capture_output=True, timeout=120)
    d = tmp_path / "tls-cluster"
    up = run_cli("cluster", "up", "--dir", d, "--supernodes", 2, "--tls", certs, "--timeout", 90,
                 timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        res = run_cli("cluster", "run", "--dir", d, SMOKE, "--rounds", 1, "--out", tmp_path / "out",
                      "--timeout", 500, timeout=560)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
        (run_dir,) = run_dirs(tmp_path / "out", "smoke")
        (r1, final) = rows(run_dir)
        assert r1["clients_completed"] == 4 and final["type"] == "final"
        assert "root-certificates" in (d / "flwr-home" / "config.toml").read_text()
    finally:
        run_cli("cluster", "down", "--dir", d, timeout=120)


def test_cluster_dp_run_draws_secret_noise_by_default(cluster, tmp_path):
    # A deployment's default (privacy.reproducible_noise = "auto" under flwr run): noise from
    # OS entropy. The non-DP cluster run above equals the simulation exactly, so here the only
    # thing that can make the DP weights differ from a seeded simulation is the noise.
    dp = ["--set", "privacy.enabled=true", "--set", "privacy.noise_multiplier=1.0"]
    dep = run_cli("cluster", "run", "--dir", cluster, SMOKE, "--rounds", 2, "--out", tmp_path / "dep",
                  *dp, "--timeout", 400, timeout=450)
    assert dep.returncode == 0, dep.stdout[-4000:] + dep.stderr[-4000:]
    (dep_dir,) = run_dirs(tmp_path / "dep", "smoke")
    assert 'reproducible_noise = "false"' in (dep_dir / "config.resolved.toml").read_text()
    assert "Noise: secret" in (dep_dir / "privacy_statement.md").read_text()
    sim = run_cli("run", SMOKE, "--rounds", 2, "--out", tmp_path / "sim", *dp)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    (sim_dir,) = run_dirs(tmp_path / "sim", "smoke")
    assert 'reproducible_noise = "true"' in (sim_dir / "config.resolved.toml").read_text()
    assert "Noise: reproducible" in (sim_dir / "privacy_statement.md").read_text()
    with np.load(dep_dir / "final_weights.npz") as a, np.load(sim_dir / "final_weights.npz") as b:
        assert any(not np.array_equal(a[k], b[k]) for k in a.files)
