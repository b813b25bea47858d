"""FederatedCorpus: client ids -> token arrays, backed by a tokenize-once disk cache.

Building (cache miss) runs in one pass over the source:

1. choose eval and train clients from the per-client sizes (:mod:`fl_sim.data.splits`);
2. per client, in the order train clients (sorted) then eval clients (sorted): split,
   map words to provisional ids (first-seen order) and append the fixed-length rows to a
   raw scratch file, counting word frequencies per role (train / eval);
3. build the vocabulary from the train role's counts, then copy the scratch rows into
   ``sequences.npy`` through a provisional-id -> vocabulary-id lookup table.

So the input is read once and memory holds one client at a time plus the word table,
which is what lets a 342k-user Stack Overflow file build at all.

Cache layout, one folder per key under ``cfg.cache_dir``::

    <source>-<key>/sequences.npy   int32 [total, seq_len + 1], opened with mmap_mode="r"
    <source>-<key>/index.npz       client_ids, start, count (train clients first, then
                                    eval clients)
    <source>-<key>/meta.json       vocab words, seq_len, stats; written last, so its
                                    presence marks a complete cache

The key hashes the format version, the source's fingerprint (resolved path, sizes,
mtimes), every ``DataConfig`` field that can change the arrays, and the seed. Every
file is written to a temporary name in the same folder and moved into place with
``os.replace``; two processes building the same key write identical bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fl_sim.config import DataConfig
from fl_sim.data.base import DataError, Source
from fl_sim.data.baselines import most_frequent_baseline
from fl_sim.data.splits import eval_subsample, kept_sequences, select_clients
from fl_sim.data.tokenizer import build_sequences
from fl_sim.data.vocab import (BOS_ID, EOS_ID, NUM_SPECIAL, OOV_ID, PAD_ID, SPECIAL_TOKENS,
                               Vocab, build_vocab)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2   # 2: no per-client test split (data.test_fraction is gone)
ROLES = ("train", "eval")
# DataConfig fields that never change the arrays; every other field is in the key, so a
# field added later invalidates the cache by default instead of serving stale data.
_KEY_EXCLUDED = {"cache_dir"}
_SOURCE_ONLY = {"path": ("jsonl", "folder", "stackoverflow_sqlite"),
                "synthetic_clients": ("synthetic",), "synthetic_sentences": ("synthetic",)}


# --------------------------------------------------------------------------- public


def make_source(cfg: DataConfig, seed: int) -> Source:
    """The :class:`~fl_sim.data.base.Source` for ``cfg.source``."""
    if cfg.source == "shakespeare":
        from fl_sim.data.shakespeare import ShakespeareSource
        return ShakespeareSource()
    if cfg.source == "jsonl":
        from fl_sim.data.jsonl import JsonlSource
        return JsonlSource(cfg.path)
    if cfg.source == "folder":
        from fl_sim.data.folder import FolderSource
        return FolderSource(cfg.path)
    if cfg.source == "stackoverflow_sqlite":
        from fl_sim.data.stackoverflow import StackOverflowSource
        return StackOverflowSource(cfg.path)
    if cfg.source == "synthetic":
        from fl_sim.data.synthetic import SyntheticSource
        return SyntheticSource(cfg.synthetic_clients, cfg.synthetic_sentences, seed)
    raise ValueError(f"data.source = {cfg.source!r}: unknown source")


def cache_key(cfg: DataConfig, seed: int, fingerprint: dict) -> str:
    """Hex key of everything that determines the cached arrays."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items()
              if k not in _KEY_EXCLUDED and cfg.source in _SOURCE_ONLY.get(k, (cfg.source,))}
    if fields.get("vocab_source") in ("train", "auto"):
        del fields["vocab_source"]  # the vocabulary before data.vocab_source existed: same key
    material = {"format": FORMAT_VERSION, "fields": fields, "seed": seed, "data": fingerprint}
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def load_corpus(cfg: DataConfig, seed: int) -> "FederatedCorpus":
    """Load the federated corpus described by ``cfg``, tokenizing only on a cache miss.

    Parameters
    ----------
    cfg : DataConfig
        Data section of the experiment config.
    seed : int
        Experiment seed; fixes the eval/train client choice and per-client splits.

    Raises
    ------
    DataError
        The input is missing or malformed (the message names file and line).
    """
    if cfg.source == "synthetic_lazy":  # generated on demand: no cache to build or read
        from fl_sim.data.population import load_population
        return load_population(cfg, seed)
    t0 = time.perf_counter()
    source = make_source(cfg, seed)
    path = Path(cfg.cache_dir).expanduser().resolve() / f"{cfg.source}-{cache_key(cfg, seed, source.fingerprint())}"
    if (path / "meta.json").is_file():
        try:
            corpus = FederatedCorpus(path, cache_hit=True)
            corpus._load_seconds = time.perf_counter() - t0
            log.info("data: cache hit %s (%.2f s)", path, corpus._load_seconds)
            return corpus
        except Exception as exc:  # a truncated or foreign cache is rebuilt, never trusted
            log.warning("data: cache at %s unreadable (%s); rebuilding", path, exc)
    try:
        _build(source, cfg, seed, path)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    corpus = FederatedCorpus(path, cache_hit=False)
    corpus._load_seconds = time.perf_counter() - t0
    log.info("data: built %s in %.2f s", path, corpus._load_seconds)
    return corpus


