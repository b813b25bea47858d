"""The Flower ClientApp: trains the clients the server assigns to this node with plain SGD.

The experiment arrives inside each train message (the resolved TOML), so a node needs
no config file of its own. Each worker process keeps one corpus handle and one
``LocalTrainer`` per experiment, so nothing is rebuilt or re-tokenized between clients.
"""

from __future__ import annotations

import hashlib
import os

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fl_sim import protocol
from fl_sim.config import ExperimentConfig

_CACHE: dict[str, object] = {}


def _configure_tf_threads() -> None:
    # Several workers share the machine's cores; each must not spawn a thread per core.
    import tensorflow as tf

    if _CACHE.get("tf-configured"):
        return
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


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content[protocol.CONFIG]
    cfg, corpus, trainer = worker_state(str(config["experiment"]))
    server_round = int(config["server-round"])
    global_weights = msg.content[protocol.ARRAYS].to_numpy_ndarrays()
    results = []
    for cid in config["client-ids"]:
        delta, metrics = trainer.train(global_weights, corpus.client_train(cid), server_round, cid)
        results.append((cid, delta, metrics))
    return protocol.train_reply(msg, results)
