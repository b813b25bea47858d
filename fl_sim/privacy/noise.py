"""The Gaussian mechanism on the sum of clipped updates, and the fixed-denominator mean.

DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models", Algorithm 1 with the fixed-denominator estimator ``f~_f``) releases

    Delta = (sum_i clip(Delta_i, C) + N(0, (z C)^2 I)) / m

where ``m`` is the *expected* cohort size (``q * population``), not the number of
clients that reported: a fixed denominator keeps the sensitivity of the mean at
``C / m`` whatever the realized cohort, so the noise on the mean has std ``z C / m``.
This is tensorflow-privacy's ``NormalizedQuery(GaussianSumQuery(C, z C), m)`` and
TFF's ``DifferentiallyPrivateFactory.gaussian_fixed``. Every client counts equally
(unweighted): weighting by example counts would change the sensitivity.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Weights = list[np.ndarray]


def clipped_sum(clipped_updates: Sequence[Sequence[np.ndarray]],
                template: Sequence[np.ndarray] | None = None) -> Weights:
    """Sum of (already clipped) updates in float64; zeros shaped like ``template`` if empty."""
    if not clipped_updates:
        if template is None:
            raise ValueError("clipped_sum of no updates needs a template for the shapes")
        return [np.zeros(np.shape(t), dtype=np.float64) for t in template]
    ref = clipped_updates[0]
    acc = [np.zeros(np.shape(t), dtype=np.float64) for t in ref]
    for u in clipped_updates:
        if len(u) != len(ref):
            raise ValueError(f"update has {len(u)} tensors, expected {len(ref)}")
        for i, t in enumerate(u):
            if np.shape(t) != acc[i].shape:
                raise ValueError(f"tensor {i}: shape {np.shape(t)} != {acc[i].shape}")
            acc[i] += np.asarray(t, dtype=np.float64)
    return acc


def add_gaussian_noise(total: Sequence[np.ndarray], noise_std: float,
                       generator: np.random.Generator) -> Weights:
    """``total + N(0, noise_std^2)`` per coordinate, in float64.

    The noise is drawn tensor by tensor, in order, from ``generator`` (derive it from
    ``fl_sim.seeding.rng(seed, "dp-noise", round)``), so it depends only on the seed,
    the round and the tensor shapes. ``noise_std == 0`` draws nothing.
    """
    if noise_std < 0 or not np.isfinite(noise_std):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    out = []
    for t in total:
        a = np.array(t, dtype=np.float64)
        if noise_std > 0:
            a += generator.normal(0.0, noise_std, size=a.shape)
        out.append(a)
    return out


def noisy_sum(clipped_updates: Sequence[Sequence[np.ndarray]], noise_std: float,
              generator: np.random.Generator,
              template: Sequence[np.ndarray] | None = None) -> Weights:
    """Sum of clipped updates plus ``N(0, noise_std^2)`` on every coordinate (float64).

    Parameters
    ----------
    clipped_updates : sequence of updates
        Each a list of tensors whose global norm is already <= C.
    noise_std : float
        ``z * C`` for the Gaussian mechanism on the sum (McMahan et al. 2018).
    generator : np.random.Generator
        The round's noise generator, e.g. ``rng(seed, "dp-noise", round)``.
    template : sequence of np.ndarray, optional
        Shapes to use when no client reported (Poisson sampling can draw an empty
        cohort; the mechanism must still release noise).
    """
    return add_gaussian_noise(clipped_sum(clipped_updates, template), noise_std, generator)


def dp_mean(total: Sequence[np.ndarray], expected_cohort: float,
            dtypes: Sequence[np.dtype] | None = None) -> Weights:
    """Divide a (noisy) sum by the expected cohort size ``m`` (the fixed denominator).

    Parameters
    ----------
    total : sequence of np.ndarray
        The noisy sum.
    expected_cohort : float
        ``m = q * population`` (> 0), the same every round whatever the realized cohort.
    dtypes : sequence of dtype, optional
        Output dtypes per tensor (e.g. the model's float32); default float64.
    """
    if not expected_cohort > 0:
        raise ValueError(f"expected_cohort must be > 0, got {expected_cohort}")
    out = [np.asarray(t, dtype=np.float64) / float(expected_cohort) for t in total]
    if dtypes is not None:
        out = [t.astype(d) for t, d in zip(out, dtypes)]
    return out
