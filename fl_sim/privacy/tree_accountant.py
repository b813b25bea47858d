"""Privacy accounting of DP-FTRL with tree restarts over dp-accounting 0.6.

A run of ``T`` rounds with the tree restarted every ``R`` rounds is ``T // R`` full trees
and, if ``T % R``, one partial tree. Sampling (fl_sim/privacy/tree.py) lets every client
take part at most once per tree, so each tree is one
``SingleEpochTreeAggregationDpEvent(z, steps)`` and the trees compose
(``SelfComposedDpEvent`` of the full trees, ``ComposedDpEvent`` with the partial one):
the "at most once per tree" case of that event's docstring. The event's noise multiplier
is the node noise std over the node sensitivity, ``z C / C = z``: under
``NeighboringRelation.REPLACE_SPECIAL`` (Kairouz et al. 2021, Definition 1.1: one client's
data is replaced by a special record whose clipped update is zero) one client changes one
step's clipped sum by at most ``C``. dp-accounting supports this event only in its RDP
accountant and only under that relation; its PLD accountant rejects it.

This relation is not DP-FedAvg's (replace-one with fixed-size sampling, add/remove-one
with Poisson, fl_sim/privacy/accountant.py): an epsilon of each is a statement about a
different pair of neighbouring datasets, so tables name the relation beside epsilon.
Epsilon does not depend on the population: DP-FTRL gets no amplification by sampling.
"""

from __future__ import annotations

import functools
from typing import Any

import dp_accounting
from dp_accounting import NeighboringRelation

from fl_sim.privacy.accountant import _dp_accounting_version, default_delta

RELATION = NeighboringRelation.REPLACE_SPECIAL
PLD_TREE_REASON = ("dp-accounting 0.6's PLDAccountant does not support "
                   "SingleEpochTreeAggregationDpEvent (DP-FTRL); use the RDP accountant")


def tree_event(noise_multiplier: float, rounds: int, restart_rounds: int) -> dp_accounting.DpEvent:
    """The DpEvent of ``rounds`` DP-FTRL rounds, a new tree every ``restart_rounds``."""
    z = float(noise_multiplier)
    if z < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {z}")
    if restart_rounds < 1:
        raise ValueError(f"restart_rounds must be >= 1, got {restart_rounds}")
    full, rest = divmod(int(rounds), int(restart_rounds))
    events = []
    if full:
        events.append(dp_accounting.SelfComposedDpEvent(
            dp_accounting.SingleEpochTreeAggregationDpEvent(z, int(restart_rounds)), full))
    if rest:
        events.append(dp_accounting.SingleEpochTreeAggregationDpEvent(z, rest))
    if not events:
        return dp_accounting.NoOpDpEvent()
    return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)


@functools.lru_cache(maxsize=1024)
def tree_epsilon(noise_multiplier: float, rounds: int, restart_rounds: int, delta: float,
                 orders: tuple[float, ...] | None = None) -> float:
    """Epsilon (RDP accountant, REPLACE_SPECIAL) of :func:`tree_event` at ``delta``."""
    if rounds == 0:
        return 0.0
    acc = dp_accounting.rdp.RdpAccountant(orders=None if orders is None else list(orders),
                                          neighboring_relation=RELATION)
    acc.compose(tree_event(noise_multiplier, rounds, restart_rounds))
    return float(acc.get_epsilon(delta))


