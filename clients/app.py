"""The Flower ClientApp: trains the clients the server assigns to this node (clients/trainer.py).

The experiment arrives inside each train message (the resolved TOML), so a node needs
no config file of its own. Each worker process keeps one corpus handle and one
``LocalTrainer`` per experiment, so nothing is rebuilt or re-tokenized between clients.
In a deployment, where Flower starts a fresh process for every message, that process
hands the work to the node's warm trainer instead (clients/trainer_link.py). With
``deployment.node_sums`` the node returns one summed update for its clients
(fl_sim/updates.py), summed where they trained (the warm trainer, or this process).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import trainer_link
from clients.faults import crashes
from fl_sim import protocol
from fl_sim.config import ExperimentConfig
from fl_sim.updates import NodeSum, sum_updates

_CACHE: dict[str, object] = {}
log = logging.getLogger("fl_sim.clients")
#: A failure reason sent to the server is cut to this length (it is a diagnostic, not a log).
MAX_REASON = 300


def _configure_tf_threads() -> None:
    # Several workers share the machine's cores; each must not spawn a thread per core.
    # The allocator is tuned here too: once per process, before the first local pass.
    import tensorflow as tf

    from fl_sim.gpus import configure_gpus
    from fl_sim.malloc import tune_malloc

    if _CACHE.get("tf-configured"):
        return
    configure_gpus()  # before any op: workers placed on one GPU must share its memory
    tune_malloc()
    n = int(os.environ.get("FL_SIM_TF_THREADS", "1"))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        pass  # TF already initialised in this process (e.g. the in-process server)
    tf.config.experimental.enable_op_determinism()
    _CACHE["tf-configured"] = True


def worker_state(experiment_toml: str) -> tuple[ExperimentConfig, object, object]:
    """(config, corpus, trainer) for this experiment, built once per worker process."""
    key = hashlib.sha256(experiment_toml.encode()).hexdigest()
    if key not in _CACHE:
        import tomllib

        from clients.trainer import LocalTrainer
        from fl_sim.config import from_dict
        from fl_sim.data import load_corpus

        _configure_tf_threads()
        cfg = from_dict(tomllib.loads(experiment_toml), where="<experiment from server>")
        corpus = load_corpus(cfg.data, cfg.experiment.seed)
        trainer = LocalTrainer(cfg, corpus.vocab.size, corpus.seq_len)
        # One experiment at a time per worker (a comparison runs its models in sequence).
        for k in [k for k in _CACHE if k != "tf-configured"]:
            del _CACHE[k]
        _CACHE[key] = (cfg, corpus, trainer)
    return _CACHE[key]


app = ClientApp()


def node_partition(context: Context) -> tuple[int, int] | None:
    """(partition id, number of partitions) from the SuperNode's node config, if set."""
    nc = context.node_config
    if "partition-id" not in nc or "num-partitions" not in nc:
        return None
    return int(nc["partition-id"]), int(nc["num-partitions"])


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Tell the server which partition of the clients this node owns (deployment only)."""
    part = node_partition(context)
    info = {} if part is None else {"partition-id": part[0], "num-partitions": part[1]}
    return Message(RecordDict({"partition": ConfigRecord(info)}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content[protocol.CONFIG]
    clip = float(config[protocol.CLIP_NORM]) if protocol.CLIP_NORM in config else None
    results, failures = node_train(
        context, str(config["experiment"]), int(config["server-round"]),
        list(config["client-ids"]), msg.content[protocol.ARRAYS].to_numpy_ndarrays(),
        partitioned="num-partitions" in config, clip_norm=clip)
    if isinstance(results, NodeSum):
        return protocol.node_sum_reply(msg, results, failures)
    return protocol.train_reply(msg, results, failures)


def node_train(context, experiment_toml: str, server_round: int, client_ids: list[str],
               global_weights: list, *, partitioned: bool, clip_norm: float | None = None
               ) -> tuple[list[tuple[str, list, dict]] | NodeSum, list[tuple[str, str]]]:
    """One train message's work: ``(results, failures)`` of ``train_clients``, the results
    summed into one ``NodeSum`` with ``deployment.node_sums`` (clipped to ``clip_norm``, the
    round's C the server sent, under DP).

    In a per-message flwr-clientapp process (a deployment) with ``deployment.warm_trainer``,
    the node's warm trainer does it (clients/trainer_link.py); if that trainer cannot, this
    process does, with the same result. ``partitioned``: a partitioned deployment, where
    the node trains only the clients it owns.
    """
    t0 = time.perf_counter()
    per_message = trainer_link.per_message_process()
    if per_message:
        cfg = experiment_config(experiment_toml)
        if cfg.deployment.warm_trainer:
            try:
                results, failures, timing = trainer_link.train(
                    context, experiment_toml, cfg, server_round, client_ids, global_weights,
                    partitioned, clip_norm)
            except trainer_link.TrainerUnavailable as exc:
                print(f"fl-sim node: round {server_round}: warm trainer unavailable ({exc}); "
                      "training in this process", file=sys.stderr, flush=True)
            else:
                report_timing(server_round, len(client_ids), "warm trainer", t0, timing,
                              summed=isinstance(results, NodeSum))
                return results, failures
    t1 = time.perf_counter()
    cfg, corpus, trainer = worker_state(experiment_toml)
    t2 = time.perf_counter()
    if partitioned:
        check_ownership(client_ids, corpus.train_client_ids, context)
    results, failures = train_clients(cfg, corpus, trainer, client_ids, global_weights, server_round)
    results = node_results(cfg, results, global_weights, clip_norm)
    if per_message:
        report_timing(server_round, len(client_ids), "in process", t0,
                      {"build_s": t2 - t1, "train_s": time.perf_counter() - t2},
                      summed=isinstance(results, NodeSum))
    return results, failures


def experiment_config(experiment_toml: str) -> ExperimentConfig:
    import tomllib

    from fl_sim.config import from_dict

    return from_dict(tomllib.loads(experiment_toml), where="<experiment from server>")


def report_timing(server_round: int, n_clients: int, where: str, t0: float, timing: dict, *,
                  summed: bool = False) -> None:
    """One line per message on the SuperNode's log: where a deployment round's time goes.

    ``process`` is this flwr-clientapp process's age when the handler began (Python, Flower's
    import, loading the app, receiving the message); ``build`` loading the corpus, building
    the model and tracing (TensorFlow's import with it, when this process did it).
    """
    line = (f"fl-sim node: round {server_round}: {n_clients} clients {where}: "
            f"process {process_age() - (time.perf_counter() - t0):.2f} s, "
            f"handler {time.perf_counter() - t0:.2f} s")
    if "connect_s" in timing:
        line += (f" (connect {timing['connect_s']:.2f} s{', trainer started' if timing['started'] else ''}"
                 f", build {timing['build_s']:.2f} s, train {timing['train_s']:.2f} s)")
    else:
        line += f" (build {timing['build_s']:.2f} s, train {timing['train_s']:.2f} s)"
    if summed:  # deployment.node_sums: the reply carries one summed update
        line += ", summed"
    print(line, file=sys.stderr, flush=True)


def process_age() -> float:
    """Seconds since this process started (from /proc; 0 where there is no /proc)."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


def train_clients(cfg: ExperimentConfig, corpus, trainer, client_ids: list[str],
                  global_weights: list, server_round: int
                  ) -> tuple[list[tuple[str, list, dict]], list[tuple[str, str]]]:
    """Train each client in turn: ``(results, failures)``.

    One client's exception is that client's failure only: it is caught, logged here with
    its traceback and reported to the server as ``(client id, reason)``, and the node goes
    on with its other clients (otherwise Flower fails the whole node's message and every
    other client's update on it is lost with it).
    """
    results, failures = [], []
    rate = cfg.simulation.client_failure_rate
    for cid in client_ids:
        if crashes(cfg.experiment.seed, server_round, cid, rate):
            continue  # injected crash: the server counts the client as failed
        try:
            delta, metrics = trainer.train(global_weights, corpus.client_train(cid), server_round, cid)
        except Exception as exc:  # noqa: BLE001 - any client bug is that client's failure
            log.warning("round %s: client %s failed", server_round, cid, exc_info=True)
            failures.append((cid, f"{type(exc).__name__}: {exc}"[:MAX_REASON]))
            continue
        results.append((cid, delta, metrics))
    return results, failures


def node_results(cfg: ExperimentConfig, results: list[tuple[str, list, dict]], global_weights: list,
                 clip_norm: float | None = None) -> list[tuple[str, list, dict]] | NodeSum:
    """What the node returns for its trained clients: each update, or with
    ``deployment.node_sums`` their sum, validated by the server's rule against the global
    weights it was sent; under DP each clipped to ``clip_norm`` first (sent by the server)."""
    if not cfg.deployment.node_sums:
        return results
    if cfg.privacy.enabled and clip_norm is None:
        raise ValueError("deployment.node_sums with privacy.enabled: the train message carries no "
                         f"'{protocol.CLIP_NORM}' (the round's clip norm); the node will not send "
                         "an unclipped sum")
    return sum_updates(results, global_weights, weighted=cfg.server.weighted,
                       max_update_bytes=cfg.server.max_update_bytes, clip_norm=clip_norm)


def check_ownership(client_ids: list[str], all_clients: list[str], context: Context) -> None:
    from fl_sim.partitioning import partition_clients

    part = node_partition(context)
    if part is None:
        raise ValueError("the server assigns clients by partition but this SuperNode has no "
                         "partition-id / num-partitions in its --node-config")
    owner = partition_clients(all_clients, part[1])
    foreign = [cid for cid in client_ids if owner.get(cid) != part[0]]
    if foreign:
        raise ValueError(f"clients {foreign} are not in partition {part[0]} of {part[1]} "
                         "owned by this SuperNode")
