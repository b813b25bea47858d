"""Run an experiment in Flower's Simulation Runtime (Ray backend), in this process."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path

from fl_sim.config import ConfigError, ExperimentConfig


def pin_ray_to_loopback() -> None:
    """Make Ray bind and talk on 127.0.0.1 only.

    On Linux Ray resolves even an explicit 127.0.0.1 to the host's interface address (it
    assumes a cluster). With this switch off, a single-machine Ray uses loopback. It must be
    set before Ray is first imported; worker processes inherit it.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def quiet_libraries(verbose: bool = False) -> None:
    """Keep the console for fl_sim's progress lines unless --verbose is given."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not verbose:
        # Flower warns on every run that run_simulation is deprecated in favour of `flwr run`;
        # fl-sim keeps the in-process runtime on purpose (see docs), so only errors show.
        logging.getLogger("flwr").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=FutureWarning)


#: TensorFlow's start-up lines: absl's notice and its INFO/WARNING lines (oneDNN, CUDA drivers).
_TF_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                       r"|[IW]\d{4} [\d:. ]+ \d+ [\w.]+:\d+\]")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up chatter kept off the console.

    TF 2.21 logs through absl before absl's logging is set up, straight to file descriptor
    2 and whatever TF_CPP_MIN_LOG_LEVEL says. So fd 2 points at a temporary file while TF
    loads (in the main thread, before any other thread writes), and every other line, an
    error say, is written back.
    """
    if "tensorflow" in sys.modules:
        return
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines(True):
            if not _TF_NOISE.match(line):
                sys.stderr.write(line)
        sys.stderr.flush()


#: Simulated nodes per worker when ``simulation.num_supernodes = 0``.
NODES_PER_WORKER = 2


def num_supernodes(cfg: ExperimentConfig, workers: int | None = None) -> int:
    """Simulated SuperNodes: ``simulation.num_supernodes``, or a few per worker.

    ``workers``: the size of Flower's worker pool (default ``simulation.num_workers``; on
    an existing cluster, what its nodes fit).

    Any node trains any client (the message names the clients), so the node count only
    decides how a cohort is split into messages. Flower's in-memory runtime polls every
    node for every message about ten times a second; with one node per client that
    scanning grew with cohort^2 and cost +42% CPU over pure compute at cohort 100
    (docs/performance.md). Two nodes per worker keep both workers busy when clients'
    sizes differ, at a negligible polling cost.
    """
    if cfg.simulation.num_supernodes:
        return cfg.simulation.num_supernodes
    workers = cfg.simulation.num_workers if workers is None else workers
    return max(1, min(cfg.server.clients_per_round, NODES_PER_WORKER * workers))


def ray_backend_config(cfg: ExperimentConfig, verbose: bool = False) -> dict:
    """Flower's RayBackend config: a local Ray of ``num_workers`` CPUs, or a running cluster.

    Flower sizes its actor pool from Ray's resources: per node, floor(node CPUs / num_cpus),
    capped by floor(node GPUs / num_gpus) when a worker needs a GPU. A local Ray is started
    with num_workers CPUs and one per worker, so num_workers workers run (fewer when the
    GPUs Ray detects do not give each its gpus_per_worker). A cluster's nodes already
    declare their CPUs and GPUs (``ray start --num-cpus/--num-gpus``), and Ray refuses
    num_cpus/num_gpus when connecting.
    """
    sim = cfg.simulation
    init_args: dict = {"logging_level": logging.INFO if verbose else logging.ERROR,
                       "log_to_driver": verbose}
    if sim.ray_address:
        init_args["address"] = sim.ray_address
        cpus = sim.cpus_per_worker
    else:
        init_args.update(num_cpus=sim.num_workers, include_dashboard=False)
        cpus = 1
    return {"client_resources": {"num_cpus": cpus, "num_gpus": sim.gpus_per_worker},
            "init_args": init_args}


#: Tries to start a local Ray. Ray waits a fixed 30 s for its raylet to register and then
#: fails with "timed out during startup"; on a loaded machine (several sweeps sharing two
#: cores here, load 70) that happened to runs that would then have trained normally.
RAY_START_TRIES = 3


