"""One client's exception fails that client only: the rest of its node's updates arrive."""

import numpy as np
import pytest
from flwr.app import ArrayRecord

from fl_sim import protocol
from fl_sim.config import load_experiment
from fl_sim.data import load_corpus
from strategies.registry import make_strategy


pytestmark = pytest.mark.usefixtures("task_identity")  # tests/conftest.py


def test_a_raising_client_fails_alone_and_the_server_counts_it(tmp_path):
    from clients.app import train_clients
    from clients.trainer import LocalTrainer

    # Prepare: the smoke corpus, two real clients and one id the corpus does not have
    # (client_train raises KeyError for it, as a client with broken data would)
    cfg = load_experiment("experiments/smoke.toml", [f'data.cache_dir="{tmp_path}"'])
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    trainer = LocalTrainer(cfg, corpus.vocab.size, corpus.seq_len)
    good = corpus.train_client_ids[:2]
    cohort = [good[0], "no-such-client", good[1]]
    weights = trainer.get_weights()
    # Execute
    results, failures = train_clients(cfg, corpus, trainer, cohort, weights, server_round=1)
    # Assert: both good clients trained; the bad one is reported with its reason
    assert [cid for cid, _, _ in results] == good
    assert [cid for cid, _ in failures] == ["no-such-client"]
    assert failures[0][1].startswith("KeyError") and "no-such-client" in failures[0][1]
    # ... and the same updates as when the good clients train alone (nothing leaked across)
    alone, none = train_clients(cfg, corpus, trainer, good, weights, server_round=1)
    assert none == []
    for (_, d1, m1), (_, d2, m2) in zip(results, alone):
        assert m1 == m2
        for a, b in zip(d1, d2):
            np.testing.assert_array_equal(a, b)

    # The reply carries both; the server aggregates the two updates and counts one failure
    request = protocol.train_message(7, ArrayRecord(weights), 1, cohort, "")
    reply = protocol.train_reply(request, results, failures)
    assert protocol.read_train_failures(reply) == failures
    strategy = make_strategy("fedavg", cfg, corpus.train_client_ids, "")
    strategy.current = weights
    strategy.last_cohort, strategy.last_plan = cohort, {7: cohort}
    new, metrics = strategy.aggregate_train(1, [reply])
    assert new is not None
    m = dict(metrics)
    assert (m["clients_completed"], m["clients_failed"], m["clients_raised"], m["nodes_failed"]) == (2, 1, 1, 0)
