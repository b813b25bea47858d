"""A lazy synthetic population: millions of clients, data made only for the ones asked for.

``data.source = "synthetic_lazy"`` is the grammar of :mod:`fl_sim.data.synthetic` without
the tokenize-once cache: that cache holds every client's rows (20 M rows for a million
clients), which is exactly what a population-scale run must not build. Here

* client ids are a :class:`ClientIds` range (``c0000000`` ...) derived from an integer
  index, so the server's sampling and the strategy hold two integers, not a million
  strings;
* a client's sequences are generated, split and encoded when ``client_train`` is called
  (only for sampled clients), from generators keyed by (seed, client id), so every
  process gets identical data without shipping any;
* the vocabulary comes from a fixed sample of ``VOCAB_SAMPLE_CLIENTS`` training clients,
  and the held-out clients (at most ``eval_clients``) are generated once.

Ids and per-client sentences are the same as the in-memory ``synthetic`` source with the
same ``synthetic_clients`` (same width, same ``client_sentences``); only the choice of
held-out clients differs: the last ``eval_clients`` indices instead of a random draw (the
clients are i.i.d. draws, so a fixed block is as random as any), which keeps the training
clients one contiguous range.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from fl_sim.config import DataConfig
from fl_sim.data.base import DataError
from fl_sim.data.baselines import most_frequent_baseline
from fl_sim.data.splits import eval_subsample, kept_sequences
from fl_sim.data.synthetic import GRAMMAR_VERSION, client_sentences
from fl_sim.data.tokenizer import build_sequences
from fl_sim.data.vocab import Vocab, build_vocab
from fl_sim.seeding import rng

# Enough sentences to see every word of the grammar (about 40) many times over, while
# staying a constant cost whatever the population size.
VOCAB_SAMPLE_CLIENTS = 256


class ClientIds(Sequence):
    """The ids ``c{i:0{width}d}`` for ``i`` in ``range(start, stop)``, as a sequence.

    Holds three integers; ``len``, indexing, slicing, ``in`` and ``index`` are O(1), so
    code written for a list of ids (sampling, strategies, ``len(population)``) works
    unchanged without materializing the population.
    """

    __slots__ = ("_range", "width")

    def __init__(self, start: int, stop: int, width: int) -> None:
        self._range = range(start, stop)
        self.width = width

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, i):
        if isinstance(i, slice):
            r = self._range[i]
            if r.step != 1:
                return [self._name(j) for j in r]
            return ClientIds(r.start, r.stop, self.width)
        return self._name(self._range[int(i)])

    def __iter__(self) -> Iterator[str]:
        return (self._name(j) for j in self._range)

    def __contains__(self, cid: object) -> bool:
        return self.position(cid) is not None

    def index(self, cid: Any, *args) -> int:  # noqa: D102 - Sequence.index, O(1) here
        pos = self.position(cid)
        if pos is None:
            raise ValueError(f"{cid!r} is not in {self!r}")
        return pos

    def count(self, cid: Any) -> int:
        return int(cid in self)

    def number(self, cid: object) -> int | None:
        """The integer index encoded in ``cid`` if it is one of these ids, else None."""
        if not (isinstance(cid, str) and len(cid) == self.width + 1 and cid[0] == "c"
                and cid[1:].isdigit() and cid[1:].isascii()):
            return None
        j = int(cid[1:])
        return j if j in self._range else None

    def position(self, cid: object) -> int | None:
        j = self.number(cid)
        return None if j is None else j - self._range.start

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ClientIds):
            return self._range == other._range and (self.width == other.width or not self._range)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # like list: equal to lists, so not hashable

    def __repr__(self) -> str:
        return f"ClientIds(c{self._range.start:0{self.width}d}..c{self._range.stop - 1:0{self.width}d}, n={len(self)})"

    def __reduce__(self):
        return ClientIds, (self._range.start, self._range.stop, self.width)

    def _name(self, j: int) -> str:
        return f"c{j:0{self.width}d}"


class LazySyntheticCorpus:
    """The :class:`~fl_sim.data.FederatedCorpus` interface over a generated population.

    Attributes
    ----------
    vocab : Vocab
    seq_len : int
    seed : int
    train_client_ids, eval_client_ids : ClientIds
        Disjoint contiguous ranges (train first), each sorted.
    cache_path : None
        Nothing is cached on disk.
    cache_hit : bool
        Always False (nothing to hit).
    """

    cache_path = None
    cache_hit = False

    def __init__(self, cfg: DataConfig, seed: int) -> None:
        n = cfg.synthetic_clients
        self.cfg, self.seed, self.seq_len = cfg, seed, cfg.seq_len
        self.sentences = cfg.synthetic_sentences
        width = max(3, len(str(n - 1)))  # as SyntheticSource, so ids match it
        if self.sentences < cfg.min_client_sequences:
            raise DataError(f"data.source = 'synthetic_lazy': every client has {self.sentences} "
                            f"sentences (data.synthetic_sentences), fewer than "
                            f"data.min_client_sequences = {cfg.min_client_sequences}")
        n_eval = min(cfg.eval_clients, n // 2)
        n_train = n - n_eval
        if cfg.max_clients:
            n_train = min(n_train, cfg.max_clients)
        self.train_client_ids = ClientIds(0, n_train, width)
        self.eval_client_ids = ClientIds(n - n_eval, n, width)
        self.vocab = self._sample_vocab()
        self._eval_block: np.ndarray | None = None

    # -- per-client data, generated on demand -------------------------------------------
    def _split(self, cid: str) -> tuple[list[list[str]], np.ndarray]:
        units = client_sentences(self.seed, cid, self.sentences)
        kept = kept_sequences(cid, len(units), seed=self.seed,
                              max_sequences=self.cfg.max_sequences_per_client)
        return units, kept

    def _rows(self, units: list[list[str]], idx: np.ndarray) -> np.ndarray:
        enc = self.vocab.encode
        return build_sequences([enc(units[i][:self.seq_len]) for i in idx.tolist()], self.seq_len)

    def _check(self, cid: str, ids: ClientIds, kind: str) -> None:
        if cid not in ids:
            raise KeyError(f"{cid!r} is not {kind} client of this population")

    def client_train(self, cid: str) -> np.ndarray:
        """Training sequences of train client ``cid`` (``int32 [n, seq_len + 1]``)."""
        self._check(cid, self.train_client_ids, "a training")
        return self._rows(*self._split(cid))

    def client_eval(self, cid: str) -> np.ndarray:
        """All sequences of eval client ``cid``."""
        self._check(cid, self.eval_client_ids, "an eval")
        return self._rows(*self._split(cid))

    def num_train_sequences(self, cid: str) -> int:
        """Number of training sequences of ``cid``, from the split arithmetic (no data made)."""
        self._check(cid, self.train_client_ids, "a training")
        if self.cfg.max_sequences_per_client:
            return min(self.sentences, self.cfg.max_sequences_per_client)
        return self.sentences

    def train_sequence_counts(self) -> "SameCount":
        """``num_train_sequences`` as a lookup that holds only the count (no data)."""
        return SameCount(self.train_client_ids, self.num_train_sequences(self.train_client_ids[0]))

    # -- server-side pieces: vocabulary and centralized evaluation ------------------------
    def _sample_vocab(self) -> Vocab:
        # data.vocab_source = "public": the held-out clients' counts, not the training clients'.
        public = self.cfg.vocab_source == "public"
        ids = self.eval_client_ids if public else self.train_client_ids
        n = len(ids)
        k = min(VOCAB_SAMPLE_CLIENTS, n)
        picked = np.sort(rng(self.seed, "vocab-sample").choice(n, size=k, replace=False))
        counts: Counter = Counter()
        for i in picked.tolist():
            cid = ids[i]
            units, kept = self._split(cid)
            for j in kept.tolist():
                counts.update(units[j][:self.seq_len])
        return build_vocab(counts, self.cfg.vocab_size)

    def eval_sequences(self, max_sequences: int = 0) -> np.ndarray:
        """All eval clients' sequences stacked in client order (see FederatedCorpus)."""
        if self._eval_block is None:
            blocks = [self.client_eval(cid) for cid in self.eval_client_ids]
            self._eval_block = (np.concatenate(blocks) if blocks
                                else np.zeros((0, self.seq_len + 1), np.int32))
        block = self._eval_block
        pick = eval_subsample(self.seed, block.shape[0], max_sequences)
        return block.copy() if pick is None else block[pick]

    def most_frequent_baseline(self, max_sequences: int = 0) -> dict:
        """See :func:`fl_sim.data.baselines.most_frequent_baseline` (on the eval sequences)."""
        return most_frequent_baseline(self.eval_sequences(max_sequences), self.vocab)

    def describe(self) -> dict:
        """Summary for logs and the run manifest (no per-client statistics: nothing is built)."""
        return {"source": "synthetic_lazy", "path": "", "seed": self.seed,
                "grammar": GRAMMAR_VERSION, "population": self.cfg.synthetic_clients,
                "num_train_clients": len(self.train_client_ids),
                "num_eval_clients": len(self.eval_client_ids),
                "eval_clients_requested": self.cfg.eval_clients, "dropped_clients": 0,
                "vocab_sample_clients": min(VOCAB_SAMPLE_CLIENTS, len(self.train_client_ids)),
                "vocab_size": self.vocab.size, "seq_len": self.seq_len,
                "cache_path": None, "cache_hit": False}

    def __repr__(self) -> str:
        return (f"LazySyntheticCorpus(train_clients={len(self.train_client_ids)}, "
                f"eval_clients={len(self.eval_client_ids)}, vocab={self.vocab.size}, "
                f"seq_len={self.seq_len})")

    # Pickling ships the config; the other side re-derives the same population (the
    # vocabulary sample is a few hundred clients, well under a second).
    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "seed": self.seed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"], state["seed"])


class SameCount:
    """Every client of ``ids`` has ``count`` training sequences (the lazy population's case)."""

    def __init__(self, ids: ClientIds, count: int) -> None:
        self.ids, self.count = ids, count

    def __call__(self, cid: str) -> int:
        if cid not in self.ids:
            raise KeyError(f"{cid!r} is not a training client of this population")
        return self.count


def load_population(cfg: DataConfig, seed: int) -> LazySyntheticCorpus:
    return LazySyntheticCorpus(cfg, seed)
