"""The composition contract between fl_sim strategies and the wrappers around them.

A wrapper (DP-FedAvg, federated pruning) changes a strategy only through public methods,
so wrappers compose in either order (Flower's DP wrappers call only ``aggregate_train``;
pfl-research chains postprocessors around one aggregation):

- the server loop's hooks, which every strategy has and every wrapper passes on
  (``HOOKS``);
- ``set_aggregation(Aggregation)``: the one step a wrapper may replace, the one that
  turns a round's accepted client updates into one update, together with what that step
  needs from the round around it (the client sampling scheme, releasing an update every
  round). Only one wrapper may replace it: a second one is refused at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: (client id, delta, metrics) of one client update that passed validation.
Accepted = tuple[str, list[np.ndarray], dict]

#: (server round, accepted updates sorted by client id, current global weights)
#: -> (mean delta, metrics the step reports for metrics.jsonl).
AggregationStep = Callable[[int, list[Accepted], list[np.ndarray]], tuple[list[np.ndarray], dict]]

#: (server round, the nodes' clipped sums in client-id order (float64, each clipped to the
#: round's ``node_clip``), the accepted clients' norms before clipping, current global
#: weights) -> what an ``AggregationStep`` returns (deployment.node_sums under DP).
SumsStep = Callable[[int, list[list[np.ndarray]], list[float], list[np.ndarray]],
                    tuple[list[np.ndarray], dict]]

#: Methods the server loop calls on the outermost strategy, which wrappers pass on.
HOOKS = ("configure_train", "aggregate_train", "aggregate_results", "before_round",
         "after_round", "round_metrics", "final_report", "state", "load_state",
         "extra_state", "load_extra_state", "set_aggregation", "set_partitions",
         "set_client_cost", "summary")


@dataclass(frozen=True)
class Aggregation:
    """The aggregation step and what it requires of the round.

    Parameters
    ----------
    step : AggregationStep
        Accepted updates -> one update.
    owner : str
        Who installed it (named in errors).
    sampling : str
        The client sampling scheme the step's guarantees assume ("fixed" or "poisson").
    release_every_round : bool
        Release an update even below ``server.min_clients`` (or with no client at all):
        under DP, skipping a round would depend on who participated.
    reproducible : bool
        Draw the cohort from ``(seed, "cohort", round)``. False: from OS entropy, so the
        seed in manifest.json does not tell who was sampled (DP with secret randomness).
    cohort : callable, optional
        Server round -> the round's cohort, replacing ``sampling`` (DP-FTRL: at most once
        per tree, so the cohort depends on the earlier rounds of the tree).
    sets_weights : bool
        The step returns the new global weights, not a mean delta: the server optimizer is
        not applied (DP-FTRL's step is FTRL on the noisy prefix sum).
    node_clip : callable, optional
        Server round -> the clip norm ``C`` of that round, for a step that clips every
        update (DP). With ``deployment.node_sums`` it goes to the nodes, which clip to it
        before they sum; ``sums_step`` then takes the nodes' clipped sums.
    sums_step : SumsStep, optional
        ``step`` for nodes' clipped sums; required with ``node_clip``.
    """

    step: AggregationStep
    owner: str
    sampling: str = "fixed"
    release_every_round: bool = False
    reproducible: bool = True
    cohort: Callable[[int], list[str]] | None = None
    sets_weights: bool = False
    node_clip: Callable[[int], float] | None = None
    sums_step: SumsStep | None = None

    def __post_init__(self) -> None:
        if (self.node_clip is None) != (self.sums_step is None):
            raise ValueError(f"{self.owner}: an Aggregation needs both node_clip and sums_step, or neither")


def missing_hooks(strategy: object) -> list[str]:
    """The HOOKS that ``strategy`` lacks (empty for any fl_sim strategy or wrapper)."""
    return [name for name in HOOKS if not callable(getattr(strategy, name, None))]
