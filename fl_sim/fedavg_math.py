"""Pure FedAvg update math (McMahan et al. 2017) and server optimizers.

Kept apart from Flower so it can be tested against a NumPy reference without any
orchestration (the TFF simple_fedavg split). The server treats the averaged client delta
as a pseudo-gradient (Reddi et al. 2021, "Adaptive Federated Optimization"): plain FedAvg
is server SGD with lr 1; FedAvgM adds momentum; FedAdam uses Adam moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Weights = list[np.ndarray]


def weighted_mean(updates: Sequence[Weights], weights: Sequence[float]) -> Weights:
    """Mean of per-client updates, each tensor weighted by ``weights`` (e.g. example counts).

    Accumulates in float64 so the result does not depend on the order of the
    updates beyond float64 rounding, then returns the updates' dtype.
    """
    if not updates:
        raise ValueError("weighted_mean needs at least one update")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(updates),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {len(updates)} non-negative numbers with a positive sum")
    total = w.sum()
    out = []
    for i, ref in enumerate(updates[0]):
        acc = np.zeros(ref.shape, dtype=np.float64)
        for u, wi in zip(updates, w):
            if u[i].shape != ref.shape:
                raise ValueError(f"tensor {i}: shape {u[i].shape} != {ref.shape}")
            acc += wi * u[i]
        out.append((acc / total).astype(ref.dtype))
    return out


@dataclass
class ServerSGD:
    """x <- x + lr * v, v <- momentum * v + delta (FedAvgM; momentum 0 is FedAvg)."""

    lr: float = 1.0
    momentum: float = 0.0
    velocity: Weights | None = None

    def step(self, params: Weights, delta: Weights) -> Weights:
        if self.momentum > 0:
            if self.velocity is None:
                self.velocity = [np.zeros_like(d) for d in delta]
            self.velocity = [self.momentum * v + d for v, d in zip(self.velocity, delta)]
            delta = self.velocity
        return [p + self.lr * d for p, d in zip(params, delta)]

    def state(self) -> dict[str, np.ndarray]:
        if self.velocity is None:
            return {}
        return {f"velocity_{i}": v for i, v in enumerate(self.velocity)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        keys = sorted((k for k in state if k.startswith("velocity_")), key=lambda k: int(k[9:]))
        self.velocity = [np.array(state[k]) for k in keys] or None


@dataclass
class ServerAdam:
    """FedAdam (Reddi et al. 2021, Algorithm 2): m, v moments of the pseudo-gradient."""

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    epsilon: float = 1e-3
    m: Weights | None = None
    v: Weights | None = None
    t: int = 0

    def step(self, params: Weights, delta: Weights) -> Weights:
        if self.m is None:
            self.m = [np.zeros_like(d) for d in delta]
            self.v = [np.zeros_like(d) for d in delta]
        self.t += 1
        self.m = [self.beta1 * m + (1 - self.beta1) * d for m, d in zip(self.m, delta)]
        self.v = [self.beta2 * v + (1 - self.beta2) * d * d for v, d in zip(self.v, delta)]
        return [p + self.lr * m / (np.sqrt(v) + self.epsilon)
                for p, m, v in zip(params, self.m, self.v)]

    def state(self) -> dict[str, np.ndarray]:
        if self.m is None:
            return {}
        out = {"t": np.array(self.t)}
        out.update({f"m_{i}": m for i, m in enumerate(self.m)})
        out.update({f"v_{i}": v for i, v in enumerate(self.v)})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if "t" not in state:
            return
        self.t = int(state["t"])
        n = sum(1 for k in state if k.startswith("m_"))
        self.m = [np.array(state[f"m_{i}"]) for i in range(n)]
        self.v = [np.array(state[f"v_{i}"]) for i in range(n)]


def make_server_optimizer(cfg) -> ServerSGD | ServerAdam:
    """Build the server optimizer from a ``ServerConfig``."""
    if cfg.optimizer == "sgd":
        return ServerSGD(lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return ServerAdam(lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, epsilon=cfg.epsilon)
    raise ValueError(f"server.optimizer = {cfg.optimizer!r}: expected 'sgd' or 'adam'")
