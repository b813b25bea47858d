"""Canary clients for the one-shot empirical privacy audit (``[audit] canaries = k``).

Andrew, Kairouz, Oh, Oprea, McMahan, Suriyakumar, "One-shot Empirical Privacy Estimation
for Federated Learning" (ICLR 2024). Canary ``j`` has one fixed random unit direction
``c_j`` in the space of the flattened model (``rng(seed, "audit-canary", j)``, a standard
normal vector normalised). Every round each canary joins independently with the real
clients' inclusion probability ``q = m / N`` (``rng(seed, "audit-canary-cohort", round)``;
for fixed-size sampling that is each real client's marginal probability), and a canary that
joins submits ``C c_j``, the clip norm of that round, into the clipped sum before the noise.
Canaries take no real client's slot and leave the denominator ``m`` alone, so the real
clients' mechanism is unchanged up to a shift by a vector that does not depend on their
data: the accountant's (epsilon, delta) for them is untouched.

Any DP aggregation can insert them: it asks :meth:`CanaryClients.updates` for the round's
canary updates at its clip norm and adds them to its clipped sum (DP-FedAvg does, through
``fl_sim.privacy.DPAggregator.aggregate(inserted=...)``).

After training, :func:`audit` measures the cosine of every inserted canary's direction and
of ``k`` never-inserted directions (``rng(seed, "audit-unobserved", j)``) with the final
model change and estimates epsilon_emp (:mod:`fl_sim.privacy.empirical`). Everything is a
function of the seed, so a resumed run inserts exactly the canaries an uninterrupted one
would, and the audit needs no state beyond the initial and final weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fl_sim.privacy import empirical
from fl_sim.seeding import rng

#: Bootstrap resamples of the estimate's confidence interval (about 10 ms each).
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def _direction(seed: int, purpose: str, j: int, dim: int) -> np.ndarray:
    v = rng(seed, purpose, j).standard_normal(dim)
    return v / np.linalg.norm(v)


class CanaryClients:
    """``k`` canaries of one run: their directions and the rounds they join.

    Parameters
    ----------
    count : int
        ``k``.
    seed : int
        The run seed (directions and sampling derive from it).
    sampling_probability : float
        ``q = m / N`` of the real clients.
    shapes : sequence of tuple
        The model's tensor shapes: a direction is one vector over all of them.
    """

    def __init__(self, count: int, seed: int, sampling_probability: float,
                 shapes: Sequence[tuple[int, ...]]):
        if count < 1:
            raise ValueError(f"canaries must be >= 1, got {count}")
        if not 0 < sampling_probability <= 1:
            raise ValueError(f"sampling probability must be in (0, 1], got {sampling_probability}")
        self.count, self.seed = int(count), int(seed)
        self.q = float(sampling_probability)
        self.shapes = [tuple(int(n) for n in s) for s in shapes]
        self.dim = int(sum(math.prod(s) for s in self.shapes))

    def direction(self, j: int) -> np.ndarray:
        """Canary ``j``'s unit direction (flat, float64)."""
        return _direction(self.seed, "audit-canary", j, self.dim)

    def unobserved_direction(self, j: int) -> np.ndarray:
        """The ``j``-th never-inserted direction (the paper's "unobserved canaries")."""
        return _direction(self.seed, "audit-unobserved", j, self.dim)

    def sampled(self, server_round: int) -> list[int]:
        """The canaries that join round ``server_round``."""
        u = rng(self.seed, "audit-canary-cohort", server_round).random(self.count)
        return [int(j) for j in np.flatnonzero(u < self.q)]

    def times_inserted(self, rounds: int) -> list[int]:
        """How often each canary joined rounds 1..``rounds``."""
        counts = np.zeros(self.count, dtype=int)
        for t in range(1, rounds + 1):
            counts[self.sampled(t)] += 1
        return counts.tolist()

    def unflatten(self, flat: np.ndarray, dtypes: Sequence[np.dtype] | None = None
                  ) -> list[np.ndarray]:
        out, at = [], 0
        for i, s in enumerate(self.shapes):
            n = math.prod(s)
            t = flat[at:at + n].reshape(s)
            out.append(t if dtypes is None else t.astype(dtypes[i]))
            at += n
        return out

    def updates(self, server_round: int, clip_norm: float) -> list[list[np.ndarray]]:
        """This round's canary updates: ``clip_norm * c_j`` for every canary that joins,
        shaped like the model (float64: they are summed in float64 with the clipped
        client updates)."""
        return [self.unflatten(clip_norm * self.direction(j)) for j in self.sampled(server_round)]


