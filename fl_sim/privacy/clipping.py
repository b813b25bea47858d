"""Per-client L2 clipping of a whole model update (all tensors together).

User-level DP-FedAvg bounds each client's influence on the round's sum by scaling its
update ``u`` (a list of tensors) to ``u * min(1, C / ||u||_2)``, where ``||u||_2`` is the
norm of all tensors concatenated ("flat clipping", McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models", Algorithm 1, ``ClipFn``). This is
what ``tf.clip_by_global_norm`` does in tensorflow-privacy's ``GaussianSumQuery``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Weights = list[np.ndarray]


def global_norm(update: Sequence[np.ndarray]) -> float:
    """L2 norm of all tensors of ``update`` taken together, computed in float64.

    Parameters
    ----------
    update : sequence of np.ndarray
        One client's update (e.g. model delta), any shapes.

    Returns
    -------
    float
        ``sqrt(sum_i sum(t_i ** 2))``; ``nan`` or ``inf`` if a tensor is not finite.
    """
    total = 0.0
    for t in update:
        a = np.asarray(t, dtype=np.float64).ravel()
        total += float(np.dot(a, a))
    return float(np.sqrt(total))


def clip_update(update: Sequence[np.ndarray], clip_norm: float) -> tuple[Weights, float, bool]:
    """Scale ``update`` by ``min(1, clip_norm / ||update||_2)``.

    Parameters
    ----------
    update : sequence of np.ndarray
        One client's update. It must be finite (validate before clipping).
    clip_norm : float
        The L2 bound ``C`` (> 0).

    Returns
    -------
    clipped : list of np.ndarray
        The scaled tensors, each in its input dtype (the scaling is done in float64).
    norm : float
        The norm before clipping.
    was_clipped : bool
        True when ``norm > clip_norm`` (an update with norm exactly ``C`` is not clipped,
        matching tensorflow-privacy, whose adaptive clipping counts ``norm <= C`` as
        unclipped).
    """
    if not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    norm = global_norm(update)
    if not np.isfinite(norm):
        raise ValueError("cannot clip an update that is not finite (validate it first)")
    was_clipped = norm > clip_norm
    arrays = [np.asarray(t) for t in update]
    if not was_clipped:
        return [a.copy() for a in arrays], norm, False
    dtypes = [a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
              for a in arrays]
    scale = clip_norm / norm
    # Rounding back to float32 can leave the norm a few ulps above C; shrink the scale by
    # a few ulps until the returned tensors really satisfy ||.|| <= C (the DP bound).
    shrink = 4 * max(float(np.finfo(d).eps) for d in dtypes)
    for _ in range(8):
        out = [(a.astype(np.float64) * scale).astype(d) for a, d in zip(arrays, dtypes)]
        if global_norm(out) <= clip_norm:
            break
        scale *= 1.0 - shrink
    return out, norm, True
