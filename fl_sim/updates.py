"""One client update's validity, and a node's sum of its clients' valid updates.

``validate_update`` is the rule the server applies to every client update (shapes, finite
values, examples > 0, ``server.max_update_bytes``). With ``deployment.node_sums`` a node
applies the same function to its own clients and returns one :class:`NodeSum` (the weighted
sum of the valid updates, every client's metrics and verdict) instead of every update, so a
round moves one update per node instead of one per client. Pure NumPy, no Flower types.

Why a sum and not a mean: the server divides the sum of all nodes' sums by the total weight,
which is then exactly FedAvg's weighted mean; only the order of the float64 additions differs
from summing the clients one by one on the server (both add in float64, then round to the
model's dtype once).

Under DP (DP-FedAvg, DP-FTRL) the server sends the round's clip norm ``C`` with the train
message and the node clips each valid update to ``C`` before it sums them, unweighted, as
the server's DP aggregation would (``fl_sim.privacy.clipping.clip_update``); it also reports
each accepted client's norm before clipping, which adaptive clipping's quantile estimate
and the clipped-count diagnostics need. The noise is the server's alone: it is added once,
to the sum of the nodes' clipped sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: (client id, delta, metrics) of one client update, as a node trained it.
Result = tuple[str, list[np.ndarray], dict]


def validate_update(delta: Sequence[np.ndarray], metrics: dict, reference: Sequence[np.ndarray],
                    max_update_bytes: int = 0) -> str | None:
    """Why ``delta`` is not a usable update of ``reference`` (the global weights), or None."""
    if problem := _tensor_problem(delta, reference):
        return problem
    if not metrics.get("num_examples", 0) > 0:
        return "no training examples"
    size = int(sum(d.nbytes for d in delta))
    if max_update_bytes and size > max_update_bytes:
        return f"update is {size} bytes, over server.max_update_bytes = {max_update_bytes}"
    return None


def update_weight(metrics: dict, weighted: bool) -> float:
    """A client's FedAvg weight: its example count (``server.weighted``), else 1."""
    return float(metrics["num_examples"]) if weighted else 1.0


@dataclass
class NodeSum:
    """A node's clients summed: ``clients`` sorted by id as (id, metrics, None if accepted
    else why it was rejected); ``total`` the float64 weighted sum of the accepted updates,
    None when none was accepted.

    Clipped (under DP): ``clip_norm`` is the ``C`` each accepted update was clipped to before
    the unweighted sum, and ``norms`` the accepted clients' norms before clipping, in the
    order of :meth:`accepted`. Both None for a plain weighted sum.
    """

    clients: list[tuple[str, dict, str | None]]
    total: list[np.ndarray] | None
    clip_norm: float | None = None
    norms: list[float] | None = None

    def accepted(self) -> list[tuple[str, dict]]:
        return [(cid, m) for cid, m, problem in self.clients if problem is None]


def sum_updates(results: Sequence[Result], reference: Sequence[np.ndarray], *, weighted: bool,
                max_update_bytes: int = 0, clip_norm: float | None = None) -> NodeSum:
    """Validate each update against ``reference`` and sum the valid ones, weighted; with
    ``clip_norm``, clip each to it first and sum unweighted (DP's sum: every client counts
    once, whatever ``weighted``).

    In sorted client-id order, in float64 (as ``fedavg_math.weighted_mean`` and
    ``fl_sim.privacy.noise.clipped_sum`` accumulate), so the sum does not depend on the order
    the clients trained in.
    """
    if clip_norm is not None:
        from fl_sim.privacy.clipping import clip_update  # NumPy only; not needed without DP

    clients, total, norms = [], None, []
    for cid, delta, metrics in sorted(results, key=lambda r: r[0]):
        problem = validate_update(delta, metrics, reference, max_update_bytes)
        clients.append((cid, metrics, problem))
        if problem is not None:
            continue
        if clip_norm is not None:
            delta, norm, _ = clip_update(delta, clip_norm)
            norms.append(float(norm))
            w = np.float64(1.0)
        else:
            w = np.float64(update_weight(metrics, weighted))
        if total is None:
            total = [np.zeros(r.shape, dtype=np.float64) for r in reference]
        for acc, d in zip(total, delta):
            acc += w * d
    if clip_norm is None:
        return NodeSum(clients, total)
    return NodeSum(clients, total, float(clip_norm), norms)


def check_total(total: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> str | None:
    """Why a node's summed update cannot be used (the server's check of a NodeSum), or None."""
    return _tensor_problem(total, reference)


def _tensor_problem(tensors: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> str | None:
    """Tensor count, shapes and finiteness against ``reference``: what a client's update and a
    node's sum must both satisfy."""
    if len(tensors) != len(reference):
        return f"{len(tensors)} tensors, expected {len(reference)}"
    for i, (t, r) in enumerate(zip(tensors, reference)):
        if t.shape != r.shape:
            return f"tensor {i} has shape {t.shape}, expected {r.shape}"
        if not np.all(np.isfinite(t)):
            return f"tensor {i} has non-finite values"
    return None


def mean_of_sums(totals: Sequence[Sequence[np.ndarray]], weight: float,
                 reference: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The weighted mean from nodes' totals (in the given order) and the total weight, in
    ``reference``'s dtypes."""
    if not totals or weight <= 0:
        raise ValueError("mean_of_sums needs at least one total and a positive weight")
    out = []
    for i, ref in enumerate(reference):
        acc = np.zeros(ref.shape, dtype=np.float64)
        for t in totals:
            acc += t[i]
        out.append((acc / weight).astype(ref.dtype))
    return out
