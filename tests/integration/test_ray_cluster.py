"""An experiment on an existing two-node Ray cluster (simulation.ray_address).

Both nodes are local processes (``ray start --head`` and ``ray start --address=...``), each
with its own temp dir and ports so that no other Ray on this machine is touched, and they
are stopped by their own process groups (``ray stop`` would stop every Ray here).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import REPO, kill_group, run_cli, run_dirs, start_cli

SMOKE = "experiments/smoke.toml"
RAY = str(Path(sys.executable).with_name("ray"))
#: Ray's logical CPUs per node, and what each worker reserves: one worker fits a node.
NODE_CPUS = 2
CPUS_PER_WORKER = 2
#: Starting a node under a 2-core machine's full load took up to ~40 s; waiting for the
#: worker node to register is bounded by this.
START_TIMEOUT_S = 180
#: Ray's cluster mode on (Linux's default): fl-sim's local runs switch it off to stay on
#: loopback, and a worker node refuses to start without it.
CLUSTER_ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RayCluster:
    """A head and one worker node, each a ``ray start --block`` in its own session."""

    def __init__(self, cpus_per_node: int):
        # Short: Ray's unix sockets live under it and a socket path has at most 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="flray", dir="/tmp"))
        self.cpus = cpus_per_node
        self.port = free_ports(1)[0]
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, head: bool) -> None:
        p = free_ports(8)
        cmd = [RAY, "start", "--block", "--node-ip-address=127.0.0.1",
               f"--num-cpus={self.cpus}", "--num-gpus=0", f"--temp-dir={self.root / name}",
               f"--node-manager-port={p[0]}", f"--object-manager-port={p[1]}",
               f"--dashboard-agent-grpc-port={p[2]}", f"--dashboard-agent-listen-port={p[3]}",
               f"--metrics-export-port={p[4]}", f"--runtime-env-agent-port={p[5]}",
               "--disable-usage-stats", "--object-store-memory=100000000"]
        if head:
            cmd += ["--head", f"--port={self.port}", "--include-dashboard=false",
                    f"--dashboard-port={p[6]}", f"--ray-client-server-port={p[7]}"]
        else:
            cmd += [f"--address=127.0.0.1:{self.port}"]
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=CLUSTER_ENV,
                                           start_new_session=True))

    def status(self) -> str:
        return subprocess.run([RAY, "status", f"--address=127.0.0.1:{self.port}"],
                              capture_output=True, text=True, timeout=60).stdout

    def __enter__(self) -> "RayCluster":
        self._start("head", head=True)
        self._start("worker", head=False)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    self.__exit__()
                    pytest.fail(f"a ray start exited with {proc.returncode}: {self.logs()}")
            text = self.status()
            if text.count(" node_") == 2 and f"/{2 * self.cpus}.0 CPU" in text:
                return self
            time.sleep(1)
        self.__exit__()
        pytest.fail(f"the two-node cluster did not come up in {START_TIMEOUT_S} s: {self.logs()}")

    def logs(self) -> str:
        return "".join((self.root / f"{n}.log").read_text()[-2000:]
                       for n in ("head", "worker") if (self.root / f"{n}.log").exists())

    def actor_logs(self, name: str, actor: str) -> list[Path]:
        """The worker processes of this node that hosted ``actor`` (Ray tags their stdout)."""
        logs = (self.root / name / "session_latest" / "logs").glob("worker-*.out")
        return [p for p in logs if f":actor_name:{actor}" in p.read_text()]

    def __exit__(self, *exc) -> None:
        # SIGTERM is how `ray stop` ends raylet and GCS; the group holds every process that
        # a node started, so nothing outside this cluster is signalled.
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_group_alive(p.pid) for p in self.procs):
            time.sleep(0.5)
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_times(rs):
    drop = {"round_time_s", "wall_time_s"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rs]


@pytest.mark.slow
def test_two_node_ray_cluster_in_a_private_network_namespace():
    """Run the cluster test below inside a network namespace of its own (``unshare -n``),
    whose only interface is loopback.

    In cluster mode Ray replaces 127.0.0.1 in ``--node-ip-address`` with the machine's
    interface address, so on the host its nodes would talk over that address. In a fresh
    namespace the only address is 127.0.0.1, Ray falls back to it, and every packet of the
    test stays on loopback. Needs root (CI runs as root); without it the test fails, naming
    the reason, rather than skip.
    """
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("the two-node Ray test needs root and util-linux's unshare for a private "
                    "network namespace (so Ray stays on loopback)")
    code = ("import pathlib, tempfile; from tests.integration.test_ray_cluster import "
            "cluster_run_matches_a_local_run as t; t(pathlib.Path(tempfile.mkdtemp(prefix='flray-out'))); "
            "print('cluster test: ok')")
    inner = f"ip link set lo up && exec {sys.executable} -c \"{code}\""
    res = subprocess.run(["unshare", "--net", "bash", "-c", inner], cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert "cluster test: ok" in res.stdout, res.stdout[-3000:]
    print(res.stdout[-400:])


def cluster_run_matches_a_local_run(tmp_path: Path) -> None:
    """The experiment on a two-node Ray cluster equals a local run (called inside the
    private namespace of the test above, never on the host's interfaces)."""
    args = ["run", SMOKE, "--rounds", 2, "--workers", 2]
    t0 = time.monotonic()
    # The reference run trains while the cluster starts: starting is mostly waiting.
    local = start_cli(*args, "--out", tmp_path / "local")
    try:
        cluster = RayCluster(NODE_CPUS)
        with cluster:
            up_s = time.monotonic() - t0
            proc, placed, drivers = run_on(cluster, args, tmp_path / "cluster")
        local_out, _ = local.communicate(timeout=400)
    finally:
        if local.poll() is None:
            kill_group(local)
    run_s = time.monotonic() - t0 - up_s
    assert all(not _group_alive(p.pid) for p in cluster.procs)
    shutil.rmtree(cluster.root, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"2 workers on 2 nodes (CPU {2 * NODE_CPUS}, GPU 0)" in proc.stdout, proc.stdout
    # One ClientApp worker per node: Flower's pool spanned both nodes, and it sized
    # the pool by cpus_per_worker (at 1 CPU a worker, each node would host two).
    assert {n: len(p) for n, p in placed.items()} == {"head": 1, "worker": 1}, placed
    # The driver joined this cluster (a driver of its head) instead of starting a Ray.
    assert len(drivers) == 1, drivers

    (run_dir,) = run_dirs(tmp_path / "cluster", "smoke")  # written here, by the driver
    rs = rows(run_dir)
    assert [r["round"] for r in rs if r["type"] == "round"] == [1, 2]
    assert all(r["clients_completed"] == 4 for r in rs if r["type"] == "round")
    assert (run_dir / "summary.json").exists()

    # Which node or process trains a client cannot change a number (seeded per client, one
    # TF thread, op determinism, updates summed in client-id order): equal, not close.
    assert local.returncode == 0, local_out
    (local_dir,) = run_dirs(tmp_path / "local", "smoke")
    assert without_times(rs) == without_times(rows(local_dir))
    with np.load(run_dir / "final_weights.npz") as a, np.load(local_dir / "final_weights.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    print(f"cluster up {up_s:.0f} s, cluster run + stop + local run {run_s:.0f} s")


def run_on(cluster: RayCluster, args: list, out: Path):
    """Run the experiment on ``cluster``: the CLI's result and what each node hosted."""
    proc = run_cli(*args, "--out", out,
                   "--set", f"simulation.ray_address=127.0.0.1:{cluster.port}",
                   "--set", f"simulation.cpus_per_worker={CPUS_PER_WORKER}", timeout=400,
                   env_extra={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"})
    placed = {n: cluster.actor_logs(n, "ClientAppActor") for n in ("head", "worker")}
    drivers = list((cluster.root / "head" / "session_latest" / "logs").glob("python-core-driver-*"))
    return proc, placed, drivers


def test_bad_ray_address_exits_2_before_anything_starts(tmp_path):
    proc = run_cli("run", SMOKE, "--set", "simulation.ray_address=ray://head:10001",
                   "--out", tmp_path)
    assert proc.returncode == 2
    assert "simulation.ray_address = 'ray://head:10001'" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_a_ray_worker_without_a_gpu_hides_the_gpus_and_one_with_a_share_keeps_them():
    # Ray can be told it has a GPU that is not there; a worker reserving a share of it is
    # assigned its id, one reserving none is not. The driver is no worker either way.
    code = """
import ray
from fl_sim.gpus import ray_actor_without_gpu

@ray.remote
class Probe:
    def ask(self):
        return ray_actor_without_gpu(), ray.get_gpu_ids()

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR")
cpu_only = Probe.options(num_cpus=1, num_gpus=0).remote()
shared = Probe.options(num_cpus=1, num_gpus=0.5).remote()
print(ray.get(cpu_only.ask.remote()), ray.get(shared.ask.remote()), ray_actor_without_gpu())
ray.shutdown()
"""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "(True, []) (False, [0]) False", proc.stdout
