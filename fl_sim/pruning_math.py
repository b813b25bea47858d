"""Federated magnitude pruning of the global model: schedule, masks, and their application.

Schedule (Zhu & Gupta 2017, "To prune, or not to prune: exploring the efficacy of pruning
for model compression", arXiv:1710.01878, eq. 1), with rounds as the training steps::

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** power
    for t in {t0, t0 + dt, ..., t0 + n * dt}

``t0 = pruning.begin_round``, ``t0 + n * dt = pruning.end_round`` (0 means three quarters
of ``experiment.rounds``), ``dt = pruning.frequency``, ``s_i = 0``,
``s_f = pruning.target_sparsity`` and ``power = pruning.power`` (3 in the paper). Between
two pruning rounds the sparsity stays at the last pruning round's value; before ``t0`` it
is 0; from ``end_round`` on it is ``s_f``. The end round is always a pruning round, even when
``end_round - begin_round`` is not a multiple of ``frequency``.

Masks: per tensor, the ``round(s * size)`` entries of smallest magnitude are zeroed (ties
broken by position, so the count is exact). Entries masked before stay masked (the masks
only ever grow), as in the TF Model Optimization pruning wrapper, where pruned weights
are zero and hence the smallest.

What is prunable (:func:`prunable_flags`): 2-D tensors only, i.e. dense/recurrent/
projection kernels, attention and feed-forward kernels, and the input embedding and
output (logits) kernels. Never pruned: every tensor that is not 2-D (biases, LayerNorm
gamma/beta, CIFG bias), and, when names are given, any tensor whose name contains
``bias``, ``norm``, ``gamma``, ``beta`` or ``position`` (the learned position table of
the transformer: small, and every row is used at every step).

Federated use (the server applies these; see :class:`FederatedPruner`): after each
aggregation the server computes the scheduled sparsity for the round, updates the masks
on pruning rounds, applies them to the new global weights and sends the masked weights.
Client updates are masked on the server too, so the pruned entries stay exactly zero and
later rounds train the sparse model.

Everything here is pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Name fragments (lower-case) of tensors never pruned when names are known.
NEVER_PRUNE = ("bias", "norm", "gamma", "beta", "position")


def resolve_end_round(end_round: int, rounds: int, begin_round: int = 1) -> int:
    """``end_round``, or three quarters of ``rounds`` (at least ``begin_round``) when 0."""
    if end_round:
        return int(end_round)
    return max(int(begin_round), int(0.75 * rounds))


def polynomial_sparsity(t: int, *, target: float, begin: int, end: int, frequency: int = 1,
                        power: float = 3.0, initial: float = 0.0) -> float:
    """Scheduled sparsity after round ``t`` (1-based), Zhu & Gupta's polynomial decay.

    Parameters
    ----------
    t : int
        Round number.
    target : float
        Final sparsity ``s_f`` in [0, 1).
    begin, end : int
        First and last pruning rounds (``t0`` and ``t0 + n * dt``); ``end >= begin``.
    frequency : int
        ``dt``: rounds between pruning steps.
    power : float
        Exponent of the schedule (3 in the paper).
    initial : float
        ``s_i``, the sparsity at ``begin`` (0 here).

    Returns
    -------
    float
        0 before ``begin``; ``target`` from ``end`` on; otherwise the value at the most
        recent pruning round ``begin + k * frequency <= t``.
    """
    if end < begin:
        raise ValueError(f"pruning end round {end} is before the begin round {begin}")
    if frequency < 1:
        raise ValueError(f"pruning frequency must be >= 1, got {frequency}")
    if t < begin:
        return 0.0
    if t >= end:
        return float(target)
    last = begin + ((t - begin) // frequency) * frequency
    frac = (last - begin) / (end - begin)
    return float(target + (initial - target) * (1.0 - frac) ** power)


def is_pruning_round(t: int, *, begin: int, end: int, frequency: int = 1) -> bool:
    """True on the rounds where the masks are recomputed (``begin + k * dt`` and ``end``)."""
    if t < begin or t > end:
        return False
    return t == end or (t - begin) % frequency == 0


def schedule_from_config(cfg, rounds: int):
    """``t -> sparsity`` for a :class:`fl_sim.config.PruningConfig` and the run's rounds."""
    end = resolve_end_round(cfg.end_round, rounds, cfg.begin_round)

    def sparsity(t: int) -> float:
        return polynomial_sparsity(t, target=cfg.target_sparsity, begin=cfg.begin_round, end=end,
                                   frequency=cfg.frequency, power=cfg.power)

    return sparsity


