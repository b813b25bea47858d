"""DP-FTRL with tree aggregation: user-level DP without sampling amplification.

Kairouz, McMahan, Song, Thakkar, Thakurta, Xu 2021, "Practical and Private (Deep) Learning
without Sampling or Shuffling" (DP-FTRL, DP-FTRLM); Xu et al. 2023, "Federated Learning of
Gboard Language Models with Differential Privacy" (what Gboard deploys). A wrapper, as
DP-FedAvg is (strategies/dp_fedavg.py): it replaces the inner strategy's aggregation step
and its sampling through ``set_aggregation`` and nothing else.

Round ``k`` of tree ``j`` (``R = privacy.tree_restart_rounds`` rounds per tree):

1. cohort: ``m = server.clients_per_round`` clients drawn uniformly from those not yet
   drawn in tree ``j`` (fl_sim/privacy/tree.py), so every client takes part at most
   once per tree, the condition dp-accounting's tree event needs;
2. ``s_k = sum_i clip(Delta_i, C)`` of the clients that reported (unweighted);
3. the noisy prefix sum ``S~_k = s_1 + ... + s_k + n_k``, ``n_k`` the plain binary tree's
   noise (every node ``N(0, (z C)^2)``);
4. FTRL (with momentum ``gamma = server.momentum``, DP-FTRLM): ``v_k = gamma v_{k-1} +
   S~_k`` and the released model ``theta_k = theta_0 + (eta / m) v_k``, ``eta =
   server.lr``, ``theta_0`` the model the tree started from. With ``gamma = 0`` this is
   FTRL with a quadratic regulariser centred at ``theta_0``; with ``gamma > 0`` it equals
   heavy-ball momentum on the per-round noisy increments ``S~_k - S~_{k-1}``.

Restart (the documented choice): after ``R`` rounds a new tree starts from the current
model (``theta_0 := theta``, ``v := 0``, fresh node noise and a fresh pass over the
clients). ``R`` defaults to ``floor(N / m)``, one pass over the population per tree, the
"restart every epoch" setting of Kairouz et al. 2021's federated experiments; tree
completion (Honaker's estimator, or the "virtual" completion step) is not implemented.

The tree's state (``theta_0``, the exact clipped prefix sum, ``v``, the tree's index and,
with secret noise, its OS-entropy key) is server-private checkpoint state, so a resumed
run continues the same tree with the same noise: node noise is recomputed from the key
(fl_sim/privacy/tree.py), never drawn twice for a released node.
"""

from __future__ import annotations

import numpy as np
from flwr.serverapp.strategy import Strategy

from fl_sim.config import ExperimentConfig
from fl_sim.privacy.calibration import calibrate_tree_noise
from fl_sim.privacy.clipping import clip_update
from fl_sim.privacy.deployment import DeploymentScale
from fl_sim.privacy.noise import clipped_sum
from fl_sim.privacy.release import (DIAGNOSTIC_EXAMPLES, data_paragraph, node_sums_paragraph,
                                    tree_noise_paragraph)
from fl_sim.privacy.tree import prefix_noise, tree_cohort
from fl_sim.privacy.tree_accountant import RELATION, TreeLedger
from strategies.hooks import Accepted, Aggregation
from strategies.wrapper import StrategyWrapper

_ARRAYS = ("anchor", "sum", "v")


