"""Seeded random generators derived from (seed, purpose, ...), never from a global RNG.

Following pfl-research, every random draw in a run (client sampling, data order, DP
noise) uses its own generator keyed by what it is for, so adding a draw in one place never
shifts the numbers drawn in another, and a resumed run draws exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(part: object) -> int:
    if isinstance(part, (int, np.integer)) and not isinstance(part, bool):
        if part < 0:
            raise ValueError(f"seed parts must be >= 0, got {part}")
        return int(part)
    # Python's hash() is salted per process; crc32 is stable everywhere.
    return zlib.crc32(str(part).encode("utf-8"))


def seed_sequence(seed: int, *purpose: object) -> np.random.SeedSequence:
    return np.random.SeedSequence([_key(seed), *(_key(p) for p in purpose)])


def rng(seed: int, *purpose: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the ``purpose`` parts."""
    return np.random.default_rng(seed_sequence(seed, *purpose))
