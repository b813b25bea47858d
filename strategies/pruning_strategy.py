"""Federated magnitude pruning around any strategy (Zhu & Gupta 2017 schedule, on the server).

Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
compression" (arXiv:1710.01878), with federated rounds as the training steps; the schedule
and mask math live in :mod:`fl_sim.pruning_math` (pure NumPy, unit-tested there).

A wrapper, like DP-FedAvg: the inner strategy samples, validates, aggregates and applies the
server optimizer; this class only post-processes the new global weights through the server
loop's ``after_round`` hook, so it composes with DP-FedAvg in either order (the masks are
computed from, and applied to, weights DP already released: post-processing). On every round it

1. recomputes the masks when the schedule's sparsity has risen (a pruning round; masks only
   ever grow: an entry pruned once stays pruned), then
2. applies the current masks to the aggregated weights.

The server loop checkpoints and sends exactly what ``after_round`` returns, so clients
always receive (and train) the masked model, and the final weights are as sparse as the
schedule says. Pruned entries can receive non-zero client deltas (plain SGD on a zero
weight); they are zeroed again on the next ``after_round``, which is what the TF Model
Optimization wrapper does after every step.

Masks travel in the checkpoint's array state (``pruning_mask_<i>`` as uint8, and the
sparsity reached), next to the inner strategy's optimizer state, so a resumed run prunes
exactly as an uninterrupted one.

Which tensors are pruned: :func:`fl_sim.pruning_math.prunable_flags` on the model's variable
paths (2-D kernels and embeddings; never biases, norms or the transformer's position table).
The paths come from building the configured Keras model once, on the first round: the
strategy factory does not receive the model, and shapes alone cannot tell the position
table from a kernel.
"""

from __future__ import annotations

from logging import INFO, WARNING

import numpy as np
from flwr.common.logger import log
from flwr.serverapp.strategy import Strategy

from fl_sim.config import ExperimentConfig
from fl_sim.pruning_math import FederatedPruner, sparsity_report
from strategies.wrapper import StrategyWrapper

STATE_PREFIX = "pruning_"


def model_weight_names(cfg: ExperimentConfig, weights: list[np.ndarray]) -> list[str] | None:
    """Variable paths of the configured model, or None if its shapes do not match ``weights``."""
    from fl_sim.models import build_model

    vocab = int(weights[0].shape[0])                  # every kind starts with the embedding [V, E]
    model = build_model(cfg.model, vocab, cfg.data.seq_len, seed=cfg.experiment.seed)
    variables = model.trainable_variables
    if [tuple(v.shape) for v in variables] != [tuple(w.shape) for w in weights]:
        return None
    return [v.path for v in variables]


def check_schedule(cfg: ExperimentConfig) -> int:
    """The resolved end round of ``cfg.pruning``; ValueError naming the keys if impossible."""
    p = cfg.pruning
    end = FederatedPruner(p, cfg.experiment.rounds, [np.zeros((1, 1))]).end
    return end


class FederatedPruning(StrategyWrapper):
    """Wrap ``inner`` (any fl_sim strategy or wrapper) with the ``[pruning]`` schedule of ``cfg``."""

    once_per_stack = "two pruners would checkpoint the same pruning_mask_<i> keys"

    def __init__(self, inner: Strategy, cfg: ExperimentConfig, names: list[str] | None = None):
        super().__init__(inner)
        self.cfg = cfg
        self.names = names
        self.pruner: FederatedPruner | None = None
        self._pending_state: dict[str, np.ndarray] | None = None
        self._last: dict = {}
        # Fail at construction on a schedule that cannot run (the CLI checks it first: exit 2).
        self.end_round = check_schedule(cfg)

    def summary(self) -> None:
        self.inner.summary()
        p = self.cfg.pruning
        log(INFO, "FederatedPruning: target sparsity %s over rounds %s..%s every %s (power %s)",
            p.target_sparsity, p.begin_round, self.end_round, p.frequency, p.power)

    # -- fl_sim hooks --------------------------------------------------------------------
    def _ensure_pruner(self, weights: list[np.ndarray]) -> FederatedPruner:
        if self.pruner is None:
            names = self.names
            if names is None:
                names = model_weight_names(self.cfg, weights)
                if names is None:
                    log(WARNING, "pruning: the weights do not match the configured model; "
                                 "deciding what to prune by shape alone (2-D tensors)")
            self.pruner = FederatedPruner(self.cfg.pruning, self.cfg.experiment.rounds, weights, names)
            if self._pending_state is not None:
                self.pruner.load_state(self._pending_state)
                self._pending_state = None
        return self.pruner

    def after_round(self, server_round: int, weights: list[np.ndarray]) -> list[np.ndarray]:
        weights = self.inner.after_round(server_round, weights)
        pruner = self._ensure_pruner(weights)
        masked = pruner.after_aggregation(server_round, weights)
        rep = sparsity_report(masked, pruner.prunable)
        self._last = {"pruning_target_sparsity": pruner.sparsity,
                      "pruning_sparsity": rep["prunable_sparsity"],
                      "pruning_overall_sparsity": rep["overall_sparsity"]}
        return masked

    def round_metrics(self, server_round: int) -> dict:
        return {**self.inner.round_metrics(server_round), **self._last}

    def final_report(self) -> dict:
        out = dict(self.inner.final_report())
        if self._last:
            out.update(self._last)
        return out

    def state(self) -> dict[str, np.ndarray]:
        own = self.pruner.state() if self.pruner is not None else (self._pending_state or {})
        inner = self.inner.state()
        clash = set(own) & set(inner)
        if clash:  # would silently overwrite optimizer state in the checkpoint
            raise RuntimeError(f"pruning state keys clash with the inner strategy's: {sorted(clash)}")
        return {**inner, **own}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        own = {k: v for k, v in state.items() if k.startswith(STATE_PREFIX)}
        self.inner.load_state({k: v for k, v in state.items() if not k.startswith(STATE_PREFIX)})
        if self.pruner is not None:
            self.pruner.load_state(own)
        else:
            self._pending_state = own   # the pruner is built on the first round (needs shapes)
