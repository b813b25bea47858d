"""What the server may know of the data: the vocabulary, the held-out clients, the client ids.

The ServerApp samples training clients by id, evaluates on the held-out clients and, in
simulation, gives every node an equal share of the round's SGD steps from each training
client's sequence count. It never needs a training client's text, so it holds a
:class:`ServerCorpus`: copies of exactly those pieces, taken from a corpus that is then
dropped, with no handle (memory map, generator, cache path) through which training
clients' tokens could be read.

>>> server = load_server_corpus(cfg.data, cfg.experiment.seed)        # doctest: +SKIP
>>> server.eval_sequences(2000), server.train_client_ids              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fl_sim.config import DataConfig
from fl_sim.data.baselines import most_frequent_baseline
from fl_sim.data.splits import eval_subsample
from fl_sim.data.vocab import Vocab


class ServerCorpus:
    """The server-side view of a federated corpus (same method names as the corpus).

    Attributes
    ----------
    vocab : Vocab
    seq_len, seed : int
    train_client_ids, eval_client_ids : sequence of str
        Ids only (a lazy population's stay lazy ranges).
    """

    def __init__(self, *, vocab: Vocab, seq_len: int, seed: int, train_client_ids: Sequence[str],
                 eval_client_ids: Sequence[str], eval_rows: np.ndarray, eval_counts: Sequence[int],
                 train_counts: Callable[[str], int], description: dict) -> None:
        if len(eval_counts) != len(eval_client_ids) or sum(eval_counts) != len(eval_rows):
            raise ValueError(f"{len(eval_rows)} eval rows do not split into {list(eval_counts)} "
                             f"for {len(eval_client_ids)} eval clients")
        self.vocab, self.seq_len, self.seed = vocab, int(seq_len), int(seed)
        self.train_client_ids, self.eval_client_ids = train_client_ids, eval_client_ids
        self._eval = np.array(eval_rows, dtype=np.int32)   # a private copy: no memory map
        self._eval.setflags(write=False)
        self._owner = np.repeat(np.arange(len(eval_counts)), np.asarray(eval_counts, dtype=np.int64))
        self._starts = dict(zip(eval_client_ids, np.cumsum([0, *eval_counts])[:-1].tolist()))
        self._counts = dict(zip(eval_client_ids, [int(c) for c in eval_counts]))
        self._train_counts = train_counts
        # The summary without the cache's location: the server has no business reading it.
        self._description = {k: v for k, v in description.items() if k != "cache_path"}

    @classmethod
    def from_corpus(cls, corpus) -> ServerCorpus:
        """Copy the server's pieces out of a FederatedCorpus or LazySyntheticCorpus."""
        return cls(vocab=corpus.vocab, seq_len=corpus.seq_len, seed=corpus.seed,
                   train_client_ids=corpus.train_client_ids, eval_client_ids=corpus.eval_client_ids,
                   eval_rows=corpus.eval_sequences(),
                   eval_counts=[len(corpus.client_eval(cid)) for cid in corpus.eval_client_ids],
                   train_counts=corpus.train_sequence_counts(), description=corpus.describe())

    def eval_sequences(self, max_sequences: int = 0) -> np.ndarray:
        """The held-out clients' sequences stacked in client order, as the corpus gives them
        (the same (seed, "eval-subsample") rows when capped)."""
        pick = eval_subsample(self.seed, len(self._eval), max_sequences)
        return self._eval.copy() if pick is None else self._eval[pick]

    def eval_row_clients(self, max_sequences: int = 0) -> np.ndarray:
        """Row i of ``eval_sequences(max_sequences)`` belongs to ``eval_client_ids[out[i]]``."""
        pick = eval_subsample(self.seed, len(self._owner), max_sequences)
        return self._owner.copy() if pick is None else self._owner[pick]

    def client_eval(self, cid: str) -> np.ndarray:
        """All sequences of held-out client ``cid``."""
        if cid not in self._starts:
            raise KeyError(f"{cid!r} is not an eval client of this corpus")
        s = self._starts[cid]
        return self._eval[s:s + self._counts[cid]].copy()

    def num_train_sequences(self, cid: str) -> int:
        """Sequences of training client ``cid`` (a count the corpus index holds; no data)."""
        return self._train_counts(cid)

    def most_frequent_baseline(self, max_sequences: int = 0) -> dict:
        """See :func:`fl_sim.data.baselines.most_frequent_baseline` (on the eval sequences)."""
        return most_frequent_baseline(self.eval_sequences(max_sequences), self.vocab)

    def describe(self) -> dict:
        """The corpus's summary (sizes, vocabulary, cache), as it was when the view was made."""
        return dict(self._description)

    def __repr__(self) -> str:
        return (f"ServerCorpus(train_clients={len(self.train_client_ids)}, "
                f"eval_clients={len(self.eval_client_ids)}, eval_rows={len(self._eval)}, "
                f"vocab={self.vocab.size}, seq_len={self.seq_len})")


def load_server_corpus(cfg: DataConfig, seed: int) -> ServerCorpus:
    """The server's view of ``load_corpus(cfg, seed)``; the full corpus is not kept."""
    from fl_sim.data.corpus import load_corpus

    return ServerCorpus.from_corpus(load_corpus(cfg, seed))