def flatten(weights: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def cosines(directions, change: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(change))
    return np.array([float(d @ change) / norm for d in directions])


def audit(canaries: CanaryClients, initial: Sequence[np.ndarray], final: Sequence[np.ndarray],
          *, delta: float, rounds: int, accounted: dict[str, float | None]) -> dict:
    """The audit of one finished run: what ``audit.json`` holds.

    ``accounted``: the accountant's epsilons of the run itself at ``delta`` (``rdp``,
    ``pld``; None where unsupported), for the comparison.
    """
    change = flatten(final) - flatten(initial)
    if change.size != canaries.dim:
        raise ValueError(f"the model has {change.size} parameters, the canaries {canaries.dim}")
    out = {
        "method": ("Andrew et al. 2024, one-shot empirical privacy estimation (final-model "
                   "threat model): cosines of the canary directions with the final model "
                   "change; inserted canaries fitted with N(mean, std^2), never-inserted "
                   "ones taken as N(0, 1/d); epsilon_emp is the epsilon of distinguishing "
                   "the two Gaussians at delta (every test, both directions)"),
        "canaries": canaries.count, "dimension": canaries.dim, "delta": delta,
        "rounds": rounds, "sampling_probability": canaries.q,
        "accounted_epsilon": accounted,
        "diagnostic_not_guarantee": True,
    }
    norm = float(np.linalg.norm(change))
    if not math.isfinite(norm):
        return {**out, "epsilon_emp": None,
                "reason": "the final model change is not finite (the run diverged)"}
    if not norm > 0:
        return {**out, "epsilon_emp": None,
                "reason": "the final model equals the initial one: no cosine is defined"}
    observed = cosines((canaries.direction(j) for j in range(canaries.count)), change)
    unobserved = cosines((canaries.unobserved_direction(j) for j in range(canaries.count)), change)
    eps = empirical.estimate(observed, canaries.dim, delta)
    lo, hi = empirical.bootstrap(observed, canaries.dim, delta,
                                 rng(canaries.seed, "audit-bootstrap"),
                                 resamples=BOOTSTRAP_RESAMPLES, level=CONFIDENCE)
    sd = float(np.sqrt(canaries.dim))
    finite = [e for e in (accounted.get("rdp"), accounted.get("pld")) if e is not None]
    return {
        **out, "epsilon_emp": eps, "epsilon_emp_capped": eps >= empirical.EPSILON_CAP,
        "epsilon_cap": empirical.EPSILON_CAP,
        "epsilon_emp_ci": [lo, hi], "confidence": CONFIDENCE,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "below_accounted": (eps < min(finite)) if finite else None,
        "observed": {"mean": float(observed.mean()), "std": float(observed.std(ddof=1)),
                     "mean_sqrt_d": float(observed.mean()) * sd,
                     "std_sqrt_d": float(observed.std(ddof=1)) * sd,
                     "cosines": observed.tolist(),
                     "times_inserted": canaries.times_inserted(rounds)},
        # A check of the null: N(0, 1/d) means mean ~ 0 and std * sqrt(d) ~ 1.
        "unobserved": {"mean": float(unobserved.mean()), "std": float(unobserved.std(ddof=1)),
                       "mean_sqrt_d": float(unobserved.mean()) * sd,
                       "std_sqrt_d": float(unobserved.std(ddof=1)) * sd,
                       "cosines": unobserved.tolist()},
    }


def statement(report: dict) -> str:
    """The privacy statement's paragraph on the audit."""
    k = report["canaries"]
    head = (f"**Empirical privacy audit (audit.canaries = {k}): a diagnostic, not a guarantee.** "
            f"{k} synthetic canary clients were inserted into this run (Andrew et al. 2024, "
            "one-shot empirical privacy estimation). Each has a fixed random unit direction, "
            "joins every round with the real clients' sampling probability "
            f"q = {report['sampling_probability']:.4g}, independently, and when it joins adds "
            "its direction scaled to the clip norm C to the clipped sum before the noise. "
            "They took no real client's place and left the denominator unchanged, and they add "
            "nothing to the accounting of the real clients (their updates do not depend on any "
            "client's data), but they are part of the released model.")
    eps = report.get("epsilon_emp")
    if eps is None:
        return head + f" No estimate: {report.get('reason')}."
    lo, hi = report["epsilon_emp_ci"]
    acc = report["accounted_epsilon"]
    accs = ", ".join(f"{v:.4g} ({name.upper()})" for name, v in acc.items() if v is not None)
    capped = " (the estimator's cap: at least this)" if report["epsilon_emp_capped"] else ""
    return head + (
        f" Estimated from the cosines of the {k} inserted and {k} never-inserted directions "
        f"with the final model change (d = {report['dimension']:,} parameters): "
        f"ε_emp = {eps:.3g}{capped} at δ = {report['delta']:.3g} "
        f"({report['confidence']:.0%} bootstrap interval over canaries {lo:.3g} to {hi:.3g}), "
        f"beside the accountant's ε = {accs} for this run. ε_emp estimates what the final "
        "model alone reveals about one canary to an adversary who knows the canary "
        "directions, under a Gaussian fit of the cosines; it is a lower-bound-style "
        "diagnostic of this one run, not a bound: a stronger adversary (one who sees every "
        "round's update, or crafts its canaries) can learn more, and only the accountant's "
        "(ε, δ) is a guarantee. Details: audit.json.")


def audit_run(cfg, initial: Sequence[np.ndarray], final_weights: Sequence[np.ndarray],
              final: dict, *, population: int) -> tuple[dict, dict]:
    """The audit of a finished DP run: ``(audit.json, fields for its final row)``.

    Compares with the epsilon of the run as executed: in deployment mode
    (``privacy.accounting_population`` / ``noise_cohort_size``) that is ``run_epsilon_*``,
    not the stated deployment's headline epsilon.
    """
    if not final.get("audit_inserted_by"):
        # Only an aggregation that calls CanaryClients.updates inserts canaries (DP-FedAvg
        # does); estimating without them would report a confident, meaningless epsilon_emp.
        raise ValueError(f"audit.canaries = {cfg.audit.canaries}, but no aggregation of this "
                         "strategy stack inserted canaries (DP-FedAvg does): no audit is possible")
    run = "run_epsilon_rdp" in final
    accounted = {"rdp": final.get("run_epsilon_rdp" if run else "epsilon_rdp"),
                 "pld": final.get("run_epsilon_pld" if run else "epsilon_pld")}
    delta = float(final["run_delta" if run else "delta"])
    canaries = CanaryClients(cfg.audit.canaries, cfg.experiment.seed,
                             cfg.server.clients_per_round / population,
                             [np.shape(w) for w in initial])
    report = audit(canaries, initial, final_weights, delta=delta,
                   rounds=int(final.get("rounds_completed", cfg.experiment.rounds)),
                   accounted=accounted)
    ci = report.get("epsilon_emp_ci") or [None, None]
    fields = {"epsilon_emp": report["epsilon_emp"], "epsilon_emp_ci_low": ci[0],
              "epsilon_emp_ci_high": ci[1], "audit_canaries": canaries.count}
    if final.get("privacy_statement"):
        fields["privacy_statement"] = final["privacy_statement"] + "\n\n" + statement(report)
    return report, fields
