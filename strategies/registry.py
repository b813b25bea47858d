"""Config name -> strategy factory. New strategies register here, nowhere else."""

from __future__ import annotations

from strategies.fedavg import FedAvgDelta

STRATEGIES = {"fedavg": FedAvgDelta}


def make_strategy(name: str, cfg, client_ids, experiment_toml):
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}") from None
    return factory(cfg, client_ids, experiment_toml)
