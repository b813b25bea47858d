"""Baselines computed on an evaluation set: what a model must beat to have learned anything.

Pure functions of the evaluation sequences and the vocabulary, shared by the cached
corpus and the lazy synthetic population.
"""

from __future__ import annotations

import numpy as np

from fl_sim.data.vocab import BOS_ID, EOS_ID, NUM_SPECIAL, OOV_ID, PAD_ID, Vocab


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
