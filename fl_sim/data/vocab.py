"""Word vocabulary: four special tokens, then training words by frequency.

Ids 0-3 are fixed so that models, metrics and the TFLite export agree without reading
the vocabulary: pad, out-of-vocabulary, beginning and end of sentence. Words follow in
decreasing training frequency, ties broken alphabetically (code-point order), so the
same training data always gives the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

PAD_ID, OOV_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<oov>", "<bos>", "<eos>")
NUM_SPECIAL = len(SPECIAL_TOKENS)


class Vocab:
    """Bidirectional word/id map with the specials at ids 0-3.

    Parameters
    ----------
    words : sequence of str
        Non-special words in id order; word ``words[i]`` gets id ``i + 4``.

    Attributes
    ----------
    words : list of str
        All tokens, index = id (specials first).
    size : int
        ``len(words)``, specials included: the model's output width.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        clash = set(words) & set(SPECIAL_TOKENS)
        if clash:
            raise ValueError(f"vocabulary words clash with special tokens: {sorted(clash)}")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        self.words: list[str] = list(SPECIAL_TOKENS) + words
        self._ids = {w: i for i, w in enumerate(self.words)}

    @property
    def size(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.words == other.words

    def __repr__(self) -> str:
        head = ", ".join(self.words[NUM_SPECIAL:NUM_SPECIAL + 5])
        return f"Vocab(size={self.size}, words=[{head}, ...])"

    def id(self, word: str) -> int:
        """Id of ``word``, or ``OOV_ID`` if it is not in the vocabulary."""
        return self._ids.get(word, OOV_ID)

    def encode(self, words: Iterable[str]) -> list[int]:
        """Ids of ``words`` (unknown words become ``OOV_ID``); no BOS/EOS added."""
        get = self._ids.get
        return [get(w, OOV_ID) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens for ``ids`` (specials as ``<pad>`` etc.)."""
        return [self.words[int(i)] for i in ids]

    def save(self, path: str | Path) -> None:
        """Write one token per line, index = id (the format the Android bundle ships)."""
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        """Read a file written by :meth:`save`."""
        tokens = Path(path).read_text(encoding="utf-8").split("\n")[:-1]
        if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise ValueError(f"{path}: line 1-4: expected the special tokens {SPECIAL_TOKENS}")
        return cls(tokens[NUM_SPECIAL:])


def build_vocab(counts: Mapping[str, int], vocab_size: int) -> Vocab:
    """The ``vocab_size`` most frequent words of ``counts`` (ties alphabetical).

    Parameters
    ----------
    counts : mapping of str to int
        Word frequencies over the training clients' train split. Words with a count of
        zero are ignored, so the vocabulary may be smaller than ``vocab_size``.
    vocab_size : int
        Number of non-special words to keep.
    """
    ranked = sorted((w for w, c in counts.items() if c > 0), key=lambda w: (-counts[w], w))
    return Vocab(ranked[:vocab_size])
