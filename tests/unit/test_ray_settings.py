"""[simulation] settings for Ray: where it runs (ray_address), what a worker reserves, GPUs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl_sim.app.simulation import num_supernodes, ray_backend_config
from fl_sim.config import ConfigError, ExperimentConfig, load_experiment

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "experiments" / "smoke.toml"


def test_defaults_start_a_local_ray_with_one_cpu_per_worker_and_no_gpu():
    sim = ExperimentConfig().simulation
    assert (sim.ray_address, sim.cpus_per_worker, sim.gpus_per_worker) == ("", 1.0, 0.0)


@pytest.mark.parametrize("address", ["", "auto", "127.0.0.1:6379", "head-0.cluster:10001"])
def test_ray_address_accepts_local_auto_and_host_port(address):
    cfg = load_experiment(SMOKE, [f"simulation.ray_address={address}"])
    assert cfg.simulation.ray_address == address


@pytest.mark.parametrize("address", ["head", "head:", ":6379", "head:0", "head:65536",
                                     "head:port", "ray://head:10001", "my head:6379"])
def test_bad_ray_address_names_the_key(address):
    with pytest.raises(ConfigError) as e:
        load_experiment(SMOKE, [f"simulation.ray_address={address}"])
    assert f"simulation.ray_address = {address!r}" in str(e.value) and "host:port" in str(e.value)


@pytest.mark.parametrize("override,needle", [
    ("simulation.cpus_per_worker=0", "simulation.cpus_per_worker = 0.0: expected number > 0.0"),
    ("simulation.cpus_per_worker=-1", "simulation.cpus_per_worker = -1.0"),
    ("simulation.gpus_per_worker=-0.5", "simulation.gpus_per_worker = -0.5: expected number >= 0.0"),
    ('simulation.gpus_per_worker="half"', "simulation.gpus_per_worker = 'half': expected a number"),
])
def test_bad_worker_resources_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_experiment(SMOKE, [override])
    assert needle in str(e.value)


def test_cpus_per_worker_without_a_cluster_is_an_error():
    with pytest.raises(ConfigError) as e:
        load_experiment(SMOKE, ["simulation.cpus_per_worker=3"])
    assert "simulation.cpus_per_worker = 3 is set but simulation.ray_address is ''" in str(e.value)


def test_local_ray_has_a_cpu_per_worker_and_fractional_gpus_share_a_gpu():
    cfg = load_experiment(SMOKE, ["simulation.num_workers=4", "simulation.gpus_per_worker=0.25"])
    bc = ray_backend_config(cfg)
    # Flower's pool per node is floor(CPU / num_cpus), capped by floor(GPU / num_gpus):
    # 4 CPUs / 1 = 4 workers, and one GPU / 0.25 also fits 4.
    assert bc["client_resources"] == {"num_cpus": 1, "num_gpus": 0.25}
    assert bc["init_args"]["num_cpus"] == 4 and "address" not in bc["init_args"]
    assert bc["init_args"]["include_dashboard"] is False


def test_existing_cluster_is_joined_not_sized():
    cfg = load_experiment(SMOKE, ["simulation.ray_address=10.0.0.5:6379",
                                  "simulation.cpus_per_worker=2", "simulation.gpus_per_worker=0.5"])
    bc = ray_backend_config(cfg)
    assert bc["client_resources"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    assert bc["init_args"]["address"] == "10.0.0.5:6379"
    # ray.init refuses these when it connects to a running cluster.
    assert not {"num_cpus", "num_gpus", "resources"} & set(bc["init_args"])


def test_supernodes_follow_the_pool_a_cluster_fits():
    cfg = load_experiment(SMOKE, ["server.clients_per_round=20", "simulation.num_workers=1"])
    assert num_supernodes(cfg) == 2
    assert num_supernodes(cfg, workers=6) == 12
    assert num_supernodes(cfg, workers=50) == 20  # never more nodes than clients per round


def test_memory_growth_leaves_tensorflow_uninitialised_on_a_cpu_machine():
    # Fresh process: in this one TF may already be initialised by other tests. Setting
    # thread counts raises once TF has initialised, so this shows the helper does not.
    code = ("from fl_sim.gpus import configure_gpus\n"
            "import tensorflow as tf\n"
            "n = configure_gpus()\n"
            "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
            "assert configure_gpus() == n\n"
            "print(n, len(tf.config.list_physical_devices('GPU')))\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    n, visible = map(int, proc.stdout.split())
    assert n == visible  # every visible GPU (none on a CPU machine) was given memory growth


def test_flowers_actor_tensorflow_switch_is_still_ignored():
    """Why fl_sim/gpus.py switches memory growth on itself: RayBackend never reads
    ``actor.tensorflow`` (flwr 1.41 and 1.42). When this fails, Flower applies it: the
    workaround (and docs/deployment.md, "GPUs") can then go."""
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    actor_args = RayBackend._validate_actor_arguments(None, {"actor": {"tensorflow": True}})
    assert "on_actor_init_fn" not in actor_args
