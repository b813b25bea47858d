"""Run an experiment in Flower's Simulation Runtime (Ray backend), in this process."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from fl_sim.config import ExperimentConfig


def pin_ray_to_loopback() -> None:
    """Make Ray bind and talk on 127.0.0.1 only.

    On Linux Ray resolves even an explicit 127.0.0.1 to the host's interface address (it
    assumes a cluster). With this switch off, a single-machine Ray uses loopback. It must be
    set before Ray is first imported; worker processes inherit it.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's C++ core otherwise installs absl's crash handler for SIGTERM in this process,
    # over fl_sim's: SIGTERM then printed a stack dump and aborted (rc -6) instead of
    # stopping the run cleanly with exit 143 (fl_sim.app.stopping).
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")


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


#: Simulated nodes per worker when ``simulation.num_supernodes = 0``.
NODES_PER_WORKER = 2


def num_supernodes(cfg: ExperimentConfig) -> int:
    """Simulated SuperNodes: ``simulation.num_supernodes``, or a few per worker.

    Any node trains any client (the message names the clients), so the node count only
    decides how a cohort is split into messages. Flower's in-memory runtime polls every
    node for every message about ten times a second; with one node per client that
    scanning grew with cohort^2 and cost +42% CPU over pure compute at cohort 100
    (docs/performance.md). Two nodes per worker keep both workers busy when clients'
    sizes differ, at a negligible polling cost.
    """
    if cfg.simulation.num_supernodes:
        return cfg.simulation.num_supernodes
    return max(1, min(cfg.server.clients_per_round, NODES_PER_WORKER * cfg.simulation.num_workers))


def simulate(cfg: ExperimentConfig, run_dir: Path, *, resume: bool = False, verbose: bool = False,
             progress=print) -> None:
    """Train ``cfg`` into ``run_dir`` with ``simulation.num_workers`` Ray worker processes."""
    pin_ray_to_loopback()
    from flwr.simulation import run_simulation

    from fl_sim.app import stopping

    stopping.keep_through_ray()

    quiet_libraries(verbose)  # after importing flwr, which resets its logger's level

    from clients.app import app as client_app
    from fl_sim.app.server_app import make_server_app

    nodes = num_supernodes(cfg)
    server_app = make_server_app(cfg, run_dir, resume=resume, min_nodes=nodes, progress=progress)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cfg.simulation.num_workers, "include_dashboard": False,
                      "logging_level": logging.INFO if verbose else logging.ERROR,
                      "log_to_driver": verbose},
    }
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=nodes,
                   backend_name=cfg.simulation.backend, backend_config=backend_config,
                   verbose_logging=verbose)
