"""Which prediction targets are words: the tokens a keyboard's suggestion strip is judged on.

A word target is an in-vocabulary token with at least one letter or digit: PAD, OOV, BOS
and EOS are not words, and neither is a punctuation-only token (``,`` ``.`` ``?`` ...,
about a fifth of the in-vocabulary targets of the plays, with ``,`` the most frequent
token of all). Next-word accuracy over word targets is the headline metric
(:mod:`fl_sim.evaluation`); candidates for the top-k exclude the special tokens, as a
keyboard's would, but keep punctuation (a model that suggests ``,`` for a word loses it).
"""

from __future__ import annotations

import numpy as np

from fl_sim.data.vocab import NUM_SPECIAL, Vocab


def is_word(token: str) -> bool:
    """True for a token with a letter or digit (``don't``, ``2nd``), False for ``,`` or ``?``."""
    return any(ch.isalnum() for ch in token)


def word_mask(vocab: Vocab) -> np.ndarray:
    """Boolean ``[vocab.size]``: True at the ids whose token is a word target."""
    mask = np.array([is_word(w) for w in vocab.words], dtype=bool)
    mask[:NUM_SPECIAL] = False  # "<pad>" etc. contain letters but are never words
    return mask


def candidate_mask(vocab_size: int) -> np.ndarray:
    """Boolean ``[vocab_size]``: the ids a top-k suggestion may name (all but the specials)."""
    mask = np.ones(vocab_size, dtype=bool)
    mask[:NUM_SPECIAL] = False
    return mask
