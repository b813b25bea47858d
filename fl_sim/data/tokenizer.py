"""Word tokenization, sentence units and fixed-length sequences.

Tokenization follows the preprocessing of TFF's Stack Overflow data, so every source
yields the same kind of tokens:

* text is lower-cased (``str.lower``) and curly apostrophes become ``'``;
* a word is a run of letters/digits, optionally joined by inner apostrophes or hyphens:
  ``don't``, ``o'er``, ``step-dame``, ``2nd``; leading and trailing apostrophes are
  dropped because the plays also use ``'`` as a quotation mark (``'tis`` -> ``tis``,
  ``th'`` -> ``th``);
* the sentence punctuation ``. , ; : ! ?`` becomes tokens of its own (as in the Stack
  Overflow data, where punctuation is split off);
* everything else (quotes, dashes, brackets, markup) is dropped.

A sentence unit becomes ``[BOS] + ids + [EOS]`` truncated to ``seq_len + 1`` tokens and
right-padded with PAD: exactly TFF's ``build_to_ids_fn`` + ``padded_batch`` (words are
cut to ``seq_len`` and EOS is only added when it fits).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

from fl_sim.data.vocab import BOS_ID, EOS_ID, PAD_ID

# [^\W_] is "letter or digit" in any script; inner ' or - keep contractions and compounds.
_TOKEN_RE = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[.,;:!?]")
_SENTENCE_END = frozenset((".", "!", "?"))
_END_RE = re.compile(r"[.!?]")
_AFTER_END_RE = re.compile(r"(?<=[.!?])")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of ``text`` (see module docstring)."""
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


def split_sentences(tokens: Sequence[str]) -> list[list[str]]:
    """Cut a token list after each sentence-final ``.``, ``!`` or ``?`` token.

    The punctuation stays with its sentence (it is a prediction target, as in the Stack
    Overflow data); empty pieces are dropped. Abbreviations such as ``mr.`` also end a
    sentence: a deliberate, deterministic simplification.
    """
    units: list[list[str]] = []
    cur: list[str] = []
    for tok in tokens:
        cur.append(tok)
        if tok in _SENTENCE_END:
            units.append(cur)
            cur = []
    if cur:
        units.append(cur)
    return units


def text_units(text: str) -> list[list[str]]:
    """Sentence units of free text: one per line, each line cut at sentence ends.

    Used by the ``jsonl`` and ``folder`` sources; equal to :func:`split_sentences` of
    each line's tokens, but splits the text instead (``.``, ``!``, ``?`` are always
    single-character tokens), which is several times faster. Lines without any token
    give no unit.
    """
    units: list[list[str]] = []
    findall = _TOKEN_RE.findall
    for line in text.lower().replace("\u2019", "'").splitlines():
        pieces = _AFTER_END_RE.split(line) if _END_RE.search(line) else (line,)
        for piece in pieces:
            toks = findall(piece)
            if toks:
                units.append(toks)
    return units


def build_sequences(units: Sequence[Sequence[int]], seq_len: int) -> np.ndarray:
    """Pack id lists into ``int32 [len(units), seq_len + 1]`` rows.

    Each row is ``[BOS] + ids + [EOS]`` cut to ``seq_len + 1`` tokens, then padded with
    ``PAD_ID``; model input is ``row[:-1]`` and target ``row[1:]``.

    Parameters
    ----------
    units : sequence of sequence of int
        Token ids without BOS/EOS; empty units are allowed (they give ``[BOS, EOS]``),
        but the sources never produce them.
    seq_len : int
        Number of input positions per sequence.
    """
    width = seq_len + 1
    n = len(units)
    out = np.full((n, width), PAD_ID, dtype=np.int32)
    if n == 0:
        return out
    # Vectorised scatter: one Python pass to flatten, then numpy does the placement.
    lens = np.fromiter((min(len(u), seq_len) for u in units), dtype=np.int64, count=n)
    flat = np.fromiter(itertools.chain.from_iterable(u[:seq_len] for u in units),
                       dtype=np.int32, count=int(lens.sum()))
    rows = np.repeat(np.arange(n), lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens) + 1
    out[:, 0] = BOS_ID
    out[rows, cols] = flat
    short = np.flatnonzero(lens < seq_len)
    out[short, lens[short] + 1] = EOS_ID
    return out