class FederatedCorpus:
    """Clients' token sequences, the vocabulary and the train/eval client split.

    Arrays are ``int32 [n, seq_len + 1]``: model input is ``a[:, :-1]``, target
    ``a[:, 1:]``. All sequences live in one memory-mapped file; a client's rows are
    read only when asked for. Pickling keeps just the cache path, so the corpus can be
    shipped to simulation workers cheaply.

    Attributes
    ----------
    vocab : Vocab
    seq_len : int
    train_client_ids : list of str
        Clients that train, sorted.
    eval_client_ids : list of str
        Held-out clients for centralized evaluation, sorted, disjoint from training.
    cache_path : pathlib.Path
    cache_hit : bool
        Whether this load found a complete cache (no tokenization ran).
    """

    def __init__(self, path: Path, *, cache_hit: bool) -> None:
        self.cache_path = Path(path)
        self.cache_hit = cache_hit
        self._load_seconds = 0.0
        meta = json.loads((self.cache_path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"cache format {meta.get('format')} != {FORMAT_VERSION}")
        self._meta = meta
        self.vocab = Vocab(meta["words"])
        self.seq_len: int = meta["seq_len"]
        self.seed: int = meta["seed"]
        with np.load(self.cache_path / "index.npz", allow_pickle=False) as idx:
            ids = idx["client_ids"].tolist()
            start, count = idx["start"].tolist(), idx["count"].tolist()
        n_tr = meta["num_train_clients"]
        self.train_client_ids: list[str] = ids[:n_tr]
        self.eval_client_ids: list[str] = ids[n_tr:]
        self._index = {cid: (s, n, i >= n_tr) for i, (cid, s, n) in enumerate(zip(ids, start, count))}
        self._seqs = np.load(self.cache_path / "sequences.npy", mmap_mode="r")
        if self._seqs.shape != (meta["total_sequences"], self.seq_len + 1):
            raise ValueError(f"sequences.npy has shape {self._seqs.shape}, index says "
                             f"({meta['total_sequences']}, {self.seq_len + 1})")
        self._eval_start = start[n_tr] if self.eval_client_ids else self._seqs.shape[0]

    # -- pickling: ship the path, reopen the memory map on the other side
    def __getstate__(self) -> dict:
        return {"path": str(self.cache_path), "cache_hit": self.cache_hit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(Path(state["path"]), cache_hit=state["cache_hit"])

    def __repr__(self) -> str:
        return (f"FederatedCorpus({self._meta['source']}, train_clients={len(self.train_client_ids)}, "
                f"eval_clients={len(self.eval_client_ids)}, vocab={self.vocab.size}, "
                f"seq_len={self.seq_len})")

    def _entry(self, cid: str, *, eval_client: bool) -> tuple[int, int, bool]:
        entry = self._index.get(cid)
        if entry is None or entry[2] != eval_client:
            kind = "an eval" if eval_client else "a training"
            raise KeyError(f"{cid!r} is not {kind} client of this corpus")
        return entry

    def client_train(self, cid: str) -> np.ndarray:
        """Training sequences of train client ``cid`` (``int32 [n, seq_len + 1]``)."""
        s, n, _ = self._entry(cid, eval_client=False)
        return np.array(self._seqs[s:s + n])

    def client_eval(self, cid: str) -> np.ndarray:
        """All sequences of eval client ``cid`` (for per-client evaluation)."""
        s, n, _ = self._entry(cid, eval_client=True)
        return np.array(self._seqs[s:s + n])

    def num_train_sequences(self, cid: str) -> int:
        """Number of training sequences of train client ``cid`` (no data read)."""
        return self._entry(cid, eval_client=False)[1]

    def eval_sequences(self, max_sequences: int = 0) -> np.ndarray:
        """All eval clients' sequences stacked in client order.

        Parameters
        ----------
        max_sequences : int
            If > 0 and smaller than the total, a subset of that size drawn by
            (seed, "eval-subsample") and kept in stacked order, so a capped evaluation
            still covers every eval client rather than only the first few.
        """
        block = self._seqs[self._eval_start:]
        pick = eval_subsample(self.seed, block.shape[0], max_sequences)
        return np.array(block) if pick is None else np.asarray(block[pick])

    def train_sequence_counts(self) -> Callable[[str], int]:
        """``num_train_sequences`` as a lookup that holds only the counts (no data)."""
        return {cid: self._index[cid][1] for cid in self.train_client_ids}.__getitem__

    def most_frequent_baseline(self, max_sequences: int = 0) -> dict:
        """See :func:`fl_sim.data.baselines.most_frequent_baseline` (on the eval sequences)."""
        return most_frequent_baseline(self.eval_sequences(max_sequences), self.vocab)

    def describe(self) -> dict:
        """Summary for logs and the run manifest (sizes, vocabulary, cache)."""
        m = self._meta
        out: dict[str, Any] = {
            "source": m["source"], "path": m["path"], "seed": self.seed,
            "num_train_clients": len(self.train_client_ids),
            "num_eval_clients": len(self.eval_client_ids),
            "eval_clients_requested": m["eval_clients_requested"],
            "dropped_clients": m["dropped_clients"],
        }
        for role in ROLES:
            st = m["stats"][role]
            out[f"{role}_sequences"] = st["sequences"]
            out[f"{role}_tokens"] = st["words"]
            out[f"{role}_oov_rate"] = st["oov"] / st["words"] if st["words"] else 0.0
        out.update({"vocab_size": self.vocab.size, "seq_len": self.seq_len,
                    "cache_path": str(self.cache_path), "cache_hit": self.cache_hit,
                    "build_seconds": m["build_seconds"], "load_seconds": self._load_seconds})
        return out


# --------------------------------------------------------------------------- build


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _write_atomic(path: Path, write) -> None:
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _WordIds(dict):
    """word -> provisional id, assigning ``NUM_SPECIAL + rank`` on first sight.

    ``__missing__`` runs only for new words, so encoding is a plain list comprehension.
    """

    def __missing__(self, word: str) -> int:
        pid = self[word] = NUM_SPECIAL + len(self)
        return pid


class _Counts:
    """Per-role frequency of provisional ids.

    Rows are buffered and counted with one ``bincount`` per few million tokens: per
    client ``np.unique`` calls would dominate the build for many small clients.
    """

    FLUSH = 1 << 22

    def __init__(self) -> None:
        self.c = np.zeros((len(ROLES), NUM_SPECIAL), dtype=np.int64)
        self._buf: list[list[np.ndarray]] = [[] for _ in ROLES]
        self._size = 0

    def add(self, role: int, rows: np.ndarray) -> None:
        if rows.size:
            self._buf[role].append(rows.ravel())
            self._size += rows.size
            if self._size >= self.FLUSH:
                self.flush()

    def flush(self) -> None:
        for role, parts in enumerate(self._buf):
            if parts:
                bc = np.bincount(np.concatenate(parts))
                if len(bc) > self.c.shape[1]:
                    self.c = np.pad(self.c, ((0, 0), (0, len(bc) - self.c.shape[1])))
                self.c[role, :len(bc)] += bc
                parts.clear()
        self._size = 0


def _build(source: Source, cfg: DataConfig, seed: int, path: Path) -> None:
    t0 = time.perf_counter()
    where = f"data.source = {cfg.source!r}" + (f" ({cfg.path})" if cfg.path and cfg.source in _SOURCE_ONLY["path"] else "")
    train_ids, eval_ids, dropped = select_clients(
        source.client_sizes(), eval_clients=cfg.eval_clients, min_sequences=cfg.min_client_sequences,
        max_clients=cfg.max_clients, seed=seed, where=where)
    path.mkdir(parents=True, exist_ok=True)
    width = cfg.seq_len + 1
    word_ids = _WordIds()  # word -> provisional id (NUM_SPECIAL + first-seen rank)
    counts = _Counts()
    starts, counts_per_client = [], []
    total = 0
    seq_len = cfg.seq_len
    raw_path = _tmp(path / "rows.raw")
    try:
        with open(raw_path, "wb") as raw:
            for cid, is_eval in [(c, False) for c in train_ids] + [(c, True) for c in eval_ids]:
                units = source.client_units(cid)
                kept = kept_sequences(cid, len(units), seed=seed, max_sequences=cfg.max_sequences_per_client)
                rows = build_sequences([[word_ids[w] for w in units[i][:seq_len]]
                                        for i in kept.tolist()], seq_len)
                raw.write(rows.tobytes())
                counts.add(ROLES.index("eval" if is_eval else "train"), rows)
                starts.append(total)
                counts_per_client.append(len(rows))
                total += len(rows)
        counts.flush()
        if counts.c.shape[1] < NUM_SPECIAL + len(word_ids):  # defensive: every id is in some row
            counts.c = np.pad(counts.c, ((0, 0), (0, NUM_SPECIAL + len(word_ids) - counts.c.shape[1])))
        if total == 0:
            raise DataError(f"{where}: the selected clients have no sequences")

        words = list(word_ids)
        # data.vocab_source: the training clients' raw counts or the held-out
        # clients', designated public, so a DP run's vocabulary is not private data.
        role = ROLES.index("eval" if cfg.vocab_source == "public" else "train")
        vocab = _vocab_from_counts(words, counts.c[role, NUM_SPECIAL:NUM_SPECIAL + len(words)], cfg.vocab_size)
        remap = np.full(NUM_SPECIAL + len(words), OOV_ID, dtype=np.int32)
        remap[:NUM_SPECIAL] = np.arange(NUM_SPECIAL)
        for vid, w in enumerate(vocab.words[NUM_SPECIAL:], start=NUM_SPECIAL):
            remap[word_ids[w]] = vid

        tmp_npy = _tmp(path / "sequences.npy")
        try:
            src = np.memmap(raw_path, dtype=np.int32, mode="r", shape=(total, width))
            out = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.int32, shape=(total, width))
            step = max(1, (64 << 20) // (4 * width))  # 64 MiB chunks
            for a in range(0, total, step):
                out[a:a + step] = remap[src[a:a + step]]
            out.flush()
            del out, src
            os.replace(tmp_npy, path / "sequences.npy")
        finally:
            tmp_npy.unlink(missing_ok=True)
    finally:
        raw_path.unlink(missing_ok=True)

    _write_atomic(path / "index.npz", lambda f: np.savez(
        f, client_ids=np.array(train_ids + eval_ids, dtype=str),
        start=np.array(starts, dtype=np.int64), count=np.array(counts_per_client, dtype=np.int64)))

    oov_mask = np.zeros(counts.c.shape[1], dtype=bool)
    oov_mask[NUM_SPECIAL:len(remap)] = remap[NUM_SPECIAL:] == OOV_ID
    n_tr = len(train_ids)
    sizes = {"train": sum(counts_per_client[:n_tr]), "eval": sum(counts_per_client[n_tr:])}
    stats = {role: {"sequences": int(sizes[role]), "words": int(counts.c[r, NUM_SPECIAL:].sum()),
                    "oov": int(counts.c[r, oov_mask].sum()), "eos": int(counts.c[r, EOS_ID])}
             for r, role in enumerate(ROLES)}
    meta = {
        "format": FORMAT_VERSION, "source": cfg.source,
        "path": str(getattr(source, "path", getattr(source, "root", ""))),
        "seed": seed, "seq_len": cfg.seq_len, "words": vocab.words[NUM_SPECIAL:],
        "num_train_clients": len(train_ids), "total_sequences": total,
        "eval_clients_requested": cfg.eval_clients, "dropped_clients": dropped,
        "distinct_train_words": int((counts.c[0, NUM_SPECIAL:] > 0).sum()),
        "stats": stats, "config": dataclasses.asdict(cfg), "fingerprint": source.fingerprint(),
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    _write_atomic(path / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode("utf-8")))


def _vocab_from_counts(words: list[str], counts: np.ndarray, vocab_size: int) -> Vocab:
    """:func:`build_vocab` on only the words that can make the cut (fast for huge tables)."""
    counts = counts.copy()
    for tok in SPECIAL_TOKENS:  # a literal "<eos>" in the text is just an unknown word
        if tok in words:
            counts[words.index(tok)] = 0
    nonzero = int((counts > 0).sum())
    if nonzero > vocab_size:
        # Every word tied with the vocab_size-th count stays a candidate, so the
        # alphabetical tie-break below sees all of them.
        threshold = np.partition(counts, len(counts) - vocab_size)[len(counts) - vocab_size]
        cand = np.flatnonzero(counts >= max(threshold, 1))
    else:
        cand = np.flatnonzero(counts > 0)
    return build_vocab({words[i]: int(counts[i]) for i in cand}, vocab_size)
