"""The lazy synthetic population (data.source = "synthetic_lazy"): ids from an index,
client data only for the clients asked for, memory independent of the population size."""

from __future__ import annotations

import dataclasses
import pickle
import tracemalloc

import numpy as np
import pytest

import fl_sim.data.population as population
from fl_sim.config import DataConfig, ExperimentConfig, ServerConfig
from fl_sim.data import load_corpus
from fl_sim.data.population import VOCAB_SAMPLE_CLIENTS, ClientIds, LazySyntheticCorpus
from fl_sim.sampling import sample_clients


def _cfg(tmp_path, **kw) -> DataConfig:
    base = {"source": "synthetic_lazy", "cache_dir": str(tmp_path / "cache"), "seq_len": 8,
            "synthetic_sentences": 10, "eval_clients": 4}
    return dataclasses.replace(DataConfig(), **{**base, **kw})


# --------------------------------------------------------------------------- ClientIds


def test_client_ids_behave_like_the_list_they_stand_for():
    ids = ClientIds(0, 1200, 4)
    as_list = [f"c{i:04d}" for i in range(1200)]
    assert len(ids) == 1200 and ids == as_list and list(ids) == as_list
    assert ids[0] == "c0000" and ids[-1] == "c1199" and ids[37] == as_list[37]
    assert ids[10:20] == as_list[10:20] and isinstance(ids[10:20], ClientIds)
    assert ids[::500] == as_list[::500]
    assert "c0042" in ids and "c1200" not in ids and "c042" not in ids and 42 not in ids
    assert ids.index("c0999") == 999
    with pytest.raises(ValueError):
        ids.index("x")
    with pytest.raises(IndexError):
        ids[1200]
    tail = ClientIds(1000, 1200, 4)
    assert tail.index("c1000") == 0 and "c0999" not in tail
    assert pickle.loads(pickle.dumps(ids)) == ids
    assert len(pickle.dumps(ClientIds(0, 10**9, 9))) < 200  # three integers, whatever the size


def test_sampling_a_range_equals_sampling_the_materialized_list():
    ids = ClientIds(0, 5000, 4)
    for scheme in ("fixed", "poisson"):
        for rnd in (1, 2, 7):
            assert sample_clients(ids, 50, 3, rnd, scheme) == sample_clients(list(ids), 50, 3, rnd, scheme)


# --------------------------------------------------------------------------- the corpus


def test_registered_as_a_data_source_and_consistent(tmp_path):
    cfg = _cfg(tmp_path, synthetic_clients=40, max_sequences_per_client=8)
    corpus = load_corpus(cfg, seed=0)
    assert isinstance(corpus, LazySyntheticCorpus)
    assert not (tmp_path / "cache").exists()  # nothing written to disk
    assert len(corpus.train_client_ids) == 36 and corpus.eval_client_ids == ["c036", "c037", "c038", "c039"]
    assert not set(corpus.train_client_ids) & set(corpus.eval_client_ids)
    cid = corpus.train_client_ids[5]
    train = corpus.client_train(cid)
    assert train.shape == (8, 9) and train.dtype == np.int32
    assert corpus.num_train_sequences(cid) == len(train)
    assert corpus.eval_sequences().shape == (4 * 8, 9)
    assert corpus.eval_sequences(5).shape == (5, 9)
    base = corpus.most_frequent_baseline()
    assert 0 < base["accuracy"] < 1 and base["word"] is not None
    with pytest.raises(KeyError):
        corpus.client_train("c036")  # an eval client
    with pytest.raises(KeyError):
        corpus.client_eval(cid)
    d = corpus.describe()
    assert d["num_train_clients"] == 36 and d["population"] == 40
    capped = load_corpus(dataclasses.replace(cfg, max_clients=10), seed=0)
    assert len(capped.train_client_ids) == 10


def test_deterministic_across_instances_and_processes(tmp_path):
    cfg = _cfg(tmp_path, synthetic_clients=100_000)
    a, b = load_corpus(cfg, seed=3), load_corpus(cfg, seed=3)
    shipped = pickle.loads(pickle.dumps(a))  # what a simulation worker receives
    assert len(pickle.dumps(a)) < 2000
    assert a.vocab == b.vocab == shipped.vocab
    for cid in ("c00000", "c54321", a.train_client_ids[-1]):
        np.testing.assert_array_equal(a.client_train(cid), b.client_train(cid))
        np.testing.assert_array_equal(a.client_train(cid), shipped.client_train(cid))
    np.testing.assert_array_equal(a.eval_sequences(), shipped.eval_sequences())
    other = load_corpus(cfg, seed=4)
    assert not np.array_equal(other.client_train("c00000"), a.client_train("c00000"))


def test_same_sentences_as_the_in_memory_synthetic_source(tmp_path):
    # Same ids, same per-client grammar draws; vocabularies may order words differently,
    # so compare the decoded words.
    lazy = load_corpus(_cfg(tmp_path, synthetic_clients=24), seed=0)
    eager = load_corpus(_cfg(tmp_path, source="synthetic", synthetic_clients=24), seed=0)
    shared = [c for c in eager.train_client_ids if c in lazy.train_client_ids]
    assert shared
    for cid in shared:
        assert (lazy.vocab.decode(lazy.client_train(cid).ravel())
                == eager.vocab.decode(eager.client_train(cid).ravel()))


def test_data_made_only_for_the_clients_asked_for(tmp_path, monkeypatch):
    made: list[str] = []
    real = population.client_sentences

    def counting(seed, cid, n):
        made.append(cid)
        return real(seed, cid, n)

    monkeypatch.setattr(population, "client_sentences", counting)
    corpus = load_corpus(_cfg(tmp_path, synthetic_clients=1_000_000), seed=0)
    assert len(made) == VOCAB_SAMPLE_CLIENTS  # the vocabulary sample, nothing else
    made.clear()
    cohort = sample_clients(corpus.train_client_ids, 100, 0, 1)
    for cid in cohort:
        corpus.client_train(cid)
    assert sorted(made) == sorted(cohort)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_population(tmp_path):
    from strategies.fedavg_strategy import FedAvgDelta

    def server_side(n):
        def go():
            corpus = load_corpus(_cfg(tmp_path, synthetic_clients=n), seed=0)
            cfg = ExperimentConfig(server=ServerConfig(clients_per_round=100))
            strategy = FedAvgDelta(cfg, corpus.train_client_ids, "")
            assert isinstance(strategy.client_ids, ClientIds)  # not copied into a list
            for rnd in range(1, 4):
                for cid in sample_clients(strategy.client_ids, 100, 0, rnd):
                    corpus.client_train(cid)
        return go

    small, large = _peak_bytes(server_side(1_000)), _peak_bytes(server_side(1_000_000))
    # A list of a million ids alone would be ~65 MB; allow noise of a few hundred kB.
    assert large < small + 512 * 1024, (small, large)


def test_too_few_sentences_is_a_data_error(tmp_path):
    from fl_sim.data import DataError

    with pytest.raises(DataError, match="min_client_sequences"):
        load_corpus(_cfg(tmp_path, synthetic_clients=10, synthetic_sentences=1,
                         min_client_sequences=2), seed=0)
