"""Seeded per-round client sampling that matches what the privacy accountant assumes.

- ``fixed``: exactly ``cohort`` clients drawn uniformly without replacement.
- ``poisson``: each client joins independently with probability q = cohort / population
  (the cohort size varies; it can be empty).

Both draw from a generator keyed by (seed, round) alone, so sampling is stateless: a
resumed run samples exactly what an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_sim.seeding import rng


def sample_clients(client_ids: Sequence[str], cohort: int, seed: int, server_round: int,
                   scheme: str = "fixed", generator: np.random.Generator | None = None) -> list[str]:
    """The round's cohort, drawn from ``rng(seed, "cohort", round)`` unless ``generator``
    is given (DP with secret randomness passes one seeded from OS entropy)."""
    # Only len() and indexing: a lazy population (fl_sim.data.population.ClientIds) is never
    # materialized. Fixed draws cost O(cohort) (NumPy's choice switches to a set-based
    # algorithm for small draws from large populations); Poisson needs one uniform per client.
    n = len(client_ids)
    gen = rng(seed, "cohort", server_round) if generator is None else generator
    if scheme == "fixed":
        idx = gen.choice(n, size=min(cohort, n), replace=False)
    elif scheme == "poisson":
        idx = (gen.random(n) < min(1.0, cohort / n)).nonzero()[0]
    else:
        raise ValueError(f"sampling {scheme!r}: expected 'fixed' or 'poisson'")
    return [client_ids[i] for i in sorted(idx)]
