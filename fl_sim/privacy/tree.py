"""Tree aggregation: Gaussian noise on every prefix sum of a stream of clipped sums.

DP-FTRL (Kairouz, McMahan, Song, Thakkar, Thakurta, Xu 2021, "Practical and Private (Deep)
Learning without Sampling or Shuffling") releases, at step ``k`` of a tree, the prefix sum
``s_1 + ... + s_k`` of the rounds' clipped update sums plus noise. The plain binary tree
(Dwork et al. 2010; Chan, Shi & Song 2011) is used here, not Honaker's variance-reduced
estimator: every node ``(level l, index j)`` covers steps ``j 2^l + 1 .. (j + 1) 2^l`` and
gets its own ``N(0, sigma^2)`` per coordinate, and the noise on prefix ``k`` is the sum of
the noises of the dyadic nodes that tile ``[1, k]``, one per set bit of ``k``, so its
variance is ``popcount(k) sigma^2``. A node is only used once its last step is reached,
so a tree of ``R`` steps uses levels ``0 .. floor(log2 R)``: one client's contribution to
one step enters ``ceil(log2(R + 1))`` nodes, which is the depth dp-accounting's
``SingleEpochTreeAggregationDpEvent`` charges (fl_sim/privacy/tree_accountant.py).

Every node's noise comes from its own generator keyed by ``(key, "dp-ftrl-noise", tree,
level, index)``, so the noise on any prefix is recomputed, not stored: the tree state a
checkpoint needs is the tree's key alone (the run seed, or a per-tree secret drawn from
OS entropy, fl_sim/privacy/release.py says which).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_sim.seeding import rng


def prefix_nodes(k: int) -> list[tuple[int, int]]:
    """The ``(level, index)`` nodes whose intervals tile steps ``[1, k]``, largest first."""
    if k < 1 or int(k) != k:
        raise ValueError(f"prefix length must be a positive integer, got {k}")
    out, start = [], 0
    for level in range(int(k).bit_length() - 1, -1, -1):
        if k >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def tree_depth(steps: int) -> int:
    """Nodes one step's contribution enters in a tree of ``steps`` steps: ``ceil(log2(steps+1))``."""
    return int(steps).bit_length()


def prefix_noise(noise_std: float, key: int, tree: int, k: int,
                 template: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The noise on prefix ``k`` of tree ``tree``: the sum of its nodes' draws (float64).

    Parameters
    ----------
    noise_std : float
        ``sigma = z C`` of every node.
    key : int
        The run seed (reproducible noise) or the tree's secret (>= 0).
    template : sequence of np.ndarray
        The shapes of the model's tensors; each node draws tensor by tensor, in order.
    """
    if noise_std < 0 or not np.isfinite(noise_std):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    out = [np.zeros(np.shape(t), dtype=np.float64) for t in template]
    if noise_std == 0:
        return out
    for level, index in prefix_nodes(k):
        gen = rng(key, "dp-ftrl-noise", tree, level, index)
        for a in out:
            a += gen.normal(0.0, noise_std, size=a.shape)
    return out


def tree_cohort(population: int, cohort: int, key: int, tree: int, k: int) -> np.ndarray:
    """Indices of step ``k``'s cohort: ``cohort`` clients drawn uniformly without replacement
    from those not yet drawn in this tree (slice ``k`` of one uniform permutation per tree),
    so no client takes part twice in one tree."""
    if k * cohort > population:
        raise ValueError(f"step {k} of a tree needs {k * cohort} distinct clients, "
                         f"more than the {population}")
    perm = rng(key, "dp-ftrl-cohort", tree).permutation(population)
    return np.sort(perm[(k - 1) * cohort:k * cohort])
