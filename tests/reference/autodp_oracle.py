"""autodp 0.2.3.1 oracle for tests/integration/test_autodp_crosscheck.py.

Runs INSIDE the reference venv (.venv-ref), never in fl_sim's own. autodp (Yu-Xiang Wang's
"analytical moments accountant") is an implementation independent of dp-accounting: its
sampling-without-replacement bound is Wang, Balle & Kasiviswanathan 2019 (Theorem 27, the
authors' own code), its Poisson bound Zhu & Wang 2019. Usage:

    .venv-ref/bin/python tests/reference/autodp_oracle.py IN.json OUT.json

IN.json: {"cases": [[N, m, rounds, sigma, delta, scheme], ...]} with ``sigma`` the Gaussian
noise std relative to the sensitivity the scheme's adjacency gives (replace-one for
"fixed", add/remove-one for "poisson"). OUT.json: {"epsilon": [...], "autodp": version}:
RDP composition over the rounds, converted to (epsilon, delta) by autodp's default
(Balle et al. 2020) conversion.
"""

import json
import sys
from importlib.metadata import version

from autodp.mechanism_zoo import GaussianMechanism
from autodp.transformer_zoo import AmplificationBySampling, Composition


def epsilon(population, cohort, rounds, sigma, delta, scheme):
    gm = GaussianMechanism(sigma=sigma)
    if scheme == "fixed":
        gm.neighboring = "replace_one"  # the relation sampling without replacement needs
        sampler = AmplificationBySampling(PoissonSampling=False)
    elif scheme == "poisson":
        sampler = AmplificationBySampling(PoissonSampling=True)
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    # improved_bound_flag: the Gaussian mechanism meets the conditions of the tighter bounds
    # (Theorem 27 of Wang et al. 2019; Theorem 8 of Zhu & Wang 2019).
    round_mech = sampler(gm, cohort / population, improved_bound_flag=True)
    run = Composition()([round_mech], [int(rounds)])
    return float(run.get_approxDP(delta))


def main(inp, out):
    cases = json.load(open(inp))["cases"]
    eps = [epsilon(int(n), int(m), int(t), float(s), float(d), str(k)) for n, m, t, s, d, k in cases]
    json.dump({"epsilon": eps, "autodp": version("autodp")}, open(out, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
