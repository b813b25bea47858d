"""Privacy accounting of user-level DP-FedAvg over dp-accounting 0.6.

Each round of DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models") is a sampled Gaussian mechanism on clients: one ``DpEvent`` per round,

- Poisson sampling (each client joins with probability ``q = m / N``):
  ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` under add/remove-one-client adjacency
  (``NeighboringRelation.ADD_OR_REMOVE_ONE``, dp-accounting's default; the sensitivity of
  the clipped sum is ``C``, so the multiplier is ``z``).
- Fixed-size sampling (exactly ``m`` of ``N`` clients, without replacement):
  ``SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z / 2))`` under
  replace-one-client adjacency (``REPLACE_ONE``, the only relation dp-accounting's RDP
  accountant accepts for this event; Wang, Balle & Kasiviswanathan 2019, Thm. 27).
  Replacing one client's update by another changes the clipped sum by up to ``2 C``,
  and dp-accounting 0.6 reads the inner multiplier as "noise std / L2 sensitivity" here,
  so the event gets ``z / 2`` (google/differential-privacy issue #378; tensorflow-privacy's
  own ``_compute_dp_sgd_example_privacy`` halves the multiplier for the same reason).
  The PLD accountant of dp-accounting 0.6 does not support this event: its epsilon is
  reported as ``None`` with a reason.

With adaptive clipping (Andrew et al. 2021, "Differentially Private Learning with Adaptive
Clipping") a round releases the noisy sum (multiplier ``z_Delta``) and the noisy unclipped
count (multiplier ``2 sigma_b``); ``z`` is chosen so that their composition is exactly a
Gaussian mechanism with multiplier ``z`` (``z^-2 = z_Delta^-2 + (2 sigma_b)^-2``), so
the round is charged as ``GaussianDpEvent(z)`` (the same holds under replace-one: both
sensitivities double). This is what TFF's ``gaussian_adaptive`` promises.

Epsilon is reported at ``delta`` with both ``rdp.RdpAccountant`` (Mironov 2017; orders are
dp-accounting's defaults unless given) and ``pld.PLDAccountant`` (Meiser & Mohammadi
2018; Doroshenko et al. 2022). The default ``delta`` is ``1 / N^1.1``: below ``1 / N`` so
that a mechanism that publishes one client's data outright with probability delta is
ruled out with room to spare (the usual "delta << 1/N" rule; N^-1.1 is the choice of
Andrew et al. 2021 and of the Stack Overflow DP-FedAvg experiments).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Sequence

import dp_accounting
from dp_accounting import NeighboringRelation
from dp_accounting.rdp import rdp_privacy_accountant

SAMPLINGS = ("poisson", "fixed")
ACCOUNTANTS = ("rdp", "pld")
PLD_DEFAULT_STEP = 1e-4      # dp-accounting's default value_discretization_interval
PLD_RELATIVE_STEP = 1e-5     # see PrivacyLedger(pld_discretization=None)
# Above this RDP epsilon the PLD is not computed. The run then releases its clients' updates
# almost exactly (epsilon in the millions means no privacy either way), and the PLD's
# relative discretisation step (PLD_RELATIVE_STEP * epsilon) passes ~709, where dp-accounting
# 0.6's math.expm1(step) overflows ("math range error": measured at 40 rounds of q = 8/1080
# with z <= 5e-4, epsilon_RDP >= 6e7). 1e7 keeps every PLD the frontier runs reported
# (epsilon_RDP up to 4e6, step 40) and stops well short of the overflow.
PLD_MAX_RDP_EPSILON = 1e7
PLD_FIXED_REASON = (
    "dp-accounting 0.6's PLDAccountant does not support SampledWithoutReplacementDpEvent "
    "(fixed-size sampling); use the RDP accountant or Poisson sampling")


def default_delta(population: int) -> float:
    """``1 / population^1.1`` (used when the configured delta is 0)."""
    if population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    return float(population) ** -1.1


def neighboring_relation(sampling: str) -> NeighboringRelation:
    """The adjacency dp-accounting uses for this sampling scheme."""
    if sampling == "poisson":
        return NeighboringRelation.ADD_OR_REMOVE_ONE
    if sampling == "fixed":
        return NeighboringRelation.REPLACE_ONE
    raise ValueError(f"sampling {sampling!r}: expected one of {SAMPLINGS}")


def round_event(sampling: str, noise_multiplier: float, population: int,
                expected_cohort: float) -> dp_accounting.DpEvent:
    """The ``DpEvent`` of one DP-FedAvg round (see the module docstring)."""
    z = float(noise_multiplier)
    if z < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {z}")
    if sampling == "poisson":
        return dp_accounting.PoissonSampledDpEvent(
            sampling_probability=float(expected_cohort) / population,
            event=dp_accounting.GaussianDpEvent(z))
    if sampling == "fixed":
        return dp_accounting.SampledWithoutReplacementDpEvent(
            source_dataset_size=int(population), sample_size=int(expected_cohort),
            event=dp_accounting.GaussianDpEvent(z / 2.0))
    raise ValueError(f"sampling {sampling!r}: expected one of {SAMPLINGS}")


class _ExcludedOrderFilter(logging.Filter):
    """Drops dp-accounting's per-order convergence warning.

    For small q and low orders its series for log A_alpha may not converge; it then leaves
    that order out of the minimum over orders, which can only make epsilon larger (still a
    valid bound). Printed once per order per ledger query, it would flood every DP run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to converge" not in record.getMessage()


