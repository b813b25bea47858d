"""The Flower ClientApp: trains the clients the server assigns to this node (clients/trainer.py).

The experiment arrives inside each train message (the resolved TOML), so a node needs
no config file of its own. Each worker process keeps one corpus handle and one
``LocalTrainer`` per experiment, so nothing is rebuilt or re-tokenized between clients.
"""

from __future__ import annotations

import hashlib
import logging
import os

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients.faults import crashes
from fl_sim import protocol
from fl_sim.config import ExperimentConfig

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
    cfg, corpus, trainer = worker_state(str(config["experiment"]))
    server_round = int(config["server-round"])
    if "num-partitions" in config:  # a partitioned deployment: train only clients we own
        check_ownership(list(config["client-ids"]), corpus.train_client_ids, context)
    global_weights = msg.content[protocol.ARRAYS].to_numpy_ndarrays()
    results, failures = train_clients(cfg, corpus, trainer, list(config["client-ids"]),
                                      global_weights, server_round)
    return protocol.train_reply(msg, results, failures)


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
