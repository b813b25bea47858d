"""FedAvg over client deltas with a server optimizer (McMahan et al. 2017; Reddi et al. 2021).

The Flower ``Strategy`` interface (configure_train / aggregate_train) with fl_sim's seeded
client sampling and per-client validation; the update math lives in ``fl_sim.fedavg_math``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fl_sim import protocol
from fl_sim.config import ExperimentConfig
from fl_sim.data.population import ClientIds
from fl_sim.fedavg_math import make_server_optimizer, weighted_mean
from fl_sim.partitioning import ClientPartitions, partition_clients, split_over_nodes
from fl_sim.sampling import sample_clients
from fl_sim.updates import NodeSum, check_total, mean_of_sums, sum_updates, update_weight, validate_update
from strategies.hooks import Accepted, Aggregation


class FedAvgDelta(Strategy):
    """FedAvg / FedAvgM / FedAdam on client deltas, one update per sampled client."""

    def __init__(self, cfg: ExperimentConfig, client_ids: list[str], experiment_toml: str):
        self.cfg = cfg
        # A lazy population (ClientIds, a range) stays lazy: a list of a million ids is ~65 MB.
        self.client_ids = client_ids if isinstance(client_ids, ClientIds) else list(client_ids)
        self.experiment_toml = experiment_toml
        self.optimizer = make_server_optimizer(cfg.server)
        self.current: list[np.ndarray] | None = None
        self.last_cohort: list[str] = []
        # The step that turns accepted client updates into one update; a wrapper may
        # replace it once, through set_aggregation (DP: clip -> sum -> noise -> fixed
        # denominator, with its sampling scheme and a release every round).
        self.aggregation = Aggregation(self.weighted_average, owner=type(self).__name__)
        # A deployment with partitioned SuperNodes sets these (see split_over_nodes).
        self.node_partitions: dict[int, int] | None = None
        self.client_partitions: ClientPartitions | None = None
        self.num_partitions = 0
        self.last_plan: dict[int, list[str]] = {}
        # Client id -> its SGD steps this round, when the server knows the data sizes (it
        # does in simulation): nodes then get equal work, not equal client counts.
        self.client_cost: Callable[[str], float] | None = None
        # The clip norm this round's nodes were sent (DP with deployment.node_sums), or None.
        self.node_clip: float | None = None

    def weighted_average(self, server_round: int, accepted: list[Accepted],
                         current: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        weights = [m["num_examples"] if self.cfg.server.weighted else 1.0 for _, _, m in accepted]
        return weighted_mean([d for _, d, _ in accepted], weights), {}

    # -- Flower Strategy interface -------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.current = arrays.to_numpy_ndarrays()
        if self.aggregation.cohort is not None:
            cohort = self.aggregation.cohort(server_round)
        else:
            cohort = sample_clients(self.client_ids, self.cfg.server.clients_per_round,
                                    self.cfg.experiment.seed, server_round, self.aggregation.sampling,
                                    None if self.aggregation.reproducible else np.random.default_rng())
        self.last_cohort = cohort
        plan = split_over_nodes(cohort, list(grid.get_node_ids()), self.node_partitions,
                                self.client_partitions, self.client_cost)
        self.last_plan = plan
        # Under DP with node sums the nodes clip to this round's C (the adaptive clip's
        # current value), kept to check their sums against.
        self.node_clip = (self.aggregation.node_clip(server_round)
                          if self.cfg.deployment.node_sums and self.aggregation.node_clip else None)
        messages = [protocol.train_message(node, arrays, server_round, cids, self.experiment_toml,
                                           clip_norm=self.node_clip)
                    for node, cids in plan.items()]
        if self.node_partitions is not None:
            for msg in messages:  # the node checks it owns every client it is sent
                msg.content[protocol.CONFIG]["num-partitions"] = self.num_partitions
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        results, sums, failed, rejected, answered, raised = [], [], 0, 0, 0, 0
        self.last_failure = None  # why this round's last failed node or client failed
        for reply in replies:
            answered += 1
            if reply.has_error():
                failed += 1
                self.last_failure = f"node {reply.metadata.src_node_id}: {reply.error.reason}"
                log(INFO, "round %s: node %s failed: %s", server_round,
                    reply.metadata.src_node_id, reply.error.reason)
                continue
            try:
                node_sum = protocol.read_node_sum(reply)
                if node_sum is not None:
                    sums.append(node_sum)
                else:
                    results.extend(protocol.read_train_reply(reply))
            except ValueError as exc:
                rejected += 1
                log(INFO, "round %s: malformed reply rejected: %s", server_round, exc)
            # Clients whose training raised: failed one by one, not with their node.
            for cid, reason in protocol.read_train_failures(reply):
                raised += 1
                self.last_failure = f"client {cid}: {reason}"
                log(INFO, "round %s: client %s failed: %s", server_round, cid, reason)
        if sums:
            new, metrics = self.aggregate_node_sums(server_round, sums, results, rejected)
        else:
            new, metrics = self.aggregate_results(server_round, results, rejected)
        metrics["clients_raised"] = raised
        # Nodes that replied with an error or not at all before server.round_timeout.
        metrics["nodes_failed"] = failed + max(0, len(self.last_plan) - answered)
        return (None if new is None else ArrayRecord(new)), MetricRecord(metrics)

    def aggregate_results(self, server_round: int, results: list[Accepted],
                          rejected: int = 0) -> tuple[list[np.ndarray] | None, dict]:
        """Validate each client's update, average the valid ones, apply the server optimizer.

        Pure NumPy (no Flower types), so it is tested directly against a NumPy FedAvg.
        """
        accepted = []
        for cid, delta, metrics in results:
            problem = self.validate(delta, metrics)
            if problem:
                rejected += 1
                log(INFO, "round %s: client %s rejected: %s", server_round, cid, problem)
            else:
                accepted.append((cid, delta, metrics))
        # Replies arrive in scheduling order; sorting makes the float sums reproducible.
        accepted.sort(key=lambda t: t[0])
        return self._finish(server_round, [m for _, _, m in accepted], rejected,
                            lambda: self.aggregation.step(server_round, accepted, self.current))

    def aggregate_node_sums(self, server_round: int, sums: list[NodeSum],
                            results: list[Accepted] = (), rejected: int = 0
                            ) -> tuple[list[np.ndarray] | None, dict]:
        """``aggregate_results`` for nodes that validated and summed their own clients
        (``deployment.node_sums``): the same metrics, the same mean up to float64 summation
        order. ``results``: per-client updates of nodes that did not sum (summed here)."""
        own = type(self).__name__
        clip = None
        if self.aggregation.owner != own:
            clip = self.node_clip
            if self.aggregation.sums_step is None or clip is None:
                raise ValueError(f"round {server_round}: nodes returned summed updates "
                                 f"(deployment.node_sums), but {self.aggregation.owner} needs each "
                                 "client's update")
        if results:
            sums = [*sums, sum_updates(results, self.current, weighted=self.cfg.server.weighted,
                                       max_update_bytes=self.cfg.server.max_update_bytes,
                                       clip_norm=clip)]
        usable, accepted, norms = [], [], []
        for node_sum in sums:
            problem = None if node_sum.total is None else check_total(node_sum.total, self.current)
            if problem is None and node_sum.clip_norm != clip:
                # A sum clipped to another C (or not at all) breaks the sensitivity the noise
                # is calibrated for: its clients are rejected.
                problem = (f"clipped to {node_sum.clip_norm}, the round's clip norm is {clip}"
                           if clip is not None else f"clipped to {node_sum.clip_norm}; "
                           "this round sums unclipped updates")
            for cid, metrics, why in node_sum.clients:
                if why is None and problem is not None:
                    why = f"its node's summed update: {problem}"
                if why:
                    rejected += 1
                    log(INFO, "round %s: client %s rejected: %s", server_round, cid, why)
                else:
                    accepted.append((cid, metrics))
            if node_sum.total is not None and problem is None:
                usable.append(node_sum)
                norms.extend(node_sum.norms or [])
        accepted.sort(key=lambda t: t[0])
        # Replies arrive in scheduling order: add the nodes' sums in client-id order.
        totals = [s.total for s in sorted(usable, key=lambda s: s.accepted()[0][0])]
        if clip is not None:
            return self._finish(server_round, [m for _, m in accepted], rejected,
                                lambda: self.aggregation.sums_step(server_round, totals, norms,
                                                                   self.current))
        weight = sum(update_weight(m, self.cfg.server.weighted) for _, m in accepted)
        return self._finish(server_round, [m for _, m in accepted], rejected,
                            lambda: (mean_of_sums(totals, weight, self.current), {}))

    def _finish(self, server_round: int, accepted: list[dict], rejected: int,
                step: Callable[[], tuple[list[np.ndarray], dict]]
                ) -> tuple[list[np.ndarray] | None, dict]:
        """Round metrics from the accepted clients' metrics; ``step()`` gives the mean delta."""
        sampled = len(self.last_cohort)
        metrics = {"clients_sampled": sampled, "clients_completed": len(accepted),
                   "clients_failed": max(0, sampled - len(accepted) - rejected),
                   "clients_rejected": rejected}
        if not self.aggregation.release_every_round and (
                not accepted or len(accepted) < self.cfg.server.min_clients):
            metrics["skipped"] = 1
            return None, metrics
        mean_delta, report = step()
        metrics.update(report)
        new = (mean_delta if self.aggregation.sets_weights
               else self.optimizer.step(self.current, mean_delta))
        n = float(sum(m["num_examples"] for m in accepted))
        if n:
            metrics["train_loss"] = float(sum(m["train_loss"] * m["num_examples"]
                                              for m in accepted) / n)
        metrics["train_examples"] = int(n)
        metrics["skipped"] = 0
        return new, metrics

    def configure_evaluate(self, server_round, arrays, config, grid) -> Iterable[Message]:
        return []  # evaluation is centralized, on held-out clients (see server_app)

    def aggregate_evaluate(self, server_round, replies) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        log(INFO, "FedAvgDelta: %s clients/round, server %s lr=%s", self.cfg.server.clients_per_round,
            self.cfg.server.optimizer, self.cfg.server.lr)

    # -- fl_sim extensions ---------------------------------------------------------------
    def validate(self, delta: list[np.ndarray], metrics: dict) -> str | None:
        """Why a client's update is rejected, or None (the rule a summing node applies too)."""
        return validate_update(delta, metrics, self.current, self.cfg.server.max_update_bytes)

    # -- composition hooks (strategies/hooks.py): what wrappers and the server loop set ---
    def set_aggregation(self, aggregation: Aggregation) -> None:
        """Replace the aggregation step; refused if a wrapper already replaced it."""
        own = type(self).__name__
        if self.aggregation.owner != own:
            raise ValueError(
                f"{aggregation.owner} cannot replace the aggregation step of {own}: "
                f"{self.aggregation.owner} already did, and only one wrapper may")
        if aggregation.sampling not in ("fixed", "poisson") and aggregation.cohort is None:
            raise ValueError(f"{aggregation.owner}: unknown sampling scheme {aggregation.sampling!r}")
        self.aggregation = aggregation

    def set_client_cost(self, cost: Callable[[str], float] | None) -> None:
        """Client id -> its SGD steps this round (see split_over_nodes)."""
        self.client_cost = cost

    def set_partitions(self, node_partitions: dict[int, int], num_partitions: int) -> None:
        """Deployment: node id -> partition id; clients are sliced by partition_clients."""
        self.node_partitions = dict(node_partitions)
        self.num_partitions = num_partitions
        self.client_partitions = partition_clients(self.client_ids, num_partitions)

    # -- hooks the server loop calls (wrappers extend them) -------------------------------
    def before_round(self, server_round: int) -> str | None:
        """A reason to stop before this round (e.g. a privacy budget), or None to go on."""
        return None

    def after_round(self, server_round: int, weights: list[np.ndarray]) -> list[np.ndarray]:
        """Post-process the new global weights (e.g. pruning masks)."""
        return weights

    def round_metrics(self, server_round: int) -> dict:
        """Extra per-round metrics for metrics.jsonl (e.g. epsilon so far)."""
        return {}

    def final_report(self) -> dict:
        """Extra fields for the run's final row and summary (e.g. a privacy statement)."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint (server optimizer state)."""
        return self.optimizer.state()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.optimizer.load_state(state)

    def extra_state(self) -> dict:
        """JSON-serialisable state to checkpoint (e.g. the privacy ledger)."""
        return {}

    def load_extra_state(self, extra: dict) -> None:
        pass
