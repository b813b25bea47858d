"""Accounting for a stated deployment while simulating a smaller cohort.

Production DP-FedAvg trains thousands of clients per round from populations of millions
(McMahan et al. 2018); a small machine cannot. pfl-research (Granqvist et al. 2024,
"pfl-research: simulation framework for accelerating research in Private Federated
Learning") simulates such a deployment: train a cohort of ``m`` clients but add the noise
a cohort of ``m'`` would get (``noise_cohort_size``; std ``z C / m'`` on the mean update),
and account epsilon for the stated deployment, a population ``N'`` sampling ``m'`` clients
per round. Its Stack Overflow benchmark uses ``m' = 5000``, ``N' = 1e6``, epsilon 2 at
delta 1e-6.

That epsilon is a statement about the deployment, not about the run that was executed.
The run itself is the same mechanism on its own ``N`` clients with cohort ``m`` and noise
std ``z C m / m'`` on a sum of sensitivity ``C`` (``2 C`` under replace-one): a Gaussian
with multiplier ``z m / m'``, charged here in a second ledger so that every report can
show both numbers side by side. With adaptive clipping every noise std of the round (sum
and count) is scaled by the same ``m / m'``, so the composed round is again a Gaussian with
multiplier ``z m / m'`` (see :mod:`fl_sim.privacy.adaptive`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fl_sim.privacy.accountant import PrivacyLedger
from fl_sim.privacy.calibration import calibrate_noise


@dataclass(frozen=True)
class DeploymentScale:
    """The simulated cohort and population against the deployment accounted for.

    Parameters
    ----------
    population, cohort :
        ``N`` and ``m``: the clients the simulation samples from, and per round.
    accounting_population, noise_cohort :
        ``N'`` and ``m'`` of the stated deployment (equal to ``N``, ``m`` when off).
    """

    population: int
    cohort: int
    accounting_population: int
    noise_cohort: int

    @classmethod
    def from_config(cls, privacy: Any, population: int, cohort: int) -> "DeploymentScale":
        """``privacy.accounting_population`` / ``noise_cohort_size`` (0 = the run's own)."""
        n2 = int(privacy.accounting_population) or int(population)
        m2 = int(privacy.noise_cohort_size) or int(cohort)
        if m2 > n2:
            raise ValueError(
                f"privacy.noise_cohort_size = {m2} exceeds the accounting population of {n2} "
                "clients (privacy.accounting_population; 0 means the training population)")
        return cls(int(population), int(cohort), n2, m2)

    @property
    def simulated(self) -> bool:
        """Whether epsilon is for a deployment other than the run itself."""
        return (self.accounting_population, self.noise_cohort) != (self.population, self.cohort)

    @property
    def noise_scale(self) -> float:
        """``m / m'``: this run's noise std relative to a Gaussian of multiplier ``z``."""
        return self.cohort / self.noise_cohort

    def run_noise_multiplier(self, z: float) -> float:
        """``z m / m'``: the noise multiplier the executed run actually has."""
        return float(z) * self.noise_scale

    def describe(self) -> str:
        return (f"a deployment of N' = {self.accounting_population:,} clients sampling "
                f"m' = {self.noise_cohort:,} per round")


class DPAccounting:
    """The noise multiplier and the ledgers of one DP run.

    ``ledger`` accounts the deployment (``N'``, ``m'``; the run itself when not in
    deployment mode) and is what the budget, the calibration and the headline epsilon use.
    ``run_ledger`` (deployment mode only) accounts the run as executed: ``N``, ``m`` and
    multiplier ``z m / m'``.

    Parameters
    ----------
    privacy : PrivacyConfig
    population, cohort, rounds :
        ``N``, ``m`` of the simulation and the rounds a calibration plans for.
    """

    def __init__(self, privacy: Any, population: int, cohort: int, rounds: int):
        self.scale = DeploymentScale.from_config(privacy, population, cohort)
        s = self.scale
        self.sampling = privacy.sampling
        self.accountant = privacy.accountant
        self.calibrated = privacy.target_epsilon > 0
        delta = privacy.delta or None
        if self.calibrated:
            self.z = calibrate_noise(privacy.target_epsilon, delta, rounds, privacy.sampling,
                                     s.accounting_population, s.noise_cohort, privacy.accountant)
        else:
            self.z = float(privacy.noise_multiplier)
        self.ledger = PrivacyLedger(s.accounting_population, s.noise_cohort, privacy.sampling, delta)
        self.run_ledger = (PrivacyLedger(s.population, s.cohort, privacy.sampling, delta)
                           if s.simulated else None)

    def record_round(self) -> None:
        self.ledger.record_round(self.z)
        if self.run_ledger is not None:
            self.run_ledger.record_round(self.scale.run_noise_multiplier(self.z))

    def metrics(self) -> dict[str, Any]:
        """Per-round privacy columns of metrics.jsonl."""
        eps = self.ledger.epsilons()
        out: dict[str, Any] = {"epsilon_rdp": eps["rdp"], "epsilon_pld": eps["pld"],
                               "delta": eps["delta"], "accountant": self.accountant}
        if self.run_ledger is not None:
            run = self.run_ledger.epsilons()
            out.update(epsilon_for=self.epsilon_for(), run_epsilon_rdp=run["rdp"],
                       run_epsilon_pld=run["pld"], run_delta=run["delta"],
                       run_noise_multiplier=self.scale.run_noise_multiplier(self.z))
        return out

    def epsilon_for(self) -> str:
        """What the headline epsilon is for, in a few words (tables, plots)."""
        s = self.scale
        if not s.simulated:
            return "this run"
        return f"deployment N'={s.accounting_population:,}, m'={s.noise_cohort:,}"

    def deployment_paragraph(self) -> str:
        """The statement's warning that epsilon is for the stated deployment (or '')."""
        if self.run_ledger is None:
            return ""
        s = self.scale
        run = self.run_ledger.epsilons()

        def fmt(e):
            return "n/a" if e is None else f"{e:.4g}"

        pld = "" if run["pld"] is None else f", {fmt(run['pld'])} (PLD)"
        return (
            f"**Epsilon below is for a stated deployment, not for this simulation.** This run "
            f"trained m = {s.cohort:,} of N = {s.population:,} clients per round but added "
            f"the noise a cohort of m' = {s.noise_cohort:,} would get (noise std z·C/m' on the "
            f"mean update, i.e. z·C·m/m' on the sum of the m clipped updates), and its (ε, δ) "
            f"is accounted for {s.describe()} (privacy.noise_cohort_size, "
            f"privacy.accounting_population). The simulated run itself, as executed on its "
            f"N = {s.population:,} clients, has noise multiplier z·m/m' = "
            f"{s.run_noise_multiplier(self.z):.4g} and satisfies only ε = {fmt(run['rdp'])} "
            f"(RDP){pld} at δ = {run['delta']:.3g}: that is the guarantee for the clients "
            f"whose data this run used.")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"privacy_ledger": self.ledger.to_dict(), "noise_multiplier": self.z}
        if self.run_ledger is not None:
            out["run_privacy_ledger"] = self.run_ledger.to_dict()
        return out

    def load_dict(self, d: dict[str, Any]) -> None:
        if "privacy_ledger" in d:
            self.ledger = PrivacyLedger.from_dict(d["privacy_ledger"])
        if self.run_ledger is not None and "run_privacy_ledger" in d:
            self.run_ledger = PrivacyLedger.from_dict(d["run_privacy_ledger"])
