"""A strategy around a strategy (the Flower DP-wrapper pattern), delegating by default.

DP-FedAvg and federated pruning each change one or two steps of the inner strategy (the
aggregation, the weights after a round, the checkpointed state) and must pass everything
else through unchanged, including the fl_sim hooks the server loop calls
(``before_round``, ``after_round``, ``round_metrics``, ``final_report``, ``state`` /
``load_state``, ``extra_state`` / ``load_extra_state``). Subclasses override only what they
change and call ``self.inner`` for the rest, so wrappers compose in any order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    def __init__(self, inner: Strategy):
        self.inner = inner

    # -- Flower Strategy interface -------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()

    # -- fl_sim hooks (see strategies/fedavg.py) -----------------------------------------
    def before_round(self, server_round: int) -> str | None:
        return self.inner.before_round(server_round)

    def after_round(self, server_round: int, weights: list[np.ndarray]) -> list[np.ndarray]:
        return self.inner.after_round(server_round, weights)

    def round_metrics(self, server_round: int) -> dict:
        return self.inner.round_metrics(server_round)

    def final_report(self) -> dict:
        return self.inner.final_report()

    def state(self) -> dict[str, np.ndarray]:
        return self.inner.state()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.inner.load_state(state)

    def extra_state(self) -> dict:
        return self.inner.extra_state()

    def load_extra_state(self, extra: dict) -> None:
        self.inner.load_extra_state(extra)


def innermost(strategy: Strategy) -> Strategy:
    """The strategy at the core of any stack of wrappers (e.g. pruning around DP around FedAvg)."""
    while isinstance(strategy, StrategyWrapper):
        strategy = strategy.inner
    return strategy
