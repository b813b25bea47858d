"""DP-FedAvg aggregation as a chain of small steps: clip, sum, noise, fixed-denominator mean,
adaptive clip update (the pfl-research "postprocessor" pattern; TFF's aggregators that
report what they did).

McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models"
(DP-FedAvg, fixed clipping, fixed denominator); Andrew et al. 2021, "Differentially
Private Learning with Adaptive Clipping" (geometric quantile clipping and the noise
split). The result matches tensorflow-privacy 0.9's
``NormalizedQuery(QuantileAdaptiveClipSumQuery(...), m)`` / ``NormalizedQuery(
GaussianSumQuery(C, zC), m)``, i.e. TFF's ``DifferentiallyPrivateFactory.gaussian_adaptive``
/ ``gaussian_fixed`` (checked in tests/integration/test_tfp_crosscheck.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fl_sim.privacy.adaptive import (QuantileClipEstimator, resolve_clipped_count_stddev,
                                     split_noise_multiplier)
from fl_sim.privacy.clipping import clip_update
from fl_sim.privacy.noise import dp_mean, noisy_sum
from fl_sim.seeding import rng

Weights = list[np.ndarray]


@dataclass
class DPAggregator:
    """Clip every update to ``C``, sum, add ``N(0, (z_Delta C)^2)``, divide by ``m``.

    Parameters
    ----------
    noise_multiplier : float
        ``z``: the round's total noise multiplier, what the accountant charges. With
        adaptive clipping the update itself gets the larger ``z_Delta`` (see
        :func:`fl_sim.privacy.adaptive.split_noise_multiplier`).
    clip_norm : float
        ``C`` (the initial ``C`` when adaptive).
    expected_cohort : float
        ``m``: the fixed denominator (``clients_per_round``; ``q * population`` under
        Poisson sampling).
    seed : int
        Run seed; round ``t``'s noise comes from ``rng(seed, "dp-noise", t)`` and its
        count noise from ``rng(seed, "dp-count-noise", t)`` (``reproducible``).
    reproducible : bool
        False: every draw comes from a generator seeded from OS entropy, which is never
        stored, so nobody holding the seed can recompute (and subtract) the noise.
    adaptive : bool
        Track the ``target_quantile`` of update norms (Andrew et al. 2021).
    target_quantile, clip_lr : float
        ``gamma`` and ``eta`` of the geometric update (defaults 0.5 and 0.2).
    clipped_count_stddev : float or None
        ``sigma_b``; ``None`` means ``m' / 20`` (0 when ``z == 0``, as TFF does).
    noise_cohort : float or None
        ``m'``: add the noise a cohort of ``m'`` clients would get (pfl-research's
        ``noise_cohort_size``), i.e. std ``z_Delta C m / m'`` on the sum of the ``m``
        simulated clients, so ``z_Delta C / m'`` on the mean; the count noise is scaled by
        the same ``m / m'`` (so the noisy unclipped *fraction* is as noisy as with ``m'``
        clients). ``sigma_b`` and the noise split are those of the ``m'`` cohort. ``None``
        means ``m' = m`` (no scaling).
    """

    noise_multiplier: float
    clip_norm: float
    expected_cohort: float
    seed: int = 0
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float | None = None
    noise_cohort: float | None = None
    reproducible: bool = True
    count_stddev: float = field(default=0.0, init=False)
    update_noise_multiplier: float = field(default=0.0, init=False)
    _estimator: QuantileClipEstimator | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")
        if not self.expected_cohort > 0:
            raise ValueError(f"expected_cohort must be > 0, got {self.expected_cohort}")
        if self.noise_cohort is None:
            self.noise_cohort = float(self.expected_cohort)
        if not self.noise_cohort > 0:
            raise ValueError(f"noise_cohort must be > 0, got {self.noise_cohort}")
        if self.adaptive:
            self.count_stddev = resolve_clipped_count_stddev(
                self.noise_multiplier, self.noise_cohort, self.clipped_count_stddev)
            self.update_noise_multiplier = split_noise_multiplier(
                self.noise_multiplier, self.count_stddev)
            self._estimator = QuantileClipEstimator(
                clip_norm=self.clip_norm, target_quantile=self.target_quantile,
                learning_rate=self.clip_lr,
                clipped_count_stddev=self.count_stddev * self.noise_scale,
                expected_cohort=self.expected_cohort)
        else:
            self.count_stddev = 0.0
            self.update_noise_multiplier = float(self.noise_multiplier)

    @classmethod
    def from_config(cls, cfg: Any, expected_cohort: float, seed: int,
                    noise_multiplier: float | None = None,
                    noise_cohort: float | None = None,
                    reproducible: bool = True) -> "DPAggregator":
        """Build from a ``PrivacyConfig`` (``noise_multiplier`` overrides a calibrated z)."""
        return cls(
            noise_multiplier=cfg.noise_multiplier if noise_multiplier is None else noise_multiplier,
            clip_norm=cfg.clip_norm, expected_cohort=expected_cohort, seed=seed,
            adaptive=cfg.adaptive_clipping, target_quantile=cfg.target_quantile,
            clip_lr=cfg.clip_lr, clipped_count_stddev=cfg.clipped_count_stddev or None,
            noise_cohort=noise_cohort, reproducible=reproducible)

    def _generator(self, purpose: str, server_round: int) -> np.random.Generator:
        if self.reproducible:
            return rng(self.seed, purpose, server_round)
        return np.random.default_rng()  # SeedSequence() from OS entropy; kept nowhere

    @property
    def noise_scale(self) -> float:
        """``m / m'``: the simulated cohort's noise relative to the noise cohort's."""
        return float(self.expected_cohort) / float(self.noise_cohort)

    @property
    def current_clip(self) -> float:
        """The clip the next :meth:`aggregate` call will use."""
        return self._estimator.clip_norm if self._estimator is not None else float(self.clip_norm)

    def aggregate(self, updates: Sequence[Sequence[np.ndarray]], server_round: int,
                  template: Sequence[np.ndarray] | None = None,
                  inserted: Sequence[Sequence[np.ndarray]] = ()) -> tuple[Weights, dict]:
        """One round: returns ``(mean_update, report)``.

        Parameters
        ----------
        updates : sequence of updates
            The reporting clients' updates (lists of tensors), already checked finite.
            Every client counts once (unweighted).
        server_round : int
            Keys the noise generators.
        template : sequence of np.ndarray, optional
            Shapes and dtypes of the result when ``updates`` is empty (an empty Poisson
            cohort still releases noise); otherwise the first update's are used.
        inserted : sequence of updates, optional
            Audit canaries' updates (:mod:`fl_sim.privacy.canaries`, norm ``C``): clipped
            and summed with the clients' before the noise, but not counted as clients (not
            in ``num_clients``, the clipped count or the adaptive clip's quantile), and the
            denominator stays ``m``.

        Returns
        -------
        mean : list of np.ndarray
            ``(sum_i clip(u_i, C) + N(0, (z_Delta C)^2)) / m`` in the updates' dtypes.
        report : dict
            ``clip_norm`` (used), ``next_clip_norm``, ``noise_multiplier`` (z),
            ``update_noise_multiplier`` (z_Delta), ``noise_std`` (on the sum),
            ``mean_noise_std`` (on the mean: ``z_Delta C / m'``), ``clipped_count_stddev``
            (``sigma_b`` of the ``m'`` cohort), ``count_noise``, ``noise_cohort``,
            ``noisy_unclipped_fraction`` (adaptive only), ``num_clients``,
            ``expected_cohort``, ``num_clipped``, ``fraction_clipped``. The last two and
            ``count_noise`` are exact, non-private diagnostics.
        """
        ref = updates[0] if len(updates) else template
        if ref is None:
            raise ValueError("aggregate() of no updates needs a template")
        clip = self.current_clip
        clipped, norms = [], []
        for u in updates:
            c, norm, _ = clip_update(u, clip)
            clipped.append(c)
            norms.append(norm)
        return self._release(clipped, norms, server_round, ref, inserted)

    def aggregate_sums(self, sums: Sequence[Sequence[np.ndarray]], norms: Sequence[float],
                       server_round: int, template: Sequence[np.ndarray],
                       inserted: Sequence[Sequence[np.ndarray]] = ()) -> tuple[Weights, dict]:
        """:meth:`aggregate` from nodes' sums of updates already clipped to
        :attr:`current_clip` (``deployment.node_sums``; fl_sim/updates.py ``sum_updates``).

        ``norms``: every summed client's norm before clipping (the clipped count and the
        adaptive clip's quantile need them); ``template``: the global weights (shapes and
        dtypes of the result). The same release as :meth:`aggregate` on the clients' updates,
        up to the order of the float64 additions.
        """
        return self._release(list(sums), list(norms), server_round, template, inserted)

    def _release(self, clipped: list, norms: list[float], server_round: int,
                 ref: Sequence[np.ndarray], inserted: Sequence[Sequence[np.ndarray]]
                 ) -> tuple[Weights, dict]:
        """Clipped updates (or sums of them) -> noise, fixed-denominator mean, clip update."""
        dtypes = [np.asarray(t).dtype for t in ref]
        clip = self.current_clip
        # clip_update's rule: a norm equal to C is not clipped.
        n_clipped = sum(1 for n in norms if n > clip)
        canaries = [clip_update(u, clip)[0] for u in inserted]
        noise_std = self.update_noise_multiplier * clip * self.noise_scale
        total = noisy_sum(clipped + canaries, noise_std, self._generator("dp-noise", server_round),
                          template=ref)
        mean = dp_mean(total, self.expected_cohort, dtypes)
        report = {
            "clip_norm": clip,
            "next_clip_norm": clip,
            "noise_multiplier": float(self.noise_multiplier),
            "update_noise_multiplier": self.update_noise_multiplier,
            "noise_std": noise_std,
            "mean_noise_std": noise_std / float(self.expected_cohort),
            "clipped_count_stddev": self.count_stddev,
            "count_noise": 0.0,
            "num_clients": len(norms),
            "canaries_inserted": len(canaries),
            "expected_cohort": float(self.expected_cohort),
            "noise_cohort": float(self.noise_cohort),
            "num_clipped": n_clipped,
            "fraction_clipped": n_clipped / len(norms) if norms else 0.0,
        }
        if self._estimator is not None:
            step = self._estimator.step(norms, self._generator("dp-count-noise", server_round))
            report.update(next_clip_norm=step["next_clip_norm"], count_noise=step["count_noise"],
                          noisy_unclipped_fraction=step["noisy_unclipped_fraction"])
        return mean, report

    def state(self) -> dict[str, float]:
        """What a checkpoint must keep: the current (adaptive) clip."""
        return {"clip_norm": self.current_clip}

    def load_state(self, state: dict[str, Any]) -> None:
        if "clip_norm" not in state:
            return
        c = float(np.asarray(state["clip_norm"]))
        if self._estimator is not None:
            self._estimator.clip_norm = c
        elif c != float(self.clip_norm):
            raise ValueError(f"checkpoint clip_norm {c} != configured fixed clip {self.clip_norm}")
