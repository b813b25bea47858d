"""Config -> strategy. New strategies register here; wrappers (DP, pruning) compose on top."""

from __future__ import annotations

from strategies.fedavg_strategy import FedAvgDelta

STRATEGIES = {"fedavg": FedAvgDelta}


def make_strategy(name: str, cfg, client_ids, experiment_toml):
    """The configured strategy, wrapped in DP-FedAvg when ``privacy.enabled`` and in
    federated pruning when ``pruning.enabled``. The two compose in either order (pruning
    masks the weights DP released either way); pruning is put outermost here."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}") from None
    strategy = factory(cfg, client_ids, experiment_toml)
    if cfg.privacy.enabled:
        from strategies.dp_fedavg import DPFedAvg

        strategy = DPFedAvg(strategy, cfg, population=len(client_ids))
    if cfg.pruning.enabled:
        from strategies.pruning_strategy import FederatedPruning

        strategy = FederatedPruning(strategy, cfg)
    return strategy
