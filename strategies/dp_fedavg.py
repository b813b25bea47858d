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
from fl_sim.privacy import DPAggregator
from fl_sim.privacy.deployment import DPAccounting
from fl_sim.privacy.release import (DIAGNOSTIC_EXAMPLES, data_paragraph, node_sums_paragraph,
                                    noise_paragraph)
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
        # Epsilon (and a calibrated z) is for the stated deployment N', m' when
        # privacy.accounting_population / noise_cohort_size are set (fl_sim/privacy/deployment.py).
        self.accounting = DPAccounting(p, population, m, cfg.experiment.rounds)
        self.calibrated = self.accounting.calibrated
        self.z = self.accounting.z
        # "auto" is resolved by the run (fl_sim.config.for_runtime); unresolved, it means
        # the simulation default.
        self.reproducible = p.reproducible_noise != "false"
        self.dp = DPAggregator.from_config(p, expected_cohort=m, seed=cfg.experiment.seed,
                                           noise_multiplier=self.z,
                                           noise_cohort=self.accounting.scale.noise_cohort,
                                           reproducible=self.reproducible)
        # [audit] canaries (fl_sim/privacy/canaries.py): sampled like the real clients,
        # with q = m / N; built at the first round, when the model's shapes are known.
        self.audit_canaries = cfg.audit.canaries
        self.audit_q = m / population
        self.canaries = None
        inner.set_aggregation(Aggregation(self._aggregate, owner=type(self).__name__,
                                          sampling=p.sampling, release_every_round=True,
                                          reproducible=self.reproducible,
                                          node_clip=lambda _round: self.dp.current_clip,
                                          sums_step=self._aggregate_sums))

    def _aggregate(self, server_round: int, accepted: list[Accepted], current: list[np.ndarray]
                   ) -> tuple[list[np.ndarray], dict]:
        return self._release(server_round, current, lambda inserted: self.dp.aggregate(
            [d for _, d, _ in accepted], server_round, template=current, inserted=inserted))

    def _aggregate_sums(self, server_round: int, sums: list[list[np.ndarray]], norms: list[float],
                        current: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        """deployment.node_sums: the nodes clipped to ``dp.current_clip`` and summed."""
        return self._release(server_round, current, lambda inserted: self.dp.aggregate_sums(
            sums, norms, server_round, template=current, inserted=inserted))

    def _release(self, server_round: int, current: list[np.ndarray], aggregate
                 ) -> tuple[list[np.ndarray], dict]:
        inserted = []
        if self.audit_canaries:
            if self.canaries is None:
                from fl_sim.privacy.canaries import CanaryClients

                self.canaries = CanaryClients(self.audit_canaries, self.cfg.experiment.seed,
                                              self.audit_q, [np.shape(t) for t in current])
            inserted = self.canaries.updates(server_round, self.dp.current_clip)
        mean, report = aggregate(inserted)
        self.accounting.record_round()
        keep = ("clip_norm", "next_clip_norm", "noise_multiplier", "update_noise_multiplier",
                "noise_std", "mean_noise_std", "fraction_clipped", "num_clipped",
                "noisy_unclipped_fraction") + (("canaries_inserted",) if self.audit_canaries else ())
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

    @property
    def ledger(self):
        """The ledger of the headline epsilon (the stated deployment's in deployment mode)."""
        return self.accounting.ledger

    def round_metrics(self, server_round: int) -> dict:
        return {**self.inner.round_metrics(server_round), **self.accounting.metrics()}

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
                     f"({p.accountant}) <= {p.target_epsilon} after {self.cfg.experiment.rounds} rounds"
                     + (f" for {self.accounting.scale.describe()}." if self.accounting.run_ledger
                        is not None else "."))
        text += "\n\n" + noise_paragraph(self.reproducible)
        if self.cfg.deployment.node_sums:
            text += "\n\n" + node_sums_paragraph()
        text += "\n\n" + data_paragraph(self.cfg.data.vocab_source)
        text += ("\n\n**Diagnostics: not covered.** Exact per-round statistics (" +
                 ", ".join(DIAGNOSTIC_EXAMPLES) + ") are written only to diagnostics.jsonl, "
                 "marked non_private, never to metrics.jsonl or TensorBoard.")
        deploy = self.accounting.deployment_paragraph()
        if deploy:
            text = deploy + "\n\n" + text
        metrics = self.accounting.metrics()
        metrics.pop("accountant")
        facts["deployment"] = (None if self.accounting.run_ledger is None else
                               {k: v for k, v in metrics.items() if k.startswith(("run_", "epsilon_for"))})
        # Who inserted the [audit] canaries: the audit refuses to estimate from a stack in
        # which no aggregation did (it would measure directions that never reached the model).
        audit = {"audit_inserted_by": type(self).__name__} if self.audit_canaries else {}
        return {**self.inner.final_report(), "noise_multiplier": self.z, **metrics, **audit,
                "mechanism": "dp_fedavg", "neighboring_relation": facts["neighboring_relation"],
                "noise_source": "seed" if self.reproducible else "os-entropy",
                "privacy": {**facts, "reproducible_noise": self.reproducible},
                "privacy_statement": text}

    def extra_state(self) -> dict:
        return {**self.inner.extra_state(), **self.accounting.to_dict(),
                "dp_aggregator": self.dp.state()}

    def load_extra_state(self, extra: dict) -> None:
        self.inner.load_extra_state(extra)
        if "privacy_ledger" in extra:
            self.accounting.load_dict(extra)
            self.dp.load_state(extra["dp_aggregator"])
