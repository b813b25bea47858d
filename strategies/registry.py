"""Config -> strategy. New strategies register here; wrappers (DP-FedAvg or DP-FTRL, pruning)
compose on top."""

from __future__ import annotations

from strategies.fedavg_strategy import FedAvgDelta

STRATEGIES = {"fedavg": FedAvgDelta}


def _dp_fedavg(inner, cfg, client_ids):
    from strategies.dp_fedavg import DPFedAvg

    return DPFedAvg(inner, cfg, population=len(client_ids))


def _dp_ftrl(inner, cfg, client_ids):
    from strategies.dp_ftrl import DPFTRL

    return DPFTRL(inner, cfg, client_ids)


#: privacy.mechanism -> the DP wrapper around the strategy.
DP_MECHANISMS = {"dp_fedavg": _dp_fedavg, "dp_ftrl": _dp_ftrl}


def make_strategy(name: str, cfg, client_ids, experiment_toml):
    """The configured strategy, wrapped in DP-FedAvg or DP-FTRL (``privacy.mechanism``) when
    ``privacy.enabled`` and in federated pruning when ``pruning.enabled``. The two compose
    in either order (pruning masks the weights DP released either way); pruning is put
    outermost here."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}") from None
    strategy = factory(cfg, client_ids, experiment_toml)
    if cfg.privacy.enabled:
        strategy = DP_MECHANISMS[cfg.privacy.mechanism](strategy, cfg, client_ids)
    if cfg.pruning.enabled:
        from strategies.pruning_strategy import FederatedPruning

        strategy = FederatedPruning(strategy, cfg)
    return strategy
