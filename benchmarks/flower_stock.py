"""The baseline of bench_flower: fl_sim's experiment written the way Flower's TensorFlow
examples write it (``examples/quickstart-tensorflow``, Flower 1.2x Message API).

Per call the ClientApp clears the Keras session, builds and compiles its model, sets the
global weights and runs ``model.fit`` on its partition; one SuperNode is one client, the
server is Flower's own ``FedAvg`` with ``strategy.start``, and the simulation backend runs
with its default settings (no backend_config). Only what the example does not have is
taken from fl_sim: the model definition, the tokenized data and a masked loss, so the
model, the data and the number of SGD steps are those of the fl_sim run it is compared
with. As in the examples (whose ``FederatedDataset`` is a module-level cache), the data
are loaded once per worker process; that favours this baseline.
"""

from __future__ import annotations

import time
import tomllib

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fl_sim.config import ExperimentConfig, dumps_toml, from_dict

_DATA: dict[str, object] = {}


def load_data(cfg: ExperimentConfig, partition_id: int):
    """(x, y) of the partition_id-th training client: inputs and next-word targets."""
    from fl_sim.data import load_corpus

    key = dumps_toml(cfg)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_corpus(cfg.data, cfg.experiment.seed)
    corpus = _DATA[key]
    seqs = corpus.client_train(corpus.train_client_ids[partition_id])
    return seqs[:, :-1], seqs[:, 1:], corpus.vocab.size, corpus.seq_len


def load_model(cfg: ExperimentConfig, vocab_size: int, seq_len: int, lr: float):
    import keras

    from fl_sim.data import PAD_ID
    from fl_sim.models import build_model

    model = build_model(cfg.model, vocab_size, seq_len, seed=cfg.experiment.seed)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                  ignore_class=PAD_ID))
    return model


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    import keras

    keras.backend.clear_session()  # reset local TensorFlow state, as the example does
    config = msg.content["config"]
    cfg = from_dict(tomllib.loads(str(config["experiment"])), where="<bench>")
    x, y, vocab_size, seq_len = load_data(cfg, int(context.node_config["partition-id"]))
    model = load_model(cfg, vocab_size, seq_len, float(config["lr"]))
    model.set_weights(msg.content["arrays"].to_numpy_ndarrays())
    history = model.fit(x, y, epochs=cfg.client.local_epochs, batch_size=cfg.client.batch_size,
                        verbose=0)
    metrics = {"train_loss": float(history.history["loss"][-1]), "num-examples": len(x)}
    content = RecordDict({"arrays": ArrayRecord(model.get_weights()),
                          "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


def make_server_app(cfg: ExperimentConfig, num_nodes: int, rounds: int, marks: list[float]) -> ServerApp:
    """A ServerApp running Flower's FedAvg; ``marks`` gets a timestamp before round 1 and
    after every round (Flower calls ``evaluate_fn`` exactly then)."""
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        from fl_sim.data import load_corpus
        from fl_sim.models import build_model

        corpus = load_corpus(cfg.data, cfg.experiment.seed)
        model = build_model(cfg.model, corpus.vocab.size, corpus.seq_len, seed=cfg.experiment.seed)
        cohort = cfg.server.clients_per_round
        # A fraction that rounds down to 0 nodes, so min_train_nodes fixes the cohort exactly.
        strategy = FedAvg(fraction_train=1e-9, fraction_evaluate=0.0, min_train_nodes=cohort,
                          min_available_nodes=num_nodes)

        def evaluate_fn(server_round: int, arrays: ArrayRecord):
            marks.append(time.perf_counter())
            return None

        strategy.start(grid=grid, initial_arrays=ArrayRecord(model.get_weights()), num_rounds=rounds,
                       train_config=ConfigRecord({"experiment": dumps_toml(cfg), "lr": cfg.client.lr}),
                       evaluate_fn=evaluate_fn)

    return server