def prunable_flags(weights: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[bool]:
    """Which tensors may be pruned: 2-D, and (given names) not a bias/norm/position table.

    Parameters
    ----------
    weights : sequence of arrays
        The model's trainable weights (``model.trainable_variables`` order).
    names : sequence of str, optional
        Their variable paths (e.g. ``v.path``: ``"cifg/cell/kernel"``). Without names the
        decision is by shape alone (biases and LayerNorm parameters are 1-D, so they are
        still never pruned; only the transformer's 2-D position table then is).
    """
    if names is not None and len(names) != len(weights):
        raise ValueError(f"{len(names)} names for {len(weights)} weights")
    flags = []
    for i, w in enumerate(weights):
        ok = np.ndim(w) == 2
        if ok and names is not None:
            lower = str(names[i]).lower()
            ok = not any(part in lower for part in NEVER_PRUNE)
        flags.append(bool(ok))
    return flags


def compute_masks(weights: Sequence[np.ndarray], sparsity: float, prunable: Sequence[bool],
                  previous: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray | None]:
    """Per-tensor magnitude masks: ``round(sparsity * size)`` smallest |w| set to False.

    Parameters
    ----------
    weights : sequence of arrays
    sparsity : float
        Fraction of entries to zero in every prunable tensor, in [0, 1).
    prunable : sequence of bool
        From :func:`prunable_flags`; non-prunable tensors get ``None`` (no mask).
    previous : sequence of (bool array or None), optional
        Earlier masks; entries already masked are pruned first and stay pruned.

    Returns
    -------
    list of (bool array or None)
        True = keep. Exactly ``round(sparsity * size)`` False entries per prunable tensor
        (or the previous mask's count if that is larger).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if len(prunable) != len(weights):
        raise ValueError(f"{len(prunable)} prunable flags for {len(weights)} weights")
    masks: list[np.ndarray | None] = []
    for i, (w, ok) in enumerate(zip(weights, prunable)):
        if not ok:
            masks.append(None)
            continue
        w = np.asarray(w)
        mag = np.abs(w.astype(np.float64)).ravel()
        prev = None if previous is None else previous[i]
        if prev is not None:
            mag[~np.asarray(prev, bool).ravel()] = -1.0          # already pruned: first out
        k = int(round(sparsity * mag.size))
        keep = np.ones(mag.size, dtype=bool)
        if k > 0:
            # stable sort: ties broken by position, so exactly k entries go
            keep[np.argsort(mag, kind="stable")[:k]] = False
        keep = keep.reshape(w.shape)
        if prev is not None:
            keep &= np.asarray(prev, bool)
        masks.append(keep)
    return masks


def apply_masks(weights: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Zero the masked entries (new arrays, same dtypes); ``None`` masks leave a tensor as is.

    Idempotent: ``apply_masks(apply_masks(w, m), m) == apply_masks(w, m)``.
    """
    if len(masks) != len(weights):
        raise ValueError(f"{len(masks)} masks for {len(weights)} weights")
    out = []
    for w, m in zip(weights, masks):
        w = np.asarray(w)
        if m is None:
            out.append(w.copy())
        else:
            if m.shape != w.shape:
                raise ValueError(f"mask shape {m.shape} != weight shape {w.shape}")
            out.append(np.where(m, w, np.zeros((), w.dtype)).astype(w.dtype, copy=False))
    return out


def sparsity_report(weights: Sequence[np.ndarray], prunable: Sequence[bool]) -> dict:
    """Fraction of exact zeros: over prunable tensors, over all weights, and per tensor."""
    per = [float(np.mean(np.asarray(w) == 0)) if np.size(w) else 0.0 for w in weights]
    pr = [np.size(w) for w, ok in zip(weights, prunable) if ok]
    pz = [int(np.sum(np.asarray(w) == 0)) for w, ok in zip(weights, prunable) if ok]
    total = sum(np.size(w) for w in weights)
    zeros = sum(int(np.sum(np.asarray(w) == 0)) for w in weights)
    return {"prunable_sparsity": (sum(pz) / sum(pr)) if pr else 0.0,
            "overall_sparsity": zeros / total if total else 0.0,
            "prunable_parameters": int(sum(pr)), "parameters": int(total),
            "per_tensor": per}


def prune_once(weights: Sequence[np.ndarray], sparsity: float,
               names: Sequence[str] | None = None) -> tuple[list[np.ndarray], list]:
    """One-shot magnitude pruning (export time): ``(pruned weights, masks)``."""
    flags = prunable_flags(weights, names)
    masks = compute_masks(weights, sparsity, flags)
    return apply_masks(weights, masks), masks


class FederatedPruner:
    """Server-side state: the schedule and the current masks, re-applied every round.

    >>> pruner = FederatedPruner(cfg.pruning, cfg.experiment.rounds, weights, names)  # doctest: +SKIP
    >>> weights = pruner.after_aggregation(rnd, weights)   # every round      # doctest: +SKIP

    ``after_aggregation`` recomputes the masks on pruning rounds (from the aggregated
    weights) and applies the current masks on every round, so clients always receive the
    masked model and masked entries stay zero. ``state()`` / ``load_state()`` carry the
    masks through checkpoints for exact resumes.
    """

    def __init__(self, cfg, rounds: int, weights: Sequence[np.ndarray],
                 names: Sequence[str] | None = None):
        self.cfg = cfg
        self.rounds = int(rounds)
        self.begin = int(cfg.begin_round)
        self.end = resolve_end_round(cfg.end_round, rounds, cfg.begin_round)
        if self.end < self.begin:
            raise ValueError(f"pruning.end_round = {self.end} is before pruning.begin_round = {self.begin}")
        self.prunable = prunable_flags(weights, names)
        self.masks: list[np.ndarray | None] = [None] * len(weights)
        self.sparsity = 0.0

    def scheduled(self, t: int) -> float:
        return polynomial_sparsity(t, target=self.cfg.target_sparsity, begin=self.begin, end=self.end,
                                   frequency=self.cfg.frequency, power=self.cfg.power)

    def after_aggregation(self, t: int, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Update the masks if the schedule's sparsity rose by round ``t``, then apply them.

        The schedule is a step function that rises exactly on pruning rounds, so "rose"
        means "a pruning round", except that it also catches up when a pruning round was
        skipped (too few clients completed it): the server loop then does not call this,
        and testing ``is_pruning_round`` alone would never reach the target.
        """
        s = self.scheduled(t)
        if s > self.sparsity:
            prev = self.masks if any(m is not None for m in self.masks) else None
            self.masks = compute_masks(weights, s, self.prunable, prev)
            self.sparsity = s
        return apply_masks(weights, self.masks)

    def mask_update(self, update: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Zero a client update (delta) where the model is pruned."""
        return apply_masks(update, self.masks)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays for a checkpoint: ``pruning_mask_<i>`` per masked tensor, and the sparsity."""
        out = {f"pruning_mask_{i}": m.astype(np.uint8) for i, m in enumerate(self.masks) if m is not None}
        out["pruning_sparsity"] = np.array(self.sparsity, np.float64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.masks = [None] * len(self.prunable)
        for key, value in state.items():
            if key.startswith("pruning_mask_"):
                self.masks[int(key[len("pruning_mask_"):])] = np.asarray(value).astype(bool)
        self.sparsity = float(state.get("pruning_sparsity", 0.0))
