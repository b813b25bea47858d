"""The server's view of the data holds the vocabulary, the held-out clients and the client
ids, and no training client's tokens: checked by walking everything the object can reach."""

import dataclasses
import gc
import json
import types
from pathlib import Path

import numpy as np
import pytest

from fl_sim.config import DataConfig
from fl_sim.data import load_corpus
from fl_sim.data.server_corpus import ServerCorpus, load_server_corpus

FIRST_WORD_ID = 5   # 0-3 are pad/oov/bos/eos; "." is the most frequent word, so id 4


def reachable_arrays(root) -> list[np.ndarray]:
    """Every NumPy array reachable from ``root`` through object references (and array
    bases), not descending into modules, classes or functions' globals."""
    seen, stack, out = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            out.append(obj)
            if obj.base is not None:
                stack.append(obj.base)
            continue
        if isinstance(obj, types.FunctionType):
            stack.extend([obj.__closure__ or (), obj.__defaults__ or ()])
            continue
        stack.extend(gc.get_referents(obj))
    return out


def corpus_cfg(tmp_path: Path) -> DataConfig:
    # Every client's words are its own (p1, p2, ...), so a training client's tokens are
    # recognisable anywhere: in-vocabulary word ids that no held-out row contains.
    rows = [{"client_id": c, "text": f"{c}1 {c}2 . {c}3 {c}4 ."} for c in "pqrstu"]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dataclasses.replace(DataConfig(), source="jsonl", path=str(path), eval_clients=2,
                               seq_len=6, cache_dir=str(tmp_path / "cache"))


def training_word_ids(arrays, vocab_size) -> set[int]:
    ids = set()
    for a in arrays:
        if a.dtype.kind in "iu" and a.size:
            ids |= {int(v) for v in np.unique(a) if FIRST_WORD_ID <= v < vocab_size}
    return ids


def test_the_server_view_reaches_no_training_tokens(tmp_path):
    # Prepare
    cfg = corpus_cfg(tmp_path)
    full = load_corpus(cfg, seed=0)
    assert sorted(full.vocab.words[FIRST_WORD_ID:]) == sorted(
        f"{c}{i}" for c in full.train_client_ids for i in range(1, 5))
    # Execute
    server = load_server_corpus(cfg, seed=0)
    # Assert: the walk does find training tokens in the full corpus (through its memory
    # map), so finding none in the server's view means there are none.
    assert training_word_ids(reachable_arrays(full), full.vocab.size)
    arrays = reachable_arrays(server)
    assert not any(isinstance(a, np.memmap) for a in arrays)
    assert training_word_ids(arrays, server.vocab.size) == set()
    assert sum(len(a) for a in arrays if a.ndim == 2) == len(full.eval_sequences())
    assert "cache_path" not in server.describe()


def test_the_server_view_answers_as_the_corpus_does(tmp_path):
    full = load_corpus(corpus_cfg(tmp_path), seed=0)
    server = ServerCorpus.from_corpus(full)
    assert server.vocab.words == full.vocab.words and server.seq_len == full.seq_len
    assert server.train_client_ids == full.train_client_ids
    assert server.eval_client_ids == full.eval_client_ids
    for cap in (0, 1, 3):
        np.testing.assert_array_equal(server.eval_sequences(cap), full.eval_sequences(cap))
        assert server.most_frequent_baseline(cap) == full.most_frequent_baseline(cap)
    owners = server.eval_row_clients(0)
    for i, cid in enumerate(full.eval_client_ids):
        np.testing.assert_array_equal(server.client_eval(cid), full.client_eval(cid))
        np.testing.assert_array_equal(server.eval_sequences()[owners == i], full.client_eval(cid))
    capped = server.eval_row_clients(3)
    assert len(capped) == 3 and set(capped.tolist()) <= {0, 1}
    for cid in full.train_client_ids:
        assert server.num_train_sequences(cid) == full.num_train_sequences(cid) == 2
    with pytest.raises(KeyError):
        server.client_eval(full.train_client_ids[0])
    with pytest.raises(KeyError):
        server.num_train_sequences(full.eval_client_ids[0])


def test_a_lazy_population_stays_lazy_on_the_server(tmp_path):
    cfg = dataclasses.replace(DataConfig(), source="synthetic_lazy", synthetic_clients=100_000,
                              synthetic_sentences=6, eval_clients=3, seq_len=8,
                              cache_dir=str(tmp_path / "cache"))
    full = load_corpus(cfg, seed=0)
    server = ServerCorpus.from_corpus(full)
    assert type(server.train_client_ids).__name__ == "ClientIds"   # two integers, not 10^5 ids
    assert server.num_train_sequences("c12345") == full.num_train_sequences("c12345") == 6
    np.testing.assert_array_equal(server.eval_sequences(5), full.eval_sequences(5))
    assert sum(a.nbytes for a in reachable_arrays(server)) < 10_000