logging.getLogger("absl").addFilter(_ExcludedOrderFilter())


@functools.lru_cache(maxsize=512)
def _rdp_of_one_round(sampling: str, z: float, population: int, cohort: float,
                      orders: tuple[float, ...] | None):
    acc = dp_accounting.rdp.RdpAccountant(
        orders=None if orders is None else list(orders),
        neighboring_relation=neighboring_relation(sampling))
    acc.compose(round_event(sampling, z, population, cohort))
    rdp = acc.rdp
    rdp.setflags(write=False)
    return acc.orders, rdp


class PrivacyLedger:
    """Composes one ``DpEvent`` per round and reports (epsilon, delta).

    Parameters
    ----------
    population : int
        ``N``: the number of clients that can be sampled (public).
    expected_cohort : float
        ``m``: clients per round (fixed) or the expected number (Poisson, ``q = m / N``).
    sampling : {"fixed", "poisson"}
    delta : float or None
        Target delta; ``None`` or 0 means ``1 / N^1.1``.
    rdp_orders : sequence of float, optional
        RDP orders; dp-accounting's defaults when omitted.
    pld_discretization : float or None
        ``value_discretization_interval`` of the PLD accountant. ``None`` (the default)
        means ``max(1e-4, PLD_RELATIVE_STEP * epsilon_RDP)``: dp-accounting's default
        1e-4 whenever epsilon is small, and a step that grows with epsilon otherwise. The
        PLD's support grows with the privacy loss (~ 1/z^2), so at z = 0.1 a fixed 1e-4
        step costs ~20 s and ~1 GB per query, every round. PLD discretization rounds
        losses up (pessimistic), so a coarser step still gives a valid upper bound, looser
        by at most about ``rounds * step`` (1e-5 * epsilon per round; measured well
        under 0.1% here).
    """

    def __init__(self, population: int, expected_cohort: float, sampling: str = "fixed",
                 delta: float | None = None, rdp_orders: Sequence[float] | None = None,
                 pld_discretization: float | None = None):
        neighboring_relation(sampling)  # validates
        if int(population) != population or population < 1:
            raise ValueError(f"population must be a positive integer, got {population}")
        if not 0 < expected_cohort <= population:
            raise ValueError(f"expected_cohort must be in (0, population={population}], "
                             f"got {expected_cohort}")
        if sampling == "fixed" and int(expected_cohort) != expected_cohort:
            raise ValueError(f"fixed-size sampling needs an integer cohort, got {expected_cohort}")
        if delta is not None and delta != 0 and not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.population = int(population)
        self.expected_cohort = (int(expected_cohort) if sampling == "fixed"
                                else float(expected_cohort))
        self.sampling = sampling
        self.delta = float(delta) if delta else default_delta(self.population)
        self.rdp_orders = None if rdp_orders is None else tuple(float(o) for o in rdp_orders)
        self.pld_discretization = None if pld_discretization is None else float(pld_discretization)
        self._segments: list[list[float]] = []  # [[z, rounds], ...] run-length encoded
        self._cache: dict[tuple, float | None] = {}
        self._pld_skipped: dict[tuple, str] = {}  # (segments, delta) -> why no PLD epsilon

    # ------------------------------------------------------------------ properties
    @property
    def sampling_probability(self) -> float:
        """``q = m / N``."""
        return self.expected_cohort / self.population

    @property
    def rounds(self) -> int:
        return int(sum(c for _, c in self._segments))

    @property
    def neighboring_relation(self) -> NeighboringRelation:
        return neighboring_relation(self.sampling)

    def round_event(self, noise_multiplier: float) -> dp_accounting.DpEvent:
        return round_event(self.sampling, noise_multiplier, self.population,
                           self.expected_cohort)

    def event(self, extra: Sequence[tuple[float, int]] = ()) -> dp_accounting.DpEvent:
        """All recorded rounds (plus ``extra`` ``(z, rounds)`` segments) as one DpEvent."""
        segs = [(z, int(c)) for z, c in self._segments] + [(z, int(c)) for z, c in extra]
        events = [dp_accounting.SelfComposedDpEvent(self.round_event(z), c) for z, c in segs]
        return dp_accounting.ComposedDpEvent(events) if events else dp_accounting.NoOpDpEvent()

    # ------------------------------------------------------------------ recording
    def record_round(self, noise_multiplier: float, rounds: int = 1) -> None:
        """Charge ``rounds`` rounds with total noise multiplier ``noise_multiplier``."""
        if rounds < 1 or int(rounds) != rounds:
            raise ValueError(f"rounds must be a positive integer, got {rounds}")
        z = float(noise_multiplier)
        self.round_event(z)  # validates
        if self._segments and self._segments[-1][0] == z:
            self._segments[-1][1] += int(rounds)
        else:
            self._segments.append([z, int(rounds)])

    # ------------------------------------------------------------------ epsilon
    def unsupported_reason(self, accountant: str = "rdp") -> str | None:
        """Why ``accountant`` cannot account this ledger, or None if it can."""
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant {accountant!r}: expected one of {ACCOUNTANTS}")
        if accountant == "pld" and self.sampling == "fixed":
            return PLD_FIXED_REASON
        return None

    def _epsilon(self, segments: tuple[tuple[float, int], ...], accountant: str,
                 delta: float) -> float | None:
        key = (segments, accountant, delta)
        if key in self._cache:
            return self._cache[key]
        if self.unsupported_reason(accountant) is not None:
            eps = None
        elif not segments:
            eps = 0.0
        elif any(z == 0 for z, _ in segments):
            # No noise: a round releases the clipped sum exactly, so no finite epsilon holds
            # (dp-accounting's RDP of the fixed-size event divides by z and raises).
            eps = math.inf
        elif accountant == "rdp":
            total = None
            orders = None
            for z, count in segments:
                orders, per_round = _rdp_of_one_round(self.sampling, z, self.population,
                                                      self.expected_cohort, self.rdp_orders)
                total = count * per_round if total is None else total + count * per_round
            eps = float(rdp_privacy_accountant.compute_epsilon(orders, total, delta)[0])
        else:
            eps_rdp = self._epsilon(segments, "rdp", delta)
            if eps_rdp > PLD_MAX_RDP_EPSILON:
                self._pld_skipped[(segments, delta)] = (
                    f"not computed: the RDP epsilon {eps_rdp:.3g} exceeds "
                    f"{PLD_MAX_RDP_EPSILON:g} (almost no noise: no meaningful guarantee, and "
                    f"dp-accounting's PLD discretisation overflows at such losses)")
                eps = None
            else:
                step = self.pld_discretization
                if step is None:
                    step = max(PLD_DEFAULT_STEP, PLD_RELATIVE_STEP * eps_rdp)
                acc = dp_accounting.pld.PLDAccountant(
                    neighboring_relation=self.neighboring_relation,
                    value_discretization_interval=step)
                for z, count in segments:
                    acc.compose(self.round_event(z), count)
                eps = float(acc.get_epsilon(delta))
        if len(self._cache) > 64:
            self._cache.clear()
            self._pld_skipped.clear()
        self._cache[key] = eps
        return eps

    def _segs(self, extra: Sequence[tuple[float, int]] = ()) -> tuple[tuple[float, int], ...]:
        segs = [(float(z), int(c)) for z, c in self._segments]
        for z, c in extra:
            if segs and segs[-1][0] == float(z):
                segs[-1] = (segs[-1][0], segs[-1][1] + int(c))
            else:
                segs.append((float(z), int(c)))
        return tuple(segs)

    def epsilon(self, accountant: str = "rdp", delta: float | None = None) -> float | None:
        """Epsilon spent so far at ``delta`` (default: the ledger's), or None when the
        accountant does not support the events (see :meth:`unsupported_reason`) or the PLD
        is not computed because the RDP epsilon exceeds ``PLD_MAX_RDP_EPSILON``."""
        return self._epsilon(self._segs(), accountant, self.delta if delta is None else delta)

    def epsilon_if_next_round(self, noise_multiplier: float, accountant: str = "rdp",
                              rounds: int = 1, delta: float | None = None) -> float | None:
        """Epsilon after ``rounds`` more rounds at ``noise_multiplier``, without recording
        them (the budget check before running a round). Equals :meth:`epsilon` after
        :meth:`record_round` with the same arguments."""
        self.round_event(noise_multiplier)
        return self._epsilon(self._segs([(noise_multiplier, rounds)]), accountant,
                             self.delta if delta is None else delta)

    def epsilons(self, delta: float | None = None) -> dict[str, Any]:
        """``{"rdp": eps, "pld": eps or None, "pld_reason": str or None, "delta": d}``."""
        d = self.delta if delta is None else delta
        pld = self.epsilon("pld", d)
        reason = self.unsupported_reason("pld")
        if pld is None and reason is None:
            reason = self._pld_skipped.get((self._segs(), d))
        return {"rdp": self.epsilon("rdp", d), "pld": pld, "pld_reason": reason, "delta": d}

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_dict` restores a ledger with identical epsilons."""
        return {"version": 1, "population": self.population,
                "expected_cohort": self.expected_cohort, "sampling": self.sampling,
                "delta": self.delta,
                "rdp_orders": None if self.rdp_orders is None else list(self.rdp_orders),
                "pld_discretization": self.pld_discretization,
                "segments": [[float(z), int(c)] for z, c in self._segments]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrivacyLedger":
        if d.get("version") != 1:
            raise ValueError(f"unknown privacy ledger version {d.get('version')!r}")
        led = cls(population=d["population"], expected_cohort=d["expected_cohort"],
                  sampling=d["sampling"], delta=d["delta"], rdp_orders=d["rdp_orders"],
                  pld_discretization=d["pld_discretization"])
        for z, c in d["segments"]:
            led.record_round(z, c)
        return led

    # ------------------------------------------------------------------ reporting
    def statement(self, clip_norm: float | None = None, adaptive: dict | None = None,
                  delta: float | None = None) -> tuple[dict[str, Any], str]:
        """A privacy statement: ``(facts, markdown_paragraph)``.

        Parameters
        ----------
        clip_norm : float, optional
            The fixed clip ``C`` (or the initial clip when adaptive).
        adaptive : dict, optional
            Adaptive-clipping settings, e.g. ``{"target_quantile": 0.5, "clip_lr": 0.2,
            "clipped_count_stddev": 0.5, "update_noise_multiplier": 1.03}``.
        """
        d = self.delta if delta is None else delta
        eps = self.epsilons(d)
        zs = sorted({z for z, _ in self._segments})
        facts: dict[str, Any] = {
            "mechanism": "user-level DP-FedAvg: per-client L2 clipping, Gaussian noise on the "
                         "sum of clipped updates, fixed-denominator mean (McMahan et al. 2018)",
            "sampling": self.sampling, "population": self.population,
            "expected_cohort": self.expected_cohort, "q": self.sampling_probability,
            "noise_multipliers": zs, "rounds": self.rounds, "delta": d,
            "epsilon_rdp": eps["rdp"], "epsilon_pld": eps["pld"], "pld_reason": eps["pld_reason"],
            "neighboring_relation": self.neighboring_relation.name,
            "clip_norm": clip_norm, "adaptive_clipping": adaptive,
            "accounting": f"dp-accounting {_dp_accounting_version()}",
        }
        if self.sampling == "poisson":
            samp = (f"Poisson sampling: each of the N = {self.population} clients joins each "
                    f"round independently with probability q = {self.sampling_probability:.6g}")
            adj = ("add/remove-one-client adjacency (dp-accounting ADD_OR_REMOVE_ONE): the "
                   "neighbouring datasets differ by the presence of all data of one client; "
                   "the sum of clipped updates has sensitivity C")
        else:
            samp = (f"fixed-size sampling: exactly m = {self.expected_cohort} of "
                    f"N = {self.population} clients, uniformly without replacement, "
                    f"independently each round (q = {self.sampling_probability:.6g})")
            adj = ("replace-one-client adjacency (dp-accounting REPLACE_ONE, the relation its "
                   "sampling-without-replacement analysis assumes; N is public): replacing one "
                   "client's data changes the sum of clipped updates by up to 2C, so the "
                   "accounted noise multiplier is z/2")
        if adaptive:
            clip_txt = ("adaptive clipping (Andrew et al. 2021, geometric update) starting at "
                        f"C = {clip_norm:g}, " if clip_norm is not None else
                        "adaptive clipping (Andrew et al. 2021, geometric update), ")
            clip_txt += ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                                  for k, v in adaptive.items())
            clip_txt += ("; the noisy unclipped count and the noisy sum are charged together "
                         "as one Gaussian mechanism with multiplier z")
        else:
            clip_txt = f"fixed clip C = {clip_norm:g}" if clip_norm is not None else "fixed clip C"
        z_txt = ", ".join(f"{z:g}" for z in zs) if zs else "none yet"

        def fmt(e):
            return "n/a" if e is None else f"{e:.4g}"

        pld_txt = (f"{fmt(eps['pld'])} (PLD)" if eps["pld"] is not None
                   else f"not available from PLD ({eps['pld_reason']})")
        md = (
            f"**Privacy.** Training used user-level DP-FedAvg (McMahan et al. 2018): each "
            f"client's whole update was clipped to L2 norm C ({clip_txt}), Gaussian noise with "
            f"std z·C was added to the sum of clipped updates, and the sum was divided by the "
            f"expected cohort size m = {self.expected_cohort:g}; noise multiplier z = {z_txt}, "
            f"{self.rounds} rounds, {samp}. Over all rounds (every intermediate model "
            f"released) the run satisfies (ε, δ)-DP with δ = {d:.3g} and ε = "
            f"{fmt(eps['rdp'])} (RDP accountant), ε = {pld_txt}, computed with "
            f"dp-accounting {_dp_accounting_version()}. Assumptions: {adj}; each client's "
            f"entire local dataset is treated as one unit (user-level privacy); the "
            f"population of N = {self.population} clients is fixed and every sampled client "
            f"is available (drop-outs do not depend on the data); the noise and sampling "
            f"randomness are secret; per-round exact clipping statistics logged for "
            f"diagnostics are not covered by this guarantee.")
        facts["markdown"] = md
        return facts, md


def _dp_accounting_version() -> str:
    try:
        from importlib.metadata import version
        return version("dp-accounting")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "?"