class TreeLedger:
    """Rounds charged so far at one noise multiplier, and their (epsilon, delta).

    The interface of :class:`~fl_sim.privacy.accountant.PrivacyLedger` that the server loop
    and reports use (``epsilon``, ``epsilon_if_next_round``, ``epsilons``, ``delta``,
    ``rounds``, ``statement``, ``to_dict``/``from_dict``).
    """

    def __init__(self, population: int, expected_cohort: int, restart_rounds: int,
                 delta: float | None = None):
        if restart_rounds < 1:
            raise ValueError(f"restart_rounds must be >= 1, got {restart_rounds}")
        if delta is not None and delta != 0 and not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.population = int(population)
        self.expected_cohort = int(expected_cohort)
        self.restart_rounds = int(restart_rounds)
        self.delta = float(delta) if delta else default_delta(self.population)
        self.noise_multiplier: float | None = None
        self.rounds = 0

    neighboring_relation = RELATION

    def record_round(self, noise_multiplier: float, rounds: int = 1) -> None:
        z = float(noise_multiplier)
        if self.noise_multiplier is not None and z != self.noise_multiplier:
            # A tree's nodes must share one sigma for the event; fl_sim never changes z.
            raise ValueError(f"DP-FTRL ledger charged at z = {self.noise_multiplier}, not {z}")
        tree_event(z, 1, self.restart_rounds)  # validates
        self.noise_multiplier = z
        self.rounds += int(rounds)

    def unsupported_reason(self, accountant: str = "rdp") -> str | None:
        if accountant not in ("rdp", "pld"):
            raise ValueError(f"accountant {accountant!r}: expected 'rdp' or 'pld'")
        return PLD_TREE_REASON if accountant == "pld" else None

    def epsilon(self, accountant: str = "rdp", delta: float | None = None) -> float | None:
        if self.unsupported_reason(accountant):
            return None
        if not self.rounds:
            return 0.0
        return tree_epsilon(self.noise_multiplier, self.rounds, self.restart_rounds,
                            self.delta if delta is None else float(delta))

    def epsilon_if_next_round(self, noise_multiplier: float, accountant: str = "rdp",
                              rounds: int = 1, delta: float | None = None) -> float | None:
        if self.unsupported_reason(accountant):
            return None
        return tree_epsilon(float(noise_multiplier), self.rounds + int(rounds),
                            self.restart_rounds, self.delta if delta is None else float(delta))

    def epsilons(self, delta: float | None = None) -> dict[str, Any]:
        d = self.delta if delta is None else delta
        return {"rdp": self.epsilon("rdp", d), "pld": None, "pld_reason": PLD_TREE_REASON,
                "delta": d}

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "kind": "dp_ftrl", "population": self.population,
                "expected_cohort": self.expected_cohort, "restart_rounds": self.restart_rounds,
                "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "rounds": self.rounds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TreeLedger":
        if d.get("version") != 1 or d.get("kind") != "dp_ftrl":
            raise ValueError(f"not a DP-FTRL ledger (version {d.get('version')!r}, "
                             f"kind {d.get('kind')!r})")
        led = cls(d["population"], d["expected_cohort"], d["restart_rounds"], d["delta"])
        rounds = int(d["rounds"])
        if rounds < 0:
            raise ValueError(f"rounds {rounds} < 0")
        if rounds:
            led.record_round(float(d["noise_multiplier"]), rounds)
        return led

    def statement(self, clip_norm: float, server_lr: float, momentum: float
                  ) -> tuple[dict[str, Any], str]:
        eps = self.epsilons()
        z, R = self.noise_multiplier, self.restart_rounds
        full, rest = divmod(self.rounds, R)
        trees = full + (1 if rest else 0)
        facts = {
            "mechanism": "user-level DP-FTRL with tree aggregation (Kairouz et al. 2021): "
                         "per-client L2 clipping, plain binary-tree Gaussian noise on the "
                         "prefix sums of clipped updates, FTRL server step",
            "sampling": "fixed-size, at most once per tree", "population": self.population,
            "expected_cohort": self.expected_cohort, "tree_restart_rounds": R,
            "trees": trees, "noise_multipliers": [] if z is None else [z],
            "rounds": self.rounds, "delta": eps["delta"], "epsilon_rdp": eps["rdp"],
            "epsilon_pld": None, "pld_reason": PLD_TREE_REASON,
            "neighboring_relation": RELATION.name, "clip_norm": clip_norm,
            "adaptive_clipping": None,
            "accounting": f"dp-accounting {_dp_accounting_version()}",
        }
        eps_txt = "n/a" if eps["rdp"] is None else f"{eps['rdp']:.4g}"
        z_txt = "none yet" if z is None else f"{z:g}"
        md = (
            f"**Privacy.** Training used user-level DP-FTRL with tree aggregation (Kairouz et "
            f"al. 2021, \"Practical and Private (Deep) Learning without Sampling or "
            f"Shuffling\"): each client's whole update was clipped to L2 norm C = "
            f"{clip_norm:g}, the clipped updates of a round were summed, and Gaussian noise "
            f"from a plain binary tree (every node N(0, (z·C)²), noise multiplier z = "
            f"{z_txt}) was added to each prefix sum of those sums; the server released "
            f"θ = θ₀ + (η/m)·v with v ← γ·v + (noisy prefix sum), η = server.lr = "
            f"{server_lr:g}, γ = server.momentum = {momentum:g}, m = {self.expected_cohort}. "
            f"The tree restarted every R = {R} rounds (θ₀ := the current model, v := 0): "
            f"{self.rounds} rounds in {trees} tree{'s' if trees != 1 else ''}. Each round "
            f"drew m = {self.expected_cohort} of the N = {self.population} clients uniformly "
            f"from those not yet drawn in the current tree, so every client took part at most "
            f"once per tree. Over all rounds (every intermediate model released) the run "
            f"satisfies (ε, δ)-DP with δ = {eps['delta']:.3g} and ε = {eps_txt} (RDP "
            f"accountant; not available from PLD: {PLD_TREE_REASON}), computed with "
            f"dp-accounting {_dp_accounting_version()} as SingleEpochTreeAggregationDpEvent "
            f"per tree, composed over the trees. Assumptions: the neighbouring relation is "
            f"REPLACE_SPECIAL (dp-accounting NeighboringRelation.REPLACE_SPECIAL, Kairouz et "
            f"al. 2021 Definition 1.1): neighbouring datasets differ by replacing all data "
            f"of one client with a special record whose clipped update is zero, which "
            f"changes one step's clipped sum by at most C. This is a different relation "
            f"from DP-FedAvg's (replace-one or add/remove-one), so an ε of DP-FTRL and an ε "
            f"of DP-FedAvg are not the same statement. No amplification by sampling is "
            f"used: ε does not depend on N or on which clients were drawn. Each client's "
            f"entire local dataset is treated as one unit (user-level privacy); drop-outs "
            f"do not depend on the data; the noise and sampling randomness are secret; "
            f"per-round exact clipping statistics logged for diagnostics are not covered.")
        facts["markdown"] = md
        return facts, md
