"""A small synthetic federated corpus for fast tests and smoke runs.

Sentences come from a tiny grammar with structure a language model can learn within a
few rounds, well beyond the unigram baseline::

    SUBJECT VERB DET [ADJ] NOUN [with DET [ADJ] NOUN] .

* verbs agree with the subject (``he likes`` / ``they like``);
* ``a`` becomes ``an`` before a vowel (``an old cat``, ``a big apple``);
* every client has its own preferences over subjects, verbs and nouns (drawn from a
  Dirichlet), so the data are non-IID like real users.

Clients are ``c000``, ``c001``, ...; each has ``synthetic_sentences`` sentences. All draws
come from generators derived from (seed, "synthetic", client id).
"""

from __future__ import annotations

import numpy as np

from fl_sim.data.base import InMemorySource
from fl_sim.seeding import rng as seeded_rng

GRAMMAR_VERSION = 1
_SUBJ_SG = ("he", "she", "it")
_SUBJ_PL = ("i", "you", "we", "they")
_VERBS = ("like", "see", "want", "find", "make", "take")
_DETS = ("the", "a", "my", "your", "this")
_ADJS = ("big", "small", "red", "old", "new", "happy", "quiet")
_NOUNS = ("cat", "dog", "house", "car", "book", "tree", "river", "bird",
          "apple", "egg", "owl", "island")


def _noun_phrase(rng: np.random.Generator, noun_p: np.ndarray) -> list[str]:
    det = _DETS[rng.integers(len(_DETS))]
    words = []
    if rng.random() < 0.5:
        words.append(_ADJS[rng.integers(len(_ADJS))])
    words.append(_NOUNS[rng.choice(len(_NOUNS), p=noun_p)])
    if det == "a" and words[0][0] in "aeiou":
        det = "an"
    return [det, *words]


def client_sentences(seed: int, client_id: str, n: int) -> list[list[str]]:
    """``n`` sentences (token lists) of one synthetic client."""
    rng = seeded_rng(seed, "synthetic", client_id)
    subjects = _SUBJ_SG + _SUBJ_PL
    subj_p = rng.dirichlet(np.full(len(subjects), 0.5))
    verb_p = rng.dirichlet(np.full(len(_VERBS), 0.5))
    noun_p = rng.dirichlet(np.full(len(_NOUNS), 0.3))
    out = []
    for _ in range(n):
        subj = subjects[rng.choice(len(subjects), p=subj_p)]
        verb = _VERBS[rng.choice(len(_VERBS), p=verb_p)]
        if subj in _SUBJ_SG:
            verb += "s"
        words = [subj, verb, *_noun_phrase(rng, noun_p)]
        if rng.random() < 0.3:
            words += ["with", *_noun_phrase(rng, noun_p)]
        out.append(words + ["."])
    return out


class SyntheticSource(InMemorySource):
    """``num_clients`` clients x ``num_sentences`` grammar sentences (see module docstring)."""

    name = "synthetic"

    def __init__(self, num_clients: int, num_sentences: int, seed: int) -> None:
        super().__init__()
        self.num_clients, self.num_sentences, self.seed = num_clients, num_sentences, seed

    def fingerprint(self) -> dict:
        return {"grammar": GRAMMAR_VERSION, "clients": self.num_clients,
                "sentences": self.num_sentences}

    def _parse(self) -> dict[str, list[list[str]]]:
        width = max(3, len(str(self.num_clients - 1)))
        return {f"c{i:0{width}d}": client_sentences(self.seed, f"c{i:0{width}d}", self.num_sentences)
                for i in range(self.num_clients)}
