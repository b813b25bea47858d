"""Deterministic client and sequence splits, all drawn from (seed, purpose) generators.

* Eval clients: ``eval_clients`` clients drawn without replacement from the clients with
  at least ``min_client_sequences`` sequences, by a generator from (seed, "eval-split").
  At most half of those clients are held out, so training always keeps at least as many
  clients as evaluation; fewer than two usable clients is an error.
* Train clients: the remaining usable clients; with ``max_clients > 0`` a subset of that
  size drawn by (seed, "max-clients"). Clients below ``min_client_sequences`` are dropped.
* Per client: a permutation from (seed, "client-split", client id) picks the
  ``max_sequences_per_client`` kept sequences (0 = all, like TFF's shuffle-then-take),
  returned in source order. Evaluation is on the held-out clients, so a training client
  keeps all of its kept sequences for training.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fl_sim.data.base import DataError
from fl_sim.seeding import rng


def select_clients(sizes: Mapping[str, int], *, eval_clients: int, min_sequences: int,
                   max_clients: int, seed: int, where: str) -> tuple[list[str], list[str], int]:
    """Choose train and eval clients.

    Parameters
    ----------
    sizes : mapping of str to int
        Sequences per client.
    eval_clients, min_sequences, max_clients : int
        The ``DataConfig`` fields of the same meaning.
    seed : int
        Experiment seed.
    where : str
        Names the data in error messages.

    Returns
    -------
    train_ids, eval_ids : list of str
        Sorted, disjoint.
    dropped : int
        Clients with fewer than ``min_sequences`` sequences.
    """
    eligible = sorted(cid for cid, n in sizes.items() if n >= min_sequences)
    if len(eligible) < 2:
        raise DataError(f"{where}: {len(eligible)} of {len(sizes)} clients have >= {min_sequences} "
                        "sequences (data.min_client_sequences); expected at least 2, one to train "
                        "and one to evaluate")
    n_eval = min(eval_clients, len(eligible) // 2)
    picked = rng(seed, "eval-split").choice(len(eligible), size=n_eval, replace=False)
    eval_set = {eligible[i] for i in picked}
    train = [cid for cid in eligible if cid not in eval_set]
    if max_clients and len(train) > max_clients:
        picked = rng(seed, "max-clients").choice(len(train), size=max_clients, replace=False)
        train = [train[i] for i in np.sort(picked)]
    return train, sorted(eval_set), len(sizes) - len(eligible)


def kept_sequences(client_id: str, n: int, *, seed: int, max_sequences: int) -> np.ndarray:
    """Indices of the client's kept sequences among its ``n`` units, sorted (source order).

    All ``n`` when ``max_sequences`` is 0, else a seeded subset of that size.
    """
    keep = rng(seed, "client-split", client_id).permutation(n)
    if max_sequences:
        keep = keep[:max_sequences]
    return np.sort(keep)


def eval_subsample(seed: int, n: int, max_sequences: int) -> np.ndarray | None:
    """Sorted rows of a capped evaluation set (None: all ``n``), drawn by (seed, "eval-subsample")."""
    if max_sequences and max_sequences < n:
        return np.sort(rng(seed, "eval-subsample").choice(n, size=max_sequences, replace=False))
    return None
