"""The one seed derivation (fl_sim/seeding.py): stable, unambiguous, wide enough."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fl_sim.seeding import int_seed, key, rng

ROOT = Path(__file__).resolve().parents[2]


def test_key_is_blake2b_128_of_the_canonical_json_path():
    # Reference: the scheme as the module docstring states it, computed here from hashlib.
    text = json.dumps([7, "client-split", "hamlet:HAMLET", 3], separators=(",", ":"))
    ref = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16).digest(), "little")
    assert key(7, "client-split", "hamlet:HAMLET", 3) == ref
    assert key(np.int64(7), "client-split", "hamlet:HAMLET", np.uint32(3)) == ref
    ref_gen = np.random.default_rng(np.random.SeedSequence(ref))
    np.testing.assert_array_equal(rng(7, "client-split", "hamlet:HAMLET", 3).random(5), ref_gen.random(5))


def test_the_same_in_every_process_whatever_the_hash_salt():
    code = "from fl_sim.seeding import rng; print(rng(0, 'cohort', 'hamlet:HAMLET', 5).integers(2**62))"
    outs = [subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": salt},
                           check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
            for salt in ("1", "2")]
    assert outs[0] == outs[1] == str(rng(0, "cohort", "hamlet:HAMLET", 5).integers(2**62))


def test_paths_that_differ_give_different_streams():
    paths = [("a", 1), ("a", "1"), ("a1",), ("a",), ("a", 0), ("a", 1, 0), (1, "a")]
    draws = {tuple(rng(0, *p).integers(2**62, size=2)) for p in paths}
    assert len(draws) == len(paths)
    assert rng(0, "x").random() != rng(1, "x").random()
    # Why not SeedSequence on the raw integers: it pads short entropy with zeros, so a
    # trailing 0 part would name the same stream.
    same = [np.random.SeedSequence([5, 9]).generate_state(2), np.random.SeedSequence([5, 9, 0]).generate_state(2)]
    np.testing.assert_array_equal(*same)


def test_int_seed_is_31_bits_and_parts_are_checked():
    seeds = [int_seed(0, "kernel", i) for i in range(200)]
    assert all(0 <= s < 2**31 for s in seeds) and len(set(seeds)) == 200
    assert int_seed(3, "embedding") == int_seed(3, "embedding")
    with pytest.raises(ValueError, match=">= 0"):
        rng(-1, "x")
    for bad in (True, 1.5, None, b"x"):
        with pytest.raises(TypeError, match="non-negative ints or strings"):
            rng(0, bad)
