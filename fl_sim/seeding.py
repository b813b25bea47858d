"""Seeded random generators derived from (seed, purpose, ...), never from a global RNG.

Following pfl-research, every random draw in a run (client sampling, data splits and
order, initial weights, DP noise) uses its own generator keyed by what it is for, so
adding a draw in one place never shifts the numbers drawn in another, and a resumed run
draws exactly what an uninterrupted one would. This is the one place seeds are derived.

The key is a 128-bit BLAKE2b digest of the canonical JSON of ``[seed, *purpose]``:

- one unambiguous encoding: ``("a", 1)`` and ``("a", "1")`` and ``("a1",)`` differ, and so
  do paths of different lengths (``SeedSequence`` on raw integer lists pads with zeros,
  so ``[s, k]`` and ``[s, k, 0]`` would give the same stream);
- 128 bits: a million client ids never collide (a 32-bit hash such as crc32 has even odds
  of a collision among ~77,000 ids);
- stable across processes and machines (Python's ``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def _part(part: object) -> int | str:
    if isinstance(part, (bool, np.bool_)):
        raise TypeError(f"seed parts are non-negative ints or strings, got the bool {part!r}")
    if isinstance(part, (int, np.integer)):
        if part < 0:
            raise ValueError(f"seed parts must be >= 0, got {part}")
        return int(part)
    if isinstance(part, str):
        return part
    raise TypeError(f"seed parts are non-negative ints or strings, got {type(part).__name__} {part!r}")


def key(seed: int, *purpose: object) -> int:
    """The 128-bit integer that ``(seed, *purpose)`` derives (see the module docstring)."""
    text = json.dumps([_part(seed), *(_part(p) for p in purpose)], ensure_ascii=False,
                      separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), "little")


def seed_sequence(seed: int, *purpose: object) -> np.random.SeedSequence:
    return np.random.SeedSequence(key(seed, *purpose))


def rng(seed: int, *purpose: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the ``purpose`` parts."""
    return np.random.default_rng(seed_sequence(seed, *purpose))


def int_seed(seed: int, *purpose: object) -> int:
    """A 31-bit integer seed, for APIs that take an int (Keras initializers)."""
    return int(seed_sequence(seed, *purpose).generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)
