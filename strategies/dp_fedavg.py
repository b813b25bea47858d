"""DP-FedAvg: user-level differential privacy around a FedAvg strategy.

McMahan et al. 2018 ("Learning Differentially Private Recurrent Language Models"), with
adaptive clipping from Andrew et al. 2021. A wrapper, as Flower's DP strategies are: it
keeps the inner strategy's validation and server optimizer, and replaces its aggregation
step, through the public ``set_aggregation`` hook, with clip -> sum -> Gaussian noise ->
fixed denominator (``fl_sim.privacy.DPAggregator``), sampled with ``privacy.sampling`` and
released every round. Any stack of other wrappers may sit between it and the strategy
(e.g. pruning inside or outside it: pruning masks the released weights, which is
post-processing either way). Every round is charged to a ``PrivacyLedger`` over
dp-accounting; a configured ``max_epsilon`` stops the run before the round that would
exceed it.

Why not Flower's ``DifferentialPrivacyServerSideFixedClipping``: its noise comes from
NumPy's global RNG (not reproducible from the seed, not exact on resume), it requires the
number of replies to equal a fixed ``num_sampled_clients`` (no Poisson sampling with the
fixed denominator ``q N``), and it keeps no ledger (docs/privacy.md).
"""

from __future__ import annotations

import numpy as np
from flwr.serverapp.strategy import Strategy

from fl_sim.config import ExperimentConfig
from fl_sim.privacy import DPAggregator, PrivacyLedger, calibrate_noise
from strategies.hooks import Accepted, Aggregation
from strategies.wrapper import StrategyWrapper


class DPFedAvg(StrategyWrapper):
    once_per_stack = "the noise would be added, and the privacy cost charged, twice"

    def __init__(self, inner: Strategy, cfg: ExperimentConfig, population: int):
        p = cfg.privacy
        super().__init__(inner)
        self.cfg = cfg
        m = cfg.server.clients_per_round
        if m > population:
            raise ValueError(f"server.clients_per_round = {m} exceeds the {population} training "
                             "clients; DP accounting needs cohort <= population")
        self.calibrated = p.target_epsilon > 0
        if self.calibrated:
            self.z = calibrate_noise(p.target_epsilon, p.delta or None, cfg.experiment.rounds,
                                     p.sampling, population, m, p.accountant)
        else:
            self.z = p.noise_multiplier
        self.ledger = PrivacyLedger(population, m, p.sampling, p.delta or None)
        self.dp = DPAggregator.from_config(p, expected_cohort=m, seed=cfg.experiment.seed,
                                           noise_multiplier=self.z)
        inner.set_aggregation(Aggregation(self._aggregate, owner=type(self).__name__,
                                          sampling=p.sampling, release_every_round=True))

    def _aggregate(self, server_round: int, accepted: list[Accepted], current: list[np.ndarray]
                   ) -> tuple[list[np.ndarray], dict]:
        mean, report = self.dp.aggregate([d for _, d, _ in accepted], server_round,
                                         template=current)
        self.ledger.record_round(self.z)
        keep = ("clip_norm", "next_clip_norm", "noise_multiplier", "update_noise_multiplier",
                "noise_std", "fraction_clipped", "num_clipped", "noisy_unclipped_fraction")
        return mean, {k: float(report[k]) for k in keep if k in report}

    # -- fl_sim hooks --------------------------------------------------------------------
    def before_round(self, server_round: int) -> str | None:
        p = self.cfg.privacy
        if p.max_epsilon > 0:
            nxt = self.ledger.epsilon_if_next_round(self.z, p.accountant)
            if nxt is None or nxt > p.max_epsilon:
                return (f"privacy budget: epsilon ({p.accountant}) would reach "
                        f"{nxt if nxt is None else round(nxt, 4)} > privacy.max_epsilon = "
                        f"{p.max_epsilon} at delta = {self.ledger.delta:.3g} after round {server_round}")
        return self.inner.before_round(server_round)

    def round_metrics(self, server_round: int) -> dict:
        eps = self.ledger.epsilons()
        return {**self.inner.round_metrics(server_round), "epsilon_rdp": eps["rdp"],
                "epsilon_pld": eps["pld"], "delta": eps["delta"],
                "accountant": self.cfg.privacy.accountant}

    def final_report(self) -> dict:
        p = self.cfg.privacy
        adaptive = None
        if p.adaptive_clipping:
            adaptive = {"initial_clip_norm": p.clip_norm, "target_quantile": p.target_quantile,
                        "clip_lr": p.clip_lr, "clipped_count_stddev": self.dp.count_stddev,
                        "update_noise_multiplier": self.dp.update_noise_multiplier,
                        "final_clip_norm": self.dp.current_clip}
        facts, text = self.ledger.statement(clip_norm=p.clip_norm, adaptive=adaptive)
        if self.calibrated:
            text += (f"\n\nThe noise multiplier z = {self.z:.6g} was calibrated so that epsilon "
                     f"({p.accountant}) <= {p.target_epsilon} after {self.cfg.experiment.rounds} rounds.")
        eps = self.ledger.epsilons()
        return {**self.inner.final_report(), "noise_multiplier": self.z,
                "epsilon_rdp": eps["rdp"], "epsilon_pld": eps["pld"], "delta": eps["delta"],
                "privacy": facts, "privacy_statement": text}

    def extra_state(self) -> dict:
        return {**self.inner.extra_state(), "privacy_ledger": self.ledger.to_dict(),
                "dp_aggregator": self.dp.state(), "noise_multiplier": self.z}

    def load_extra_state(self, extra: dict) -> None:
        self.inner.load_extra_state(extra)
        if "privacy_ledger" in extra:
            self.ledger = PrivacyLedger.from_dict(extra["privacy_ledger"])
            self.dp.load_state(extra["dp_aggregator"])
