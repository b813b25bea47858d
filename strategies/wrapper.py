"""A strategy around a strategy (the Flower DP-wrapper pattern), delegating by default.

DP-FedAvg and federated pruning each change one or two steps of the inner strategy and
pass everything else through unchanged, including the fl_sim hooks the server loop calls
(:data:`strategies.hooks.HOOKS`). A wrapper changes the inner strategy only through those
public methods (DP-FedAvg through ``set_aggregation``; pruning through ``after_round``),
never by setting its fields, so wrappers compose in either order: a stack that cannot
work is refused here, at construction, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from strategies.hooks import Aggregation, missing_hooks


class StrategyWrapper(Strategy):
    #: Why this wrapper may appear only once in a stack (None: any number of times).
    once_per_stack: str | None = None

    def __init__(self, inner: Strategy):
        name = type(self).__name__
        missing = missing_hooks(inner)
        if missing:
            raise TypeError(f"{name} wraps fl_sim strategies only: {type(inner).__name__} lacks "
                            f"{', '.join(missing)} (see strategies/hooks.py)")
        if self.once_per_stack and name in layers(inner):
            raise ValueError(f"{name} is already in the stack {describe(inner)}: "
                             f"{self.once_per_stack}")
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

    # -- fl_sim hooks (strategies/hooks.py) ----------------------------------------------
    def aggregate_results(self, server_round: int, results: list, rejected: int = 0):
        return self.inner.aggregate_results(server_round, results, rejected)

    def set_aggregation(self, aggregation: Aggregation) -> None:
        self.inner.set_aggregation(aggregation)

    def set_partitions(self, node_partitions: dict[int, int], num_partitions: int) -> None:
        self.inner.set_partitions(node_partitions, num_partitions)

    def set_client_cost(self, cost: Callable[[str], float] | None) -> None:
        self.inner.set_client_cost(cost)

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


def layers(strategy: Strategy) -> list[str]:
    """Class names from the outermost wrapper in, e.g. ['FederatedPruning', 'DPFedAvg', 'FedAvgDelta']."""
    out = [type(strategy).__name__]
    while isinstance(strategy, StrategyWrapper):
        strategy = strategy.inner
        out.append(type(strategy).__name__)
    return out


def describe(strategy: Strategy) -> str:
    """The stack as one expression, e.g. 'FederatedPruning(DPFedAvg(FedAvgDelta))'."""
    names = layers(strategy)
    return "(".join(names) + ")" * (len(names) - 1)
