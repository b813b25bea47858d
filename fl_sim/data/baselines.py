"""Baselines computed on an evaluation set: what a model must beat to have learned anything.

Pure functions of the evaluation sequences and the vocabulary, shared by the cached
corpus and the lazy synthetic population. The target classes are those of
:mod:`fl_sim.evaluation`: every non-PAD target; in-vocabulary targets (also without OOV,
EOS and BOS); word targets (in-vocabulary and not punctuation-only,
:mod:`fl_sim.data.targets`).
"""

from __future__ import annotations

import numpy as np

from fl_sim.data.targets import word_mask
from fl_sim.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, OOV_ID, PAD_ID, Vocab

TOP_K = 3


def most_frequent_baseline(eval_sequences: np.ndarray, vocab: Vocab) -> dict:
    """Accuracy of always predicting the most frequent training word on ``eval_sequences``.

    That word is vocabulary id 4 (the vocabulary is ordered by training frequency).
    ``accuracy`` counts every non-pad target; ``accuracy_no_oov_eos`` also leaves out
    OOV and EOS targets (the Stack Overflow benchmark convention).

    Returns
    -------
    dict
        ``accuracy``, ``accuracy_no_oov_eos``, ``word``, ``word_id``, ``targets``.
    """
    tgt = np.asarray(eval_sequences)[:, 1:]
    word_id = NUM_SPECIAL if vocab.size > NUM_SPECIAL else None
    valid = tgt != PAD_ID
    strict = valid & (tgt != OOV_ID) & (tgt != EOS_ID) & (tgt != BOS_ID)
    hit = tgt == word_id if word_id is not None else np.zeros_like(valid)
    return {
        "accuracy": float((hit & valid).sum() / max(int(valid.sum()), 1)),
        "accuracy_no_oov_eos": float((hit & strict).sum() / max(int(strict.sum()), 1)),
        "word": vocab.words[word_id] if word_id is not None else None,
        "word_id": word_id,
        "targets": int(valid.sum()),
    }


def _top(counts: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` allowed ids with the largest counts, ties to the lower id."""
    c = np.where(allowed, counts, -1)
    order = np.argsort(-c, kind="stable")
    return order[:k][c[order[:k]] >= 0]


def eval_baselines(eval_sequences: np.ndarray, vocab: Vocab) -> dict:
    """Constant and unigram predictions scored like a model on ``eval_sequences``.

    - ``constant_all``: the one token (any id) that is the most frequent non-PAD target
      of this evaluation set, scored over every non-PAD target (``accuracy``). It is
      chosen on the evaluation set itself: the best any constant prediction can do.
    - ``constant_in_vocab``: the best constant over in-vocabulary targets
      (``accuracy_no_oov_eos``; candidates are non-special ids).
    - ``constant_word``: the ``k`` most frequent word targets of the evaluation set as a
      fixed suggestion list (``word_top1``, ``word_top3``; ``k`` = :data:`TOP_K`).
    - ``unigram``: the ``k`` most frequent training tokens (vocabulary ids 4, 5, ...: the
      vocabulary is ordered by training-client frequency) as the suggestion list, scored on
      in-vocabulary targets and word targets. Its candidates are the model's (no specials,
      punctuation allowed), so with ``,`` and ``.`` ranked first its word top-1 is 0.

    Returns
    -------
    dict
        ``{name: {metric: value, "tokens": [suggested tokens]}}`` plus ``targets``,
        ``in_vocab_targets`` and ``word_targets`` (counts).
    """
    tgt = np.asarray(eval_sequences)[:, 1:]
    v, k = vocab.size, TOP_K
    valid = tgt != PAD_ID
    in_vocab = valid & (tgt >= NUM_SPECIAL)
    words = word_mask(vocab)[tgt] & valid
    n_all, n_iv, n_w = int(valid.sum()), int(in_vocab.sum()), int(words.sum())
    candidates = np.arange(v) >= NUM_SPECIAL

    def share(ids: np.ndarray, where: np.ndarray, n: int) -> float:
        return float((np.isin(tgt, ids) & where).sum() / max(n, 1))

    c_all = np.bincount(tgt[valid], minlength=v)
    c_iv = np.bincount(tgt[in_vocab], minlength=v)
    c_w = np.bincount(tgt[words], minlength=v)
    best_all = _top(c_all, np.ones(v, dtype=bool), 1)
    best_iv = _top(c_iv, candidates, 1)
    best_w = _top(c_w, candidates, k)
    unigram = np.arange(NUM_SPECIAL, min(v, NUM_SPECIAL + k))

    def tokens(ids):
        return [vocab.words[int(i)] for i in ids]

    return {
        "targets": n_all, "in_vocab_targets": n_iv, "word_targets": n_w,
        "constant_all": {"accuracy": share(best_all, valid, n_all), "tokens": tokens(best_all)},
        "constant_in_vocab": {"accuracy_no_oov_eos": share(best_iv, in_vocab, n_iv),
                              "tokens": tokens(best_iv)},
        "constant_word": {"word_top1": share(best_w[:1], words, n_w),
                          "word_top3": share(best_w[:k], words, n_w), "tokens": tokens(best_w)},
        "unigram": {"accuracy_no_oov_eos": share(unigram[:1], in_vocab, n_iv),
                    "word_top1": share(unigram[:1], words, n_w),
                    "word_top3": share(unigram[:k], words, n_w), "tokens": tokens(unigram)},
    }


def flat_baselines(b: dict) -> dict:
    """``eval_baselines`` as flat ``baseline_<name>_<metric>`` keys (for a metrics row).

    ``constant_word`` + ``word_top1`` reads ``baseline_constant_word_top1``.
    """
    out = {}
    for name, vals in b.items():
        if isinstance(vals, dict):
            for key, value in vals.items():
                if name.endswith("_word") and key.startswith("word_"):
                    key = key[len("word_"):]
                out[f"baseline_{name}_{key}"] = value
    return out