def restart_rounds(privacy, population: int, cohort: int,
                   scale: DeploymentScale | None = None) -> int:
    """``R``: ``privacy.tree_restart_rounds``, or (0) one pass over the population, or over
    the stated deployment's if that is shorter (``floor(N' / m')``)."""
    if cohort > population:
        raise ValueError(f"server.clients_per_round = {cohort} exceeds the {population} training "
                         "clients; DP-FTRL draws each cohort from distinct clients")
    n2, m2 = ((scale.accounting_population, scale.noise_cohort) if scale is not None
              else (population, cohort))
    limit = min(population // cohort, n2 // m2)
    r = int(privacy.tree_restart_rounds) or limit
    if r * cohort > population:
        raise ValueError(
            f"privacy.tree_restart_rounds = {r} with server.clients_per_round = {cohort} needs "
            f"{r * cohort} distinct clients per tree (each at most once per tree), more than the "
            f"{population} training clients; expected <= {population // cohort} (or 0)")
    if r * m2 > n2:
        raise ValueError(
            f"privacy.tree_restart_rounds = {r} with privacy.noise_cohort_size = {m2} needs "
            f"{r * m2} distinct clients of the stated deployment per tree, more than "
            f"privacy.accounting_population = {n2}; expected <= {n2 // m2} (or 0)")
    return r


class DPFTRL(StrategyWrapper):
    once_per_stack = "the noise would be added, and the privacy cost charged, twice"

    def __init__(self, inner: Strategy, cfg: ExperimentConfig, client_ids):
        super().__init__(inner)
        p = cfg.privacy
        self.cfg = cfg
        self.client_ids = client_ids
        self.population = len(client_ids)
        self.m = cfg.server.clients_per_round
        # Deployment-scale accounting (privacy.noise_cohort_size m', accounting_population
        # N', as for DP-FedAvg: fl_sim/privacy/deployment.py): node noise std z C m / m', so
        # z C / m' on the mean; epsilon for the deployment's tree (the same R; epsilon does
        # not depend on N') and, in run_ledger, for the run itself at multiplier z m / m'.
        restart_rounds(p, self.population, self.m)  # the run's own cohort first: clearer errors
        self.scale = s = DeploymentScale.from_config(p, self.population, self.m)
        self.R = restart_rounds(p, self.population, self.m, s)
        self.calibrated = p.target_epsilon > 0
        self.z = (calibrate_tree_noise(p.target_epsilon, p.delta or None, cfg.experiment.rounds,
                                       self.R, s.accounting_population)
                  if self.calibrated else float(p.noise_multiplier))
        self.clip = float(p.clip_norm)
        self.lr, self.momentum = float(cfg.server.lr), float(cfg.server.momentum)
        self.ledger = TreeLedger(s.accounting_population, s.noise_cohort, self.R, p.delta or None)
        self.run_ledger = (TreeLedger(self.population, self.m, self.R, p.delta or None)
                           if s.simulated else None)
        self.reproducible = p.reproducible_noise != "false"
        # The current tree: its index, key (secret mode) and arrays (None until its first round).
        self.tree = -1
        self.secret: int | None = None
        self.anchor = self.sum = self.v = None
        inner.set_aggregation(Aggregation(self._aggregate, owner=type(self).__name__,
                                          sampling="at most once per tree",
                                          release_every_round=True,
                                          reproducible=self.reproducible,
                                          cohort=self._cohort, sets_weights=True,
                                          node_clip=lambda _round: self.clip,
                                          sums_step=self._aggregate_sums))

    # -- the tree ------------------------------------------------------------------------
    def position(self, server_round: int) -> tuple[int, int]:
        """``(tree, step)`` of a round: tree 0, 1, ... and step 1 .. R."""
        tree, k = divmod(server_round - 1, self.R)
        return tree, k + 1

    def _enter(self, tree: int) -> None:
        if tree == self.tree:
            return
        self.tree = tree
        # Secret mode: a fresh 128-bit key per tree from OS entropy, kept only in memory and
        # in the owner-only checkpoints (the noise of released nodes must survive a resume).
        self.secret = None if self.reproducible else int(np.random.SeedSequence().entropy)
        self.anchor = self.sum = self.v = None

    def _key(self) -> int:
        return self.cfg.experiment.seed if self.reproducible else self.secret

    def _cohort(self, server_round: int) -> list[str]:
        tree, k = self.position(server_round)
        self._enter(tree)
        idx = tree_cohort(self.population, self.m, self._key(), tree, k)
        return [self.client_ids[int(i)] for i in idx]

    def _aggregate(self, server_round: int, accepted: list[Accepted], current: list[np.ndarray]
                   ) -> tuple[list[np.ndarray], dict]:
        clipped, norms = [], []
        for _, delta, _ in accepted:
            c, norm, _ = clip_update(delta, self.clip)
            clipped.append(c)
            norms.append(norm)
        return self._step(server_round, clipped, norms, current)

    def _aggregate_sums(self, server_round: int, sums: list[list[np.ndarray]], norms: list[float],
                        current: list[np.ndarray]) -> tuple[list[np.ndarray], dict]:
        """deployment.node_sums: the nodes clipped to ``self.clip`` and summed."""
        return self._step(server_round, list(sums), norms, current)

    def _step(self, server_round: int, clipped: list, norms: list[float], current: list[np.ndarray]
              ) -> tuple[list[np.ndarray], dict]:
        """Clipped updates (or nodes' sums of them) -> the round's noisy prefix sum -> FTRL."""
        tree, k = self.position(server_round)
        self._enter(tree)
        if k == 1 or self.anchor is None:
            if k != 1:
                raise RuntimeError(f"round {server_round} is step {k} of tree {tree}, but the "
                                   "tree's state was not restored")
            self.anchor = [np.array(w) for w in current]
            self.sum = [np.zeros(np.shape(w), np.float64) for w in current]
            self.v = [np.zeros(np.shape(w), np.float64) for w in current]
        n_clipped = sum(1 for n in norms if n > self.clip)  # clip_update's rule
        round_sum = clipped_sum(clipped, template=current)
        self.sum = [a + b for a, b in zip(self.sum, round_sum)]
        noise_std = self.z * self.clip * self.scale.noise_scale
        noise = prefix_noise(noise_std, self._key(), tree, k, current)
        self.v = [self.momentum * v + s + n for v, s, n in zip(self.v, self.sum, noise)]
        scale = self.lr / self.m
        new = [(a.astype(np.float64) + scale * v).astype(a.dtype) for a, v in zip(self.anchor, self.v)]
        self.ledger.record_round(self.z)
        if self.run_ledger is not None:
            self.run_ledger.record_round(self.scale.run_noise_multiplier(self.z))
        prefix_std = noise_std * np.sqrt(bin(k).count("1"))
        return new, {"clip_norm": self.clip, "noise_multiplier": self.z, "noise_std": noise_std,
                     "mean_noise_std": noise_std / self.m,
                     "prefix_noise_std": float(prefix_std), "tree": tree, "tree_step": k,
                     "num_clipped": n_clipped,
                     "fraction_clipped": n_clipped / len(norms) if norms else 0.0}

    # -- fl_sim hooks --------------------------------------------------------------------
    def before_round(self, server_round: int) -> str | None:
        p = self.cfg.privacy
        if p.max_epsilon > 0:
            nxt = self.ledger.epsilon_if_next_round(self.z, "rdp")
            if nxt > p.max_epsilon:
                return (f"privacy budget: epsilon (rdp, {RELATION.name}) would reach "
                        f"{round(nxt, 4)} > privacy.max_epsilon = {p.max_epsilon} at delta = "
                        f"{self.ledger.delta:.3g} after round {server_round}")
        return self.inner.before_round(server_round)

    def metrics(self) -> dict:
        eps = self.ledger.epsilons()
        out = {"epsilon_rdp": eps["rdp"], "epsilon_pld": None, "delta": eps["delta"],
               "accountant": "rdp", "mechanism": "dp_ftrl",
               "neighboring_relation": RELATION.name, "tree_restart_rounds": self.R}
        if self.run_ledger is not None:
            s, run = self.scale, self.run_ledger.epsilons()
            out.update(epsilon_for=f"deployment N'={s.accounting_population:,}, m'={s.noise_cohort:,}",
                       run_epsilon_rdp=run["rdp"], run_epsilon_pld=None, run_delta=run["delta"],
                       run_noise_multiplier=s.run_noise_multiplier(self.z))
        return out

    def deployment_paragraph(self) -> str:
        """The statement's warning that epsilon is for the stated deployment (or '')."""
        if self.run_ledger is None:
            return ""
        s, run = self.scale, self.run_ledger.epsilons()
        eps = "n/a" if run["rdp"] is None else f"{run['rdp']:.4g}"
        return (
            f"**Epsilon below is for a stated deployment, not for this simulation.** This run "
            f"trained m = {s.cohort:,} of N = {s.population:,} clients per round but gave every "
            f"tree node the noise a cohort of m' = {s.noise_cohort:,} would get (node std "
            f"z·C·m/m', so z·C/m' on the mean update), and its (ε, δ) is accounted for "
            f"{s.describe()}, each client at most once per tree of R = {self.R} rounds "
            f"(privacy.noise_cohort_size, privacy.accounting_population). The simulated run "
            f"itself, as executed on its N = {s.population:,} clients, has node noise multiplier "
            f"z·m/m' = {s.run_noise_multiplier(self.z):.4g} and satisfies only ε = {eps} (RDP, "
            f"REPLACE_SPECIAL) at δ = {run['delta']:.3g}: that is the guarantee for the clients "
            f"whose data this run used.")

    def round_metrics(self, server_round: int) -> dict:
        return {**self.inner.round_metrics(server_round), **self.metrics()}

    def final_report(self) -> dict:
        facts, text = self.ledger.statement(self.clip, self.lr, self.momentum)
        if self.calibrated:
            text += (f"\n\nThe noise multiplier z = {self.z:.6g} was calibrated so that epsilon "
                     f"(rdp) <= {self.cfg.privacy.target_epsilon} after "
                     f"{self.cfg.experiment.rounds} rounds.")
        text += "\n\n" + tree_noise_paragraph(self.reproducible)
        if self.cfg.deployment.node_sums:
            text += "\n\n" + node_sums_paragraph()
        text += "\n\n" + data_paragraph(self.cfg.data.vocab_source)
        text += ("\n\n**Diagnostics: not covered.** Exact per-round statistics (" +
                 ", ".join(DIAGNOSTIC_EXAMPLES) + ") are written only to diagnostics.jsonl, "
                 "marked non_private, never to metrics.jsonl or TensorBoard.")
        deploy = self.deployment_paragraph()
        if deploy:
            text = deploy + "\n\n" + text
        metrics = self.metrics()
        metrics.pop("accountant")
        facts["deployment"] = (None if self.run_ledger is None else
                               {k: v for k, v in metrics.items() if k.startswith(("run_", "epsilon_for"))})
        return {**self.inner.final_report(), "noise_multiplier": self.z, **metrics,
                "noise_source": "seed" if self.reproducible else "os-entropy",
                "privacy": {**facts, "reproducible_noise": self.reproducible},
                "privacy_statement": text}

    def state(self) -> dict[str, np.ndarray]:
        out = dict(self.inner.state())
        if self.anchor is not None:
            for name in _ARRAYS:
                out.update({f"dpftrl_{name}_{i}": a for i, a in enumerate(getattr(self, name))})
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        mine = {k: v for k, v in state.items() if k.startswith("dpftrl_")}
        self.inner.load_state({k: v for k, v in state.items() if not k.startswith("dpftrl_")})
        for name in _ARRAYS:
            keys = sorted((k for k in mine if k.startswith(f"dpftrl_{name}_")),
                          key=lambda k: int(k.rsplit("_", 1)[1]))
            setattr(self, name, [np.array(mine[k]) for k in keys] or None)

    def extra_state(self) -> dict:
        return {**self.inner.extra_state(), "dp_ftrl": {
            "ledger": self.ledger.to_dict(), "noise_multiplier": self.z, "tree": self.tree,
            "run_ledger": None if self.run_ledger is None else self.run_ledger.to_dict(),
            "restart_rounds": self.R,
            "secret": None if self.secret is None else str(self.secret)}}

    def load_extra_state(self, extra: dict) -> None:
        self.inner.load_extra_state(extra)
        d = extra.get("dp_ftrl")
        if d is None:
            return
        if int(d["restart_rounds"]) != self.R:
            raise ValueError(f"checkpoint's tree restarts every {d['restart_rounds']} rounds, "
                             f"this run every {self.R}")
        self.ledger = TreeLedger.from_dict(d["ledger"])
        if self.run_ledger is not None and d.get("run_ledger"):
            self.run_ledger = TreeLedger.from_dict(d["run_ledger"])
        self.tree = int(d["tree"])
        self.secret = None if d["secret"] is None else int(d["secret"])