def _init_ray(ray, kwargs: dict, local: bool) -> None:
    for attempt in range(1, RAY_START_TRIES + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if not local or "timed out during startup" not in str(exc) or attempt == RAY_START_TRIES:
                raise
            ray.shutdown()
            print(f"fl-sim: the local Ray did not start in time (attempt {attempt} of "
                  f"{RAY_START_TRIES}: {exc}); trying again", file=sys.stderr, flush=True)
            time.sleep(5 * attempt)


def start_ray(cfg: ExperimentConfig, verbose: bool = False) -> dict:
    """Start (or join) Ray as Flower's RayBackend would; return the pool it will build.

    Flower starts Ray itself unless it is already running in this process, and only
    learns in its backend thread that no worker fits, as an "ActorPool is empty" crash.
    Starting it here names the setting instead and tells how many workers a cluster fits
    before the supernodes are counted. ``{"workers", "nodes", "cpus", "gpus"}``.
    """
    import ray
    from flwr.simulation.ray_transport.ray_actor import pool_size_from_resources

    backend = ray_backend_config(cfg, verbose)
    if not ray.is_initialized():
        # What Flower's RayBackend.init_ray passes: workers import this process's modules
        # (fl_sim, clients, strategies) from the same paths.
        pythonpath = os.pathsep.join(filter(None, [*sys.path, os.environ.get("PYTHONPATH")]))
        os.environ["PYTHONPATH"] = pythonpath
        _init_ray(ray, {"runtime_env": {"env_vars": {"PYTHONPATH": pythonpath}},
                        "include_dashboard": False, **backend["init_args"]},
                  local=not cfg.simulation.ray_address)
    alive = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources")]
    cpus = sum(n["Resources"].get("CPU", 0) for n in alive)
    gpus = sum(n["Resources"].get("GPU", 0) for n in alive)
    try:
        workers = pool_size_from_resources(backend["client_resources"])
    except ValueError:
        ray.shutdown()
        sim = cfg.simulation
        # A local Ray has a CPU for every worker: only the GPU request can fail to fit there.
        keys = [f"simulation.cpus_per_worker = {sim.cpus_per_worker:g}"] if sim.ray_address else []
        if sim.gpus_per_worker:
            keys.append(f"simulation.gpus_per_worker = {sim.gpus_per_worker:g}")
        where = f"the Ray cluster at {sim.ray_address}" if sim.ray_address else "the local Ray"
        raise ConfigError(
            f"{cfg.source}: {', '.join(keys)}: no worker fits on any node of {where} "
            f"(CPU {cpus:g}, GPU {gpus:g} over {len(alive)} nodes)") from None
    return {"workers": workers, "nodes": len(alive), "cpus": cpus, "gpus": gpus}


def simulate(cfg: ExperimentConfig, run_dir: Path, *, resume: bool = False, verbose: bool = False,
             progress=print) -> None:
    """Train ``cfg`` into ``run_dir`` with Ray worker processes (a local Ray, or a cluster's).

    Only the ClientApp workers run on the cluster: the ServerApp runs in this process, so
    the run directory is written on this machine.
    """
    if not cfg.simulation.ray_address:
        pin_ray_to_loopback()  # a cluster's nodes must reach this driver on its real address
    # Ray's C++ core otherwise installs absl's crash handler for SIGTERM in this process,
    # over fl_sim's: SIGTERM then printed a stack dump and aborted (rc -6) instead of
    # stopping the run cleanly with exit 143 (fl_sim.app.stopping).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if not verbose:
        import_tensorflow_quietly()
    from flwr.simulation import run_simulation

    from fl_sim.app import stopping

    stopping.keep_through_ray()

    quiet_libraries(verbose)  # after importing flwr, which resets its logger's level

    from clients.app import app as client_app
    from fl_sim.app.server_app import make_server_app

    ray_pool = start_ray(cfg, verbose)
    if cfg.simulation.ray_address:
        progress(f"ray: {cfg.simulation.ray_address}: {ray_pool['workers']} workers on "
                 f"{ray_pool['nodes']} nodes (CPU {ray_pool['cpus']:g}, GPU {ray_pool['gpus']:g})")
    nodes = num_supernodes(cfg, ray_pool["workers"])
    server_app = make_server_app(cfg, run_dir, resume=resume, min_nodes=nodes, progress=progress)
    backend_config = ray_backend_config(cfg, verbose)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=nodes,
                   backend_name=cfg.simulation.backend, backend_config=backend_config,
                   verbose_logging=verbose)
